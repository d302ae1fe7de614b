//! DaemonSet status as upstream computes it (what `kubectl get ds` and `kubectl rollout
//! status` read), written through the status subresource when it changed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::view::{oldest_first, View};
use super::DaemonSetController;
use crate::controllers::pods::{is_ready, ready_for};
use crate::controllers::runtime::ReconcileError;

/// Counts per node, looking at each node's oldest pod.
pub fn compute(ds: &DaemonSet, v: &View, observed: bool) -> DaemonSetStatus {
    let old = ds.status.clone().unwrap_or_default();
    let (mut desired, mut current, mut mis, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    for (node, verdict) in &v.nodes {
        let mut pods = v.pods_on(node).to_vec();
        if !verdict.run {
            mis += i32::from(!pods.is_empty());
            continue;
        }
        desired += 1;
        oldest_first(&mut pods);
        let Some(pod) = pods.first() else { continue };
        current += 1;
        if is_ready(pod) {
            ready += 1;
            available += i32::from(v.available(pod));
        }
        updated += i32::from(v.is_updated(pod));
    }
    DaemonSetStatus {
        current_number_scheduled: current,
        number_misscheduled: mis,
        desired_number_scheduled: desired,
        number_ready: ready,
        updated_number_scheduled: Some(updated),
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        observed_generation: if observed {
            ds.metadata.generation
        } else {
            old.observed_generation
        },
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

/// Writes the status if it changed; returns when to look again for pods becoming available.
pub async fn update(
    c: &DaemonSetController,
    ds: &DaemonSet,
    v: &View,
    observed: bool,
) -> Result<Option<Duration>, ReconcileError> {
    let new = compute(ds, v, observed);
    if ds.status.as_ref() != Some(&new) {
        let api: Api<DaemonSet> =
            Api::namespaced(c.shared.client.clone(), &ds.namespace().unwrap_or_default());
        api.patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": new })),
        )
        .await?;
    }
    // Pods ready but not yet for minReadySeconds become available without any event.
    let pending = v
        .by_node
        .values()
        .flatten()
        .filter(|p| is_ready(p) && !v.available(p))
        .map(|p| v.min_ready - ready_for(p, v.now))
        .min();
    Ok(pending.map(|s| Duration::from_secs(s.max(1) as u64)))
}
