//! Deployment status and its conditions Available and Progressing (upstream's progress.go
//! and sync.go calculateStatus), which `kubectl rollout status` reads.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::replicasets::{self, available, status_replicas};
use super::DeploymentController;
use crate::controllers::runtime::ReconcileError;

fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Time(jiff::Timestamp::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Replaces the condition of the same type, keeping its transition time if the status is
/// the same (and its update time too if nothing about it changed).
fn set(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(old) = conds.iter().find(|o| o.type_ == c.type_) {
        if old.status == c.status {
            c.last_transition_time = old.last_transition_time.clone();
            if old.reason == c.reason && old.message == c.message {
                c.last_update_time = old.last_update_time.clone();
            }
        }
    }
    conds.retain(|o| o.type_ != c.type_);
    conds.push(c);
}

pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation >= d.metadata.generation
}

/// Computes and writes the status; returns when to check the progress deadline again.
pub async fn sync_status(
    c: &DeploymentController,
    d: &Deployment,
    new: Option<&Arc<ReplicaSet>>,
    all: &[Arc<ReplicaSet>],
    created: bool,
) -> Result<Option<Duration>, ReconcileError> {
    let spec = d.spec.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    let (_, max_unavailable) = replicasets::max_surge_and_unavailable(d);
    let old = d.status.clone().unwrap_or_default();
    let spec_total: i32 = all.iter().map(|r| replicasets::replicas(r)).sum();
    let avail: i32 = all.iter().map(|r| available(r)).sum();
    let ready: i32 = all
        .iter()
        .map(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum();
    let mut s = DeploymentStatus {
        replicas: Some(all.iter().map(|r| status_replicas(r)).sum()),
        updated_replicas: Some(new.map_or(0, |n| status_replicas(n))),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        unavailable_replicas: Some((spec_total - avail).max(0)),
        observed_generation: d.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    let mut conds = s.conditions.take().unwrap_or_default();
    if avail >= want - max_unavailable {
        set(
            &mut conds,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set(
            &mut conds,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    let new_name = new.map(|n| n.name_any()).unwrap_or_default();
    let progressing = conds.iter().find(|c| c.type_ == "Progressing").cloned();
    let mut requeue = None;
    let deadline = spec.progress_deadline_seconds.unwrap_or(600);
    if spec.paused == Some(true) {
        set(
            &mut conds,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ),
        );
    } else if progressing
        .as_ref()
        .is_some_and(|p| p.reason.as_deref() == Some("DeploymentPaused"))
    {
        set(
            &mut conds,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            ),
        );
    } else if complete(d, &s) {
        set(
            &mut conds,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            ),
        );
    } else if created {
        set(
            &mut conds,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{new_name}\""),
            ),
        );
    } else {
        let moved = s.updated_replicas > old.updated_replicas
            || s.ready_replicas > old.ready_replicas
            || s.available_replicas > old.available_replicas
            || (s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0))
                < (old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0));
        let last = progressing
            .as_ref()
            .and_then(|p| p.last_update_time.as_ref())
            .map(|t| t.0.as_second());
        let now = jiff::Timestamp::now().as_second();
        let timed_out = last.is_some_and(|l| now - l > i64::from(deadline));
        if moved || progressing.is_none() {
            set(
                &mut conds,
                condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet \"{new_name}\" is progressing."),
                ),
            );
            requeue = Some(Duration::from_secs(deadline.max(1) as u64));
        } else if timed_out {
            set(
                &mut conds,
                condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                ),
            );
        } else if let Some(l) = last {
            requeue = Some(Duration::from_secs(
                (i64::from(deadline) - (now - l)).max(1) as u64,
            ));
        }
    }
    conds.sort_by(|a, b| b.type_.cmp(&a.type_));
    s.conditions = Some(conds);
    if s != old {
        let api: Api<Deployment> =
            Api::namespaced(c.shared.client.clone(), &d.namespace().unwrap_or_default());
        api.patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": s})),
        )
        .await?;
    }
    Ok(requeue)
}
