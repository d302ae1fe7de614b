//! ClusterRoleBindings: subjects granted a role cluster-wide; the role reference is fixed.

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use serde_json::{json, Value};

use super::{binding_defaults, role_ref_immutable};
use crate::api::registry::{NameRule, Strategy};
use crate::api::resources::Resource;
use crate::api::status::Cause;
use crate::api::table::{self, col, s, wide, Col};

pub struct ClusterRoleBindings;

pub static RESOURCE: Resource = Resource {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    kind: "ClusterRoleBinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &ClusterRoleBindings,
};

impl Strategy for ClusterRoleBindings {
    type Object = ClusterRoleBinding;

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn defaults(&self, b: &mut ClusterRoleBinding) {
        binding_defaults(&mut b.role_ref, b.subjects.as_mut());
    }

    fn validate_json(&self, obj: &Value, errs: &mut Vec<Cause>) {
        super::validate("ClusterRoleBinding", obj, errs);
    }

    fn validate_update(
        &self,
        new: &ClusterRoleBinding,
        old: &ClusterRoleBinding,
        errs: &mut Vec<Cause>,
    ) {
        role_ref_immutable(&new.role_ref, &old.role_ref, errs);
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Role", "string"),
            table::age_col(),
            wide("Users"),
            wide("Groups"),
            wide("ServiceAccounts"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let role = format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"));
        let [users, groups, sas] = table::subjects(o);
        vec![
            table::name_cell(o),
            json!(role),
            table::age_cell(o),
            json!(users),
            json!(groups),
            json!(sas),
        ]
    }
}
