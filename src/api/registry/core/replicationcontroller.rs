//! ReplicationControllers, the ReplicaSet's predecessor: a plain label map as selector
//! (defaulted from the template's labels), kept running by the ReplicaSet controller's
//! logic (`controllers::replicaset`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ReplicationController, ReplicationControllerSpec, ReplicationControllerStatus,
};
use serde_json::{json, Value};

use crate::api::registry::validation::{non_negative, shown};
use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, i, wide, Col};

pub struct ReplicationControllers;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "replicationcontrollers",
    singular: "replicationcontroller",
    kind: "ReplicationController",
    namespaced: true,
    short_names: &["rc"],
    categories: &["all"],
    subresources: &[Sub::Status, Sub::Scale],
    has_generation: true,
    strategy: &ReplicationControllers,
};

impl Strategy for ReplicationControllers {
    type Object = ReplicationController;

    /// Upstream's `SetDefaults_ReplicationController`: the selector and the labels default
    /// to the template's labels.
    fn defaults(&self, rc: &mut ReplicationController) {
        let labels = rc
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let spec = rc
            .spec
            .get_or_insert_with(ReplicationControllerSpec::default);
        spec.replicas.get_or_insert(1);
        if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) && !labels.is_empty() {
            spec.selector = Some(labels.clone());
        }
        if let Some(t) = spec.template.as_mut() {
            pod_spec::template_defaults(t);
        }
        if rc.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) && !labels.is_empty() {
            rc.metadata.labels = Some(labels);
        }
    }

    fn prepare_for_create(&self, rc: &mut ReplicationController) {
        rc.status = Some(ReplicationControllerStatus::default());
    }

    fn validate(&self, rc: &ReplicationController, errs: &mut Vec<Cause>) {
        let Some(spec) = &rc.spec else {
            return errs.push(Cause::required("spec"));
        };
        non_negative(spec.replicas.map(i64::from), "spec.replicas", errs);
        let selector = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() {
            errs.push(Cause::required("spec.selector"));
        }
        let Some(template) = &spec.template else {
            return errs.push(Cause::required("spec.template"));
        };
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            errs.push(Cause::invalid(
                "spec.template.metadata.labels",
                shown(&labels),
                "`selector` does not match template `labels`",
            ));
        }
        pod_spec::validate_template(template, "spec.template", &[], errs);
        let policy = template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        if policy != "Always" {
            errs.push(Cause::not_supported(
                "spec.template.spec.restartPolicy",
                shown(policy),
                &["Always"],
            ));
        }
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
        let (c, im) = table::containers_images(o, "/spec/template/spec");
        vec![
            table::name_cell(o),
            json!(i(o, "/spec/replicas")),
            json!(i(o, "/status/replicas")),
            json!(i(o, "/status/readyReplicas")),
            table::age_cell(o),
            json!(c),
            json!(im),
            json!(table::map_selector(o, "/spec/selector")),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}
