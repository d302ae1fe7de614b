//! Roles: rules over resources of one namespace.

use k8s_openapi::api::rbac::v1::Role;
use serde_json::{json, Value};

use crate::api::registry::{NameRule, Strategy};
use crate::api::resources::Resource;
use crate::api::status::Cause;
use crate::api::table::{self, col, s, Col};

pub struct Roles;

pub static RESOURCE: Resource = Resource {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "roles",
    singular: "role",
    kind: "Role",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &Roles,
};

impl Strategy for Roles {
    type Object = Role;

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate_json(&self, obj: &Value, errs: &mut Vec<Cause>) {
        super::validate("Role", obj, errs);
    }

    fn columns(&self) -> Vec<Col> {
        vec![table::name_col(), col("Created At", "date")]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![
            table::name_cell(o),
            json!(s(o, "/metadata/creationTimestamp")),
        ]
    }
}
