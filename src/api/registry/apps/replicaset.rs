//! ReplicaSets: the selector is fixed at creation.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use serde_json::{json, Value};

use super::{selector_immutable, validate_workload};
use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, i, wide, Col};

pub struct ReplicaSets;

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[Sub::Status, Sub::Scale],
    has_generation: true,
    strategy: &ReplicaSets,
};

impl Strategy for ReplicaSets {
    type Object = ReplicaSet;

    fn defaults(&self, rs: &mut ReplicaSet) {
        let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
        spec.replicas.get_or_insert(1);
        if let Some(t) = spec.template.as_mut() {
            pod_spec::template_defaults(t);
        }
    }

    fn prepare_for_create(&self, rs: &mut ReplicaSet) {
        rs.status = Some(ReplicaSetStatus::default());
    }

    fn validate(&self, rs: &ReplicaSet, errs: &mut Vec<Cause>) {
        let Some(spec) = &rs.spec else {
            return errs.push(Cause::required("spec"));
        };
        match &spec.template {
            None => errs.push(Cause::required("spec.template")),
            Some(t) => validate_workload("ReplicaSet", &spec.selector, t, spec.replicas, &[], errs),
        }
    }

    fn validate_update(&self, new: &ReplicaSet, old: &ReplicaSet, errs: &mut Vec<Cause>) {
        selector_immutable(
            new.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Desired", "integer"),
            col("Current", "integer"),
            col("Ready", "integer"),
            table::age_col(),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        table::workload(
            o,
            table::name_cell(o),
            vec![
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
            ],
            true,
        )
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}
