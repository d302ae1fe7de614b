//! One DaemonSet reconcile (upstream's syncDaemonSet): current revision, then per-node pods
//! (manage), then the rolling update once nothing is in flight, history pruning, status.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::ApiResource;
use kube::ResourceExt;
use tracing::debug;

use super::template::pod_template;
use super::view::View;
use super::{actions, manage, rolling, status, DaemonSetController};
use crate::controllers::claim;
use crate::controllers::revisions::{self, Owner};
use crate::controllers::runtime::{split, ReconcileResult};
use crate::controllers::shared::obj_ref;

fn sooner(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub async fn sync(c: &DaemonSetController, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(ds) = c
        .shared
        .daemonsets
        .store
        .get(&obj_ref::<DaemonSet>(ns, name))
    else {
        c.expectations.borrow_mut().forget(key);
        c.backoff.borrow_mut().forget(key);
        return Ok(None);
    };
    // Its pods go with it (garbage collector); nothing to roll any more.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let claimer = claim::Owner {
        resource: ApiResource::erase::<DaemonSet>(&()),
        meta: &ds.metadata,
        selector: &spec.selector,
    };
    let pods = claim::claim(&c.shared.client, &claimer, c.shared.pods_in(ns)).await?;
    let owner = Owner {
        kind: "DaemonSet",
        meta: &ds.metadata,
        template: &spec.template,
        collisions: ds.status.as_ref().and_then(|s| s.collision_count),
        history_limit: spec.revision_history_limit,
    };
    let history = revisions::construct(&c.shared, &owner).await?;
    let hash = revisions::hash_of(&history.current);
    let nodes = c.shared.nodes.store.state();
    let view = View::new(&ds, &nodes, &pods, &hash);
    let wait = c.expectations.borrow_mut().wait(key);
    let mut requeue = wait;
    if wait.is_none() {
        requeue = act(c, key, &ds, &view).await?;
        revisions::cleanup(&c.shared, &owner, &history.old, &pods).await?;
    }
    let available_in = status::update(c, &ds, &view, wait.is_none()).await?;
    Ok(sooner(requeue, available_in))
}

/// Manage, then (when manage had nothing to do) one rolling-update step.
async fn act(c: &DaemonSetController, key: &str, ds: &DaemonSet, view: &View) -> ReconcileResult {
    let plan = manage::plan(view, &mut c.backoff.borrow_mut(), key, Instant::now());
    let template = pod_template(ds, &view.hash);
    for p in &plan.failed {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let msg = format!(
            "Found failed daemon pod {}/{} on node {node}, will try to kill it",
            p.namespace().unwrap_or_default(),
            p.name_any()
        );
        c.shared.recorder.record(ds, true, "FailedDaemonPod", msg);
    }
    let busy = !(plan.create.is_empty() && plan.delete.is_empty() && plan.force_delete.is_empty());
    if !plan.force_delete.is_empty() {
        actions::delete(c, key, ds, &plan.force_delete, true).await?;
    }
    if !plan.delete.is_empty() {
        actions::delete(c, key, ds, &plan.delete, false).await?;
    }
    if !plan.create.is_empty() {
        actions::create(c, key, ds, &template, &plan.create).await?;
    }
    if busy || !view.rolling {
        return Ok(plan.retry);
    }
    let step = rolling::plan(view);
    if !(step.delete.is_empty() && step.create.is_empty()) {
        debug!(daemonset = %key, delete = step.delete.len(), create = step.create.len(), "rolling update step");
    }
    if !step.delete.is_empty() {
        actions::delete(c, key, ds, &step.delete, false).await?;
    }
    if !step.create.is_empty() {
        actions::create(c, key, ds, &template, &step.create).await?;
    }
    Ok(plan.retry)
}
