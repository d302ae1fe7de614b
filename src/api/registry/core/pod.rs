//! Pods: created Pending; an update may change only what `ValidatePodUpdate` allows (images,
//! a shorter active deadline, added tolerations), so a pod's volumes, account and node stay
//! what they were at creation.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use serde_json::Value;

use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, wide, Col};

pub struct Pods;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[Sub::Status, Sub::Binding, Sub::Log, Sub::Exec],
    has_generation: true,
    strategy: &Pods,
};

impl Strategy for Pods {
    type Object = Pod;

    fn defaults(&self, pod: &mut Pod) {
        if let Some(spec) = pod.spec.as_mut() {
            pod_spec::defaults(spec);
        }
        let status = pod.status.get_or_insert_with(PodStatus::default);
        status.phase.get_or_insert_with(|| "Pending".into());
    }

    fn prepare_for_create(&self, pod: &mut Pod) {
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }

    fn validate(&self, pod: &Pod, errs: &mut Vec<Cause>) {
        match &pod.spec {
            None => errs.push(Cause::required("spec")),
            Some(spec) => pod_spec::validate(spec, "spec", &[], errs),
        }
    }

    fn validate_update(&self, new: &Pod, old: &Pod, errs: &mut Vec<Cause>) {
        if let (Some(new), Some(old)) = (&new.spec, &old.spec) {
            pod_spec::validate_update(new, old, errs);
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Ready", "string"),
            col("Status", "string"),
            col("Restarts", "string"),
            table::age_col(),
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        table::pod_cells(o)
    }

    /// A pod on a node goes once its node agent has stopped it.
    fn graceful_delete(&self, o: &Value) -> Option<i64> {
        let bound = !table::s(o, "/spec/nodeName").is_empty();
        bound.then(|| {
            o.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        })
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.schedulerName",
            "status.phase",
            "spec.restartPolicy",
            "spec.serviceAccountName",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }
}
