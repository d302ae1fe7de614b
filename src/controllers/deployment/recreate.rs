//! Recreate: all old pods go first, then the new ReplicaSet is scaled up (recreate.go).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;

use super::replicasets::{self, replicas};
use super::DeploymentController;
use crate::controllers::pods::controlled_by;
use crate::controllers::runtime::ReconcileError;

/// Pods of the old ReplicaSets that have not finished (including terminating ones).
fn old_pods_running(c: &DeploymentController, olds: &[Arc<ReplicaSet>]) -> bool {
    let uids: Vec<String> = olds.iter().filter_map(|r| r.uid()).collect();
    c.shared.pods.store.state().iter().any(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        !matches!(phase, Some("Succeeded" | "Failed"))
            && uids.iter().any(|u| controlled_by(&p.metadata, u))
    })
}

/// Returns whether something was changed; `Ok(None)` from `new` means "create it now".
pub async fn scale_down_old(
    c: &DeploymentController,
    d: &Deployment,
    olds: &[Arc<ReplicaSet>],
) -> Result<bool, ReconcileError> {
    let mut changed = false;
    for rs in olds.iter().filter(|r| replicas(r) > 0) {
        changed |= replicasets::update(c, d, rs, 0, replicasets::revision(rs)).await?;
    }
    Ok(changed || old_pods_running(c, olds))
}
