//! ReplicaSet status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
//! (minReadySeconds), observedGeneration.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::ReplicaSetController;
use crate::controllers::pods;
use crate::controllers::runtime::ReconcileError;

/// Writes the status if it changed; returns when to look again for pods becoming available.
pub async fn update(
    c: &ReplicaSetController,
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
) -> Result<Option<Duration>, ReconcileError> {
    let now = jiff::Timestamp::now();
    let spec = rs.spec.clone().unwrap_or_default();
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .map(pods::labels)
        .unwrap_or_default();
    let fully = active
        .iter()
        .filter(|p| {
            let l = pods::labels(&p.metadata);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, min_ready, now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    let new = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if new != old {
        let ns = rs.namespace().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(c.shared.client.clone(), &ns, &c.flavor.resource());
        api.patch_status(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": new })),
        )
        .await?;
    }
    // Pods ready but not yet for minReadySeconds become available without any event.
    let pending = active
        .iter()
        .filter(|p| pods::is_ready(p) && !pods::is_available(p, min_ready, now))
        .map(|p| min_ready - pods::ready_for(p, now))
        .min();
    Ok(pending.map(|s| Duration::from_secs(s.max(1) as u64)))
}
