//! StatefulSet status as upstream computes it (what `kubectl rollout status sts/...` and
//! `kubectl get sts` read); the current revision becomes the update revision once every
//! pod runs it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::sync::{healthy, revision_of, Plan};
use crate::controllers::pods::is_available;
use crate::controllers::runtime::ReconcileResult;
use crate::controllers::Shared;

pub async fn update(
    shared: &Shared,
    set: &StatefulSet,
    plan: &Plan,
    pods: &[Arc<Pod>],
) -> ReconcileResult {
    let now = jiff::Timestamp::now();
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0) as i64;
    let live: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let ready = count(&|p| healthy(p));
    let available = count(&|p| healthy(p) && is_available(p, min_ready, now));
    let current = count(&|p| revision_of(p) == Some(&plan.current.0));
    let updated = count(&|p| revision_of(p) == Some(&plan.update.0));
    let replicas = live.len() as i32;
    let done = updated == plan.replicas && replicas == plan.replicas && ready == plan.replicas;
    let (current_revision, current) = if done {
        (plan.update.0.clone(), updated)
    } else {
        (plan.current.0.clone(), current)
    };
    let want = json!({
        "observedGeneration": set.metadata.generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": plan.update.0,
        "collisionCount": set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0),
    });
    let have = serde_json::to_value(&set.status).unwrap_or_default();
    let differs = want
        .as_object()
        .is_some_and(|w| w.iter().any(|(k, v)| have.get(k).unwrap_or(&json!(0)) != v));
    if differs {
        let api: Api<StatefulSet> =
            Api::namespaced(shared.client.clone(), &set.namespace().unwrap_or_default());
        api.patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": want })),
        )
        .await?;
    }
    // Pods waiting out minReadySeconds become available without an event.
    let waiting = min_ready > 0 && ready > available;
    Ok(waiting.then(|| Duration::from_secs(1)))
}
