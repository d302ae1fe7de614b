//! One ReplicaSet reconcile: compare active pods with `replicas`, create or delete the
//! difference, then write the status.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;

use super::status;
use super::ReplicaSetController;
use crate::controllers::claim::{claim, Owner};
use crate::controllers::pods::{self, is_active, owner_ref};
use crate::controllers::runtime::{split, ReconcileError, ReconcileResult};

/// Most pods created or deleted in one reconcile (upstream's burstReplicas).
const BURST: usize = 500;

pub async fn sync(c: &ReplicaSetController, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(rs) = c.get(ns, name) else {
        c.expectations.borrow_mut().forget(key);
        return Ok(None);
    };
    let candidates = c.shared.pods_in(ns).into_iter().filter(|p| is_active(p));
    let selector = rs
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    let owner = Owner {
        resource: c.flavor.resource(),
        meta: &rs.metadata,
        selector: &selector,
    };
    let active = claim(&c.shared.client, &owner, candidates.collect()).await?;
    let wait = c.expectations.borrow_mut().wait(key);
    if wait.is_none() && rs.metadata.deletion_timestamp.is_none() {
        let want = rs
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as usize;
        if active.len() < want {
            create(c, key, &rs, want - active.len()).await?;
        } else if active.len() > want {
            delete(c, key, &rs, &active, active.len() - want).await?;
        }
    }
    let requeue = status::update(c, &rs, &active).await?;
    Ok(match (wait, requeue) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

fn pod_from_template(c: &ReplicaSetController, rs: &ReplicaSet) -> Result<Pod, ReconcileError> {
    let template = rs
        .spec
        .as_ref()
        .map(|s| s.template.clone().unwrap_or_default())
        .ok_or_else(|| ReconcileError::Other("ReplicaSet without spec".into()))?;
    let owner = owner_ref(c.flavor.api_version(), c.flavor.kind(), &rs.metadata);
    let mut pod = pods::from_template(&template, owner, rs.namespace());
    pod.metadata.generate_name = Some(format!("{}-", rs.name_any()));
    Ok(pod)
}

/// Creates `count` pods in slow-start batches (1, 2, 4, ...), stopping at the first failure
/// so a broken template does not flood the API.
async fn create(
    c: &ReplicaSetController,
    key: &str,
    rs: &ReplicaSet,
    count: usize,
) -> Result<(), ReconcileError> {
    let api: Api<Pod> =
        Api::namespaced(c.shared.client.clone(), &rs.namespace().unwrap_or_default());
    let pod = pod_from_template(c, rs)?;
    let mut left = count.min(BURST);
    c.expectations.borrow_mut().expect_adds(key, left);
    let mut batch = 1;
    let mut created = 0;
    while left > 0 {
        let n = batch.min(left);
        let pp = PostParams::default();
        let results = join_all((0..n).map(|_| api.create(&pp, &pod))).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        created += ok;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            // Neither the failed ones nor the batches not sent will show up.
            c.expectations.borrow_mut().lower_adds(key, left - ok);
            c.record(rs, true, "FailedCreate", format!("Error creating: {e}"));
            return Err(e.into());
        }
        left -= n;
        batch *= 2;
    }
    if created > 0 {
        c.record(
            rs,
            false,
            "SuccessfulCreate",
            format!("Created {created} pod(s)"),
        );
    }
    Ok(())
}

/// Upstream's deletion preference: unscheduled, then pending, unknown, running; not ready
/// before ready; more pods of the set on the same node first; ready for less time first;
/// more restarts first; newer first.
fn deletion_order(active: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let now = jiff::Timestamp::now();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in active {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let rank = |p: &Pod| {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") => 0,
            Some("Running") => 2,
            _ => 1,
        };
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        (
            !node.is_empty(),
            phase,
            pods::is_ready(p),
            std::cmp::Reverse(per_node.get(&node).copied().unwrap_or(0)),
            pods::ready_for(p, now),
            std::cmp::Reverse(pods::restarts(p)),
            std::cmp::Reverse(created),
        )
    };
    let mut sorted = active.to_vec();
    sorted.sort_by_key(|p| rank(p));
    sorted
}

async fn delete(
    c: &ReplicaSetController,
    key: &str,
    rs: &ReplicaSet,
    active: &[Arc<Pod>],
    count: usize,
) -> Result<(), ReconcileError> {
    let api: Api<Pod> =
        Api::namespaced(c.shared.client.clone(), &rs.namespace().unwrap_or_default());
    let doomed: Vec<Arc<Pod>> = deletion_order(active)
        .into_iter()
        .take(count.min(BURST))
        .collect();
    c.expectations
        .borrow_mut()
        .expect_dels(key, doomed.iter().filter_map(|p| p.uid()));
    let dp = DeleteParams::default();
    let names: Vec<String> = doomed.iter().map(|p| p.name_any()).collect();
    let results = join_all(names.iter().map(|n| api.delete(n, &dp))).await;
    let mut deleted = 0;
    for (p, r) in doomed.iter().zip(results) {
        match r {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                c.expectations
                    .borrow_mut()
                    .observed(key, &p.uid().unwrap_or_default(), true);
            }
            Err(e) => {
                c.expectations
                    .borrow_mut()
                    .observed(key, &p.uid().unwrap_or_default(), true);
                c.record(rs, true, "FailedDelete", format!("Error deleting: {e}"));
                return Err(e.into());
            }
        }
    }
    if deleted > 0 {
        c.record(
            rs,
            false,
            "SuccessfulDelete",
            format!("Deleted {deleted} pod(s)"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Arc<Pod> {
        let mut status = json!({"phase": phase});
        if ready {
            status["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": status,
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn deletes_unscheduled_then_pending_then_not_ready_then_newest() {
        let pods = vec![
            pod(
                "ready-old",
                Some("n1"),
                "Running",
                true,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "ready-new",
                Some("n2"),
                "Running",
                true,
                "2026-01-02T00:00:00Z",
            ),
            pod(
                "not-ready",
                Some("n3"),
                "Running",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "pending",
                Some("n4"),
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2026-01-01T00:00:00Z",
            ),
        ];
        let order: Vec<String> = deletion_order(&pods).iter().map(|p| p.name_any()).collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "ready-new",
                "ready-old"
            ]
        );
    }
}
