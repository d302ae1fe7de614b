//! ControllerRevisions: a workload's template at one revision; the data never changes.

use k8s_openapi::api::apps::v1::ControllerRevision;

use crate::api::registry::validation::{immutable, non_negative};
use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;

pub struct ControllerRevisions;

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    kind: "ControllerRevision",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &ControllerRevisions,
};

impl Strategy for ControllerRevisions {
    type Object = ControllerRevision;

    fn validate(&self, r: &ControllerRevision, errs: &mut Vec<Cause>) {
        non_negative(Some(r.revision), "revision", errs);
    }

    fn validate_update(
        &self,
        new: &ControllerRevision,
        old: &ControllerRevision,
        errs: &mut Vec<Cause>,
    ) {
        immutable(&new.data, &old.data, "data", errs);
    }
}
