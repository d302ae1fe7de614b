//! Creating and deleting daemon pods: creations in slow-start batches (stopping at the first
//! failure, so a broken template does not flood the API), expectations raised first, an
//! event per pod as upstream records them.

use std::sync::Arc;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;

use super::template::pod_for;
use super::DaemonSetController;
use crate::controllers::runtime::ReconcileError;

/// Most pods created or deleted in one reconcile (upstream's burstReplicas).
const BURST: usize = 250;

fn pods_api(c: &DaemonSetController, ds: &DaemonSet) -> Api<Pod> {
    Api::namespaced(c.shared.client.clone(), &ds.namespace().unwrap_or_default())
}

pub async fn create(
    c: &DaemonSetController,
    key: &str,
    ds: &DaemonSet,
    template: &PodTemplateSpec,
    nodes: &[String],
) -> Result<(), ReconcileError> {
    let api = pods_api(c, ds);
    let nodes = &nodes[..nodes.len().min(BURST)];
    c.expectations.borrow_mut().expect_adds(key, nodes.len());
    let pp = PostParams::default();
    let mut left = nodes;
    let mut batch = 1;
    while !left.is_empty() {
        let (now, rest) = left.split_at(batch.min(left.len()));
        let made: Vec<Pod> = now.iter().map(|n| pod_for(ds, template, n)).collect();
        let results = join_all(made.iter().map(|p| api.create(&pp, p))).await;
        let mut failure = None;
        let mut ok = 0;
        for r in results {
            match r {
                Ok(p) => {
                    ok += 1;
                    let msg = format!("Created pod: {}", p.name_any());
                    c.shared.recorder.record(ds, false, "SuccessfulCreate", msg);
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            // Neither the failed creations nor the batches not sent will show up.
            c.expectations
                .borrow_mut()
                .lower_adds(key, now.len() - ok + rest.len());
            let msg = format!("Error creating: {e}");
            c.shared.recorder.record(ds, true, "FailedCreate", msg);
            return Err(e.into());
        }
        left = rest;
        batch *= 2;
    }
    Ok(())
}

/// Deletes pods; `force` skips the graceful deletion no node agent would finish.
pub async fn delete(
    c: &DaemonSetController,
    key: &str,
    ds: &DaemonSet,
    pods: &[Arc<Pod>],
    force: bool,
) -> Result<(), ReconcileError> {
    let api = pods_api(c, ds);
    let pods = &pods[..pods.len().min(BURST)];
    c.expectations
        .borrow_mut()
        .expect_dels(key, pods.iter().filter_map(|p| p.uid()));
    let dp = if force {
        DeleteParams::default().grace_period(0)
    } else {
        DeleteParams::default()
    };
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    let results = join_all(names.iter().map(|n| api.delete(n, &dp))).await;
    let mut failure = None;
    for (p, r) in pods.iter().zip(results) {
        match r {
            Ok(_) => {
                let msg = format!("Deleted pod: {}", p.name_any());
                c.shared.recorder.record(ds, false, "SuccessfulDelete", msg);
            }
            Err(e) => {
                // Never coming (404: already gone, which the informer may have missed).
                c.expectations
                    .borrow_mut()
                    .observed(key, &p.uid().unwrap_or_default(), true);
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    let msg = format!("Error deleting: {e}");
                    c.shared.recorder.record(ds, true, "FailedDelete", msg);
                    failure = Some(e);
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
