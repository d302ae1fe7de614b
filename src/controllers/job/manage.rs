//! Creating and deleting a Job's pods: slow-start batches (1, 2, 4, ...) stopping at the
//! first failure, with expectations raised before the requests go out.

use std::sync::Arc;

use futures_util::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;

use super::{template, JobController};
use crate::controllers::pods;
use crate::controllers::runtime::ReconcileError;

/// Most pods created or deleted in one reconcile (upstream's burst).
pub const BURST: usize = 500;

/// Creates one pod per entry of `indexes` (`None`: a plain pod); returns how many were made.
pub async fn create(
    c: &JobController,
    key: &str,
    job: &Job,
    indexes: Vec<Option<i32>>,
) -> Result<usize, ReconcileError> {
    let api: Api<Pod> = Api::namespaced(
        c.shared.client.clone(),
        &job.namespace().unwrap_or_default(),
    );
    let pods: Vec<Pod> = indexes
        .into_iter()
        .take(BURST)
        .map(|i| template::pod(job, i))
        .collect::<Result<_, _>>()?;
    c.expectations.borrow_mut().expect_adds(key, pods.len());
    let (mut created, mut batch, mut rest) = (0, 1, pods.as_slice());
    while !rest.is_empty() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        let pp = PostParams::default();
        let results = join_all(now.iter().map(|p| api.create(&pp, p))).await;
        let mut failure = None;
        for r in results {
            match r {
                Ok(p) => {
                    created += 1;
                    c.shared.recorder.record(
                        job,
                        false,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    );
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            // Neither the failed creations nor the batches not sent will be seen.
            let unsent = pods.len() - created;
            c.expectations.borrow_mut().lower_adds(key, unsent);
            c.shared
                .recorder
                .record(job, true, "FailedCreate", format!("Error creating: {e}"));
            return Err(e.into());
        }
        rest = later;
        batch *= 2;
    }
    Ok(created)
}

/// Deletes `doomed`; returns how many deletions went through (gone already counts).
pub async fn delete(
    c: &JobController,
    key: &str,
    job: &Job,
    doomed: &[Arc<Pod>],
) -> Result<usize, ReconcileError> {
    let api: Api<Pod> = Api::namespaced(
        c.shared.client.clone(),
        &job.namespace().unwrap_or_default(),
    );
    let doomed = &doomed[..doomed.len().min(BURST)];
    c.expectations
        .borrow_mut()
        .expect_dels(key, doomed.iter().filter_map(|p| p.uid()));
    let dp = DeleteParams::default();
    let names: Vec<String> = doomed.iter().map(|p| p.name_any()).collect();
    let results = join_all(names.iter().map(|n| api.delete(n, &dp))).await;
    let mut deleted = 0;
    let mut failure = None;
    for (p, r) in doomed.iter().zip(results) {
        match r {
            Ok(_) => {
                deleted += 1;
                c.shared.recorder.record(
                    job,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", p.name_any()),
                );
            }
            Err(e) => {
                // Not deleted by us (or already gone): do not wait for it.
                let uid = p.uid().unwrap_or_default();
                c.expectations.borrow_mut().observed(key, &uid, true);
                match e {
                    kube::Error::Api(s) if s.code == 404 => deleted += 1,
                    e => failure = Some(e),
                }
            }
        }
    }
    if let Some(e) = failure {
        c.shared
            .recorder
            .record(job, true, "FailedDelete", format!("Error deleting: {e}"));
        return Err(e.into());
    }
    Ok(deleted)
}

/// Which of `active` to delete first when there are too many: not ready before ready,
/// unscheduled and pending before running, newer before older.
pub fn deletion_order(active: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let mut sorted = active.to_vec();
    sorted.sort_by_key(|p| {
        let scheduled = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
        let running = super::backoff::phase(p) == Some("Running");
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second());
        (
            pods::is_ready(p),
            scheduled,
            running,
            std::cmp::Reverse(created),
        )
    });
    sorted
}
