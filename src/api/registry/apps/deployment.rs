//! Deployments: rolling update by default (25% surge and unavailable); the selector is
//! fixed at creation.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::{selector_immutable, validate_workload};
use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, i, wide, Col};

pub struct Deployments;

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "deployments",
    singular: "deployment",
    kind: "Deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    subresources: &[Sub::Status, Sub::Scale],
    has_generation: true,
    strategy: &Deployments,
};

impl Strategy for Deployments {
    type Object = Deployment;

    fn defaults(&self, d: &mut Deployment) {
        let spec = d.spec.get_or_insert_with(DeploymentSpec::default);
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec
            .strategy
            .get_or_insert_with(DeploymentStrategy::default);
        let ty = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
        if ty == "RollingUpdate" {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            ru.max_unavailable
                .get_or_insert_with(|| IntOrString::String("25%".into()));
            ru.max_surge
                .get_or_insert_with(|| IntOrString::String("25%".into()));
        }
        pod_spec::template_defaults(&mut spec.template);
    }

    fn prepare_for_create(&self, d: &mut Deployment) {
        d.status = Some(DeploymentStatus::default());
    }

    fn validate(&self, d: &Deployment, errs: &mut Vec<Cause>) {
        let Some(spec) = &d.spec else {
            return errs.push(Cause::required("spec"));
        };
        validate_workload(
            "Deployment",
            &spec.selector,
            &spec.template,
            spec.replicas,
            &[],
            errs,
        );
        let strategy = spec.strategy.as_ref();
        if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate")
            && strategy.is_some_and(|s| s.rolling_update.is_some())
        {
            errs.push(Cause::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
    }

    fn validate_update(&self, new: &Deployment, old: &Deployment, errs: &mut Vec<Cause>) {
        selector_immutable(
            new.spec.as_ref().map(|s| &s.selector),
            old.spec.as_ref().map(|s| &s.selector),
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Ready", "string"),
            col("Up-to-date", "integer"),
            col("Available", "integer"),
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
                json!(table::ready_of(o)),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
            ],
            true,
        )
    }
}
