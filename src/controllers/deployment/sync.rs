//! One Deployment reconcile: find its ReplicaSets, then scale (paused or resized) or roll
//! out, trim history, write status.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use super::replicasets::{self, replicas, revision, status_replicas};
use super::{progress, recreate, rolling, scale, DeploymentController, REVISION};
use crate::controllers::runtime::{split, ReconcileResult};
use crate::controllers::shared::obj_ref;

pub async fn sync(c: &DeploymentController, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(d) = c
        .shared
        .deployments
        .store
        .get(&obj_ref::<Deployment>(ns, name))
    else {
        return Ok(None);
    };
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let selector_empty = d.spec.as_ref().is_none_or(|s| {
        s.selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && s.selector
                .match_expressions
                .as_ref()
                .is_none_or(|m| m.is_empty())
    });
    if selector_empty {
        return Ok(None);
    }
    let all = replicasets::claimed(c, &d).await?;
    let mut new = replicasets::find_new(&d, &all);
    let olds: Vec<Arc<ReplicaSet>> = all
        .iter()
        .filter(|r| new.as_ref().is_none_or(|n| n.uid() != r.uid()))
        .cloned()
        .collect();
    let max_old = olds.iter().map(|r| revision(r)).max().unwrap_or(0);
    let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
    let recreate = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);

    // The new ReplicaSet's revision is one above every old one (a rollback makes an old
    // ReplicaSet new again, with a new revision).
    let new_revision = match &new {
        Some(n) if revision(n) > max_old => revision(n),
        _ => max_old + 1,
    };
    let mut created = false;
    if let Some(n) = &new {
        if revision(n) != new_revision {
            replicasets::update(c, &d, n, replicas(n), new_revision).await?;
        }
    }
    if paused || scale::is_scaling_event(&d, &all) {
        scale::scale(c, &d, new.as_ref(), &olds).await?;
    } else if recreate {
        if !recreate::scale_down_old(c, &d, &olds).await? {
            match &new {
                None => {
                    new = replicasets::create_new(c, &d, new_revision, want)
                        .await?
                        .map(Arc::new);
                    created = new.is_some();
                }
                Some(n) => {
                    replicasets::update(c, &d, n, want, new_revision).await?;
                }
            }
        }
    } else {
        match &new {
            None => {
                let (surge, _) = rolling::max_surge_and_unavailable(&d);
                let current: i32 = olds.iter().map(|r| replicas(r)).sum();
                let initial = if current == 0 {
                    want
                } else {
                    (want + surge - current).clamp(0, want)
                };
                new = replicasets::create_new(c, &d, new_revision, initial)
                    .await?
                    .map(Arc::new);
                created = new.is_some();
            }
            Some(n) => {
                rolling::rollout(c, &d, n, &olds, new_revision).await?;
            }
        }
    }
    record_revision(c, &d, new_revision).await?;
    let all_now = replicasets::owned(c, &d);
    let requeue = progress::sync_status(c, &d, new.as_ref(), &all_now, created).await?;
    if d.status.as_ref().is_some_and(|s| progress::complete(&d, s)) {
        cleanup(c, &d, &olds).await?;
    }
    Ok(requeue)
}

/// The Deployment carries the revision of its new ReplicaSet.
async fn record_revision(
    c: &DeploymentController,
    d: &Deployment,
    revision: i64,
) -> Result<(), kube::Error> {
    let current = d.annotations().get(REVISION).cloned().unwrap_or_default();
    if current == revision.to_string() {
        return Ok(());
    }
    let api: Api<Deployment> =
        Api::namespaced(c.shared.client.clone(), &d.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
    api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Deletes the oldest empty old ReplicaSets beyond revisionHistoryLimit.
async fn cleanup(
    c: &DeploymentController,
    d: &Deployment,
    olds: &[Arc<ReplicaSet>],
) -> Result<(), kube::Error> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty: Vec<&Arc<ReplicaSet>> = olds
        .iter()
        .filter(|r| {
            replicas(r) == 0 && status_replicas(r) == 0 && r.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if empty.len() <= limit {
        return Ok(());
    }
    empty.sort_by_key(|r| revision(r));
    let api: Api<ReplicaSet> =
        Api::namespaced(c.shared.client.clone(), &d.namespace().unwrap_or_default());
    for rs in &empty[..empty.len() - limit] {
        match api.delete(&rs.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
