//! DaemonSets: one pod per eligible node, rolling update by default; the selector is fixed
//! at creation.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::{selector_immutable, validate_workload};
use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, i, wide, Col};

pub struct DaemonSets;

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "daemonsets",
    singular: "daemonset",
    kind: "DaemonSet",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    subresources: &[Sub::Status],
    has_generation: true,
    strategy: &DaemonSets,
};

impl Strategy for DaemonSets {
    type Object = DaemonSet;

    fn defaults(&self, ds: &mut DaemonSet) {
        let spec = ds.spec.get_or_insert_with(DaemonSetSpec::default);
        spec.revision_history_limit.get_or_insert(10);
        let strategy = spec
            .update_strategy
            .get_or_insert_with(DaemonSetUpdateStrategy::default);
        if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDaemonSet::default);
            ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            ru.max_surge.get_or_insert(IntOrString::Int(0));
        }
        pod_spec::template_defaults(&mut spec.template);
    }

    fn prepare_for_create(&self, ds: &mut DaemonSet) {
        ds.status = Some(DaemonSetStatus::default());
    }

    fn validate(&self, ds: &DaemonSet, errs: &mut Vec<Cause>) {
        let Some(spec) = &ds.spec else {
            return errs.push(Cause::required("spec"));
        };
        validate_workload("DaemonSet", &spec.selector, &spec.template, None, &[], errs);
    }

    fn validate_update(&self, new: &DaemonSet, old: &DaemonSet, errs: &mut Vec<Cause>) {
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
            col("Up-to-date", "integer"),
            col("Available", "integer"),
            col("Node Selector", "string"),
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
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                json!(table::map_selector(o, "/spec/template/spec/nodeSelector")),
            ],
            true,
        )
    }
}
