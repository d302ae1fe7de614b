//! Scaling a Deployment whose ReplicaSets are mid-rollout: the change is spread over the
//! active ReplicaSets in proportion to their size (upstream's sync.go scale()).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;

use super::replicasets::{self, replicas};
use super::{DeploymentController, DESIRED_REPLICAS, MAX_REPLICAS};
use crate::controllers::runtime::ReconcileError;

/// Some active ReplicaSet was sized for another replica count.
pub fn is_scaling_event(d: &Deployment, all: &[Arc<ReplicaSet>]) -> bool {
    let want = d
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .to_string();
    all.iter().filter(|r| replicas(r) > 0).any(|r| {
        r.annotations()
            .get(DESIRED_REPLICAS)
            .is_some_and(|v| *v != want)
    })
}

fn fraction(rs: &ReplicaSet, d: &Deployment, surge: i32) -> i32 {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if want == 0 {
        return -replicas(rs);
    }
    let allowed = want + surge;
    let annotated = rs
        .annotations()
        .get(MAX_REPLICAS)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        .max(1);
    let size = f64::from(replicas(rs)) * f64::from(allowed) / f64::from(annotated);
    size.round() as i32 - replicas(rs)
}

pub async fn scale(
    c: &DeploymentController,
    d: &Deployment,
    new: Option<&Arc<ReplicaSet>>,
    olds: &[Arc<ReplicaSet>],
) -> Result<bool, ReconcileError> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let mut active: Vec<Arc<ReplicaSet>> =
        olds.iter().filter(|r| replicas(r) > 0).cloned().collect();
    if let Some(n) = new {
        if replicas(n) > 0 || active.is_empty() {
            active.push(n.clone());
        }
    }
    if active.len() <= 1 {
        // One active (or the newest): it takes the whole count.
        let Some(rs) = active.first().cloned().or_else(|| new.cloned()) else {
            return Ok(false);
        };
        return replicasets::update(c, d, &rs, want, replicasets::revision(&rs)).await;
    }
    let (surge, _) = replicasets::max_surge_and_unavailable(d);
    let allowed = want + surge;
    let current: i32 = active.iter().map(|r| replicas(r)).sum();
    let to_add = allowed - current;
    // Larger (then newer) first when growing, smaller first when shrinking.
    active.sort_by(|a, b| {
        let by_size = replicas(b).cmp(&replicas(a));
        let by_age = b
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if to_add > 0 {
            by_size.then(by_age)
        } else {
            by_size.reverse().then(by_age)
        }
    });
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::new();
    for rs in &active {
        let allowed_left = to_add - added;
        let p = if replicas(rs) == 0 || to_add == 0 || allowed_left == 0 {
            0
        } else if to_add > 0 {
            fraction(rs, d, surge).min(allowed_left)
        } else {
            fraction(rs, d, surge).max(allowed_left)
        };
        added += p;
        sizes.push(replicas(rs) + p);
    }
    if let Some(first) = sizes.first_mut() {
        *first = (*first + to_add - added).max(0);
    }
    let mut changed = false;
    for (rs, size) in active.iter().zip(sizes) {
        changed |= replicasets::update(c, d, rs, size.max(0), replicasets::revision(rs)).await?;
    }
    Ok(changed)
}
