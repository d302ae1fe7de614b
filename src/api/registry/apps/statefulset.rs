//! StatefulSets: after creation only the replicas, ordinals, template, update strategy,
//! history limit, claim retention policy and minReadySeconds may change.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetStatus, StatefulSetUpdateStrategy,
};
use serde_json::{json, Value};

use super::validate_workload;
use crate::api::registry::validation::shown;
use crate::api::registry::{pod_spec, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, wide, Col};

pub struct StatefulSets;

pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    plural: "statefulsets",
    singular: "statefulset",
    kind: "StatefulSet",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    subresources: &[Sub::Status, Sub::Scale],
    has_generation: true,
    strategy: &StatefulSets,
};

impl Strategy for StatefulSets {
    type Object = StatefulSet;

    fn defaults(&self, sts: &mut StatefulSet) {
        let spec = sts.spec.get_or_insert_with(StatefulSetSpec::default);
        spec.replicas.get_or_insert(1);
        spec.pod_management_policy
            .get_or_insert_with(|| "OrderedReady".into());
        spec.revision_history_limit.get_or_insert(10);
        let strategy = spec
            .update_strategy
            .get_or_insert_with(StatefulSetUpdateStrategy::default);
        if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
            strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateStatefulSetStrategy::default)
                .partition
                .get_or_insert(0);
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        retention
            .when_deleted
            .get_or_insert_with(|| "Retain".into());
        retention.when_scaled.get_or_insert_with(|| "Retain".into());
        pod_spec::template_defaults(&mut spec.template);
    }

    fn prepare_for_create(&self, sts: &mut StatefulSet) {
        sts.status = Some(StatefulSetStatus::default());
    }

    fn validate(&self, sts: &StatefulSet, errs: &mut Vec<Cause>) {
        let Some(spec) = &sts.spec else {
            return errs.push(Cause::required("spec"));
        };
        let claims: Vec<&str> = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|c| c.metadata.name.as_deref())
            .collect();
        validate_workload(
            "StatefulSet",
            &spec.selector,
            &spec.template,
            spec.replicas,
            &claims,
            errs,
        );
        if let Some(p) = spec.pod_management_policy.as_deref() {
            if !matches!(p, "OrderedReady" | "Parallel") {
                errs.push(Cause::invalid(
                    "spec.podManagementPolicy",
                    shown(p),
                    "must be 'OrderedReady' or 'Parallel'",
                ));
            }
        }
    }

    fn validate_update(&self, new: &StatefulSet, old: &StatefulSet, errs: &mut Vec<Cause>) {
        let (Some(new), Some(old)) = (&new.spec, &old.spec) else {
            return;
        };
        let fixed = StatefulSetSpec {
            replicas: old.replicas,
            template: old.template.clone(),
            update_strategy: old.update_strategy.clone(),
            min_ready_seconds: old.min_ready_seconds,
            ordinals: old.ordinals.clone(),
            revision_history_limit: old.revision_history_limit,
            persistent_volume_claim_retention_policy: old
                .persistent_volume_claim_retention_policy
                .clone(),
            ..new.clone()
        };
        if fixed != *old {
            errs.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Ready", "string"),
            table::age_col(),
            wide("Containers"),
            wide("Images"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        table::workload(
            o,
            table::name_cell(o),
            vec![json!(table::ready_of(o))],
            false,
        )
    }
}
