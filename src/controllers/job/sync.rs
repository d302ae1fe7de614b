//! One Job reconcile: count the Job's pods, decide whether it has succeeded or failed
//! (backoffLimit, activeDeadlineSeconds), otherwise keep the right number of pods active,
//! then write the status. Finished pods are kept and counted (no tracking finalizers).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ApiResource;

use super::backoff::phase;
use super::status::{self as js, has_condition, set_condition};
use super::{backoff, indexed, manage, ttl, JobController};
use crate::controllers::claim::{claim, Owner};
use crate::controllers::pods::{self, is_active};
use crate::controllers::runtime::{split, ReconcileResult};
use crate::controllers::shared::obj_ref;

/// A decided end: (Complete or Failed, reason, message).
type Verdict = (&'static str, String, String);

pub async fn sync(c: &JobController, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(job) = c.shared.jobs.store.get(&obj_ref::<Job>(ns, name)) else {
        c.expectations.borrow_mut().forget(key);
        return Ok(None);
    };
    let now = Timestamp::now();
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    if js::is_finished(&job) {
        return ttl::check(&c.shared.client, &job, now).await;
    }
    let spec = job.spec.clone().unwrap_or_default();
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone());
    if !matches!(restart.as_deref(), Some("Never" | "OnFailure")) {
        // Upstream's validation rejects these; the API here does not, so say it once.
        if job.status.is_none() {
            let msg = format!("restartPolicy must be Never or OnFailure, not {restart:?}");
            c.shared
                .recorder
                .record(&*job, true, "InvalidRestartPolicy", msg);
        }
        return Ok(None);
    }
    let selector = spec.selector.clone().unwrap_or_default();
    let claimer = Owner {
        resource: ApiResource::erase::<Job>(&()),
        meta: &job.metadata,
        selector: &selector,
    };
    let all = claim(&c.shared.client, &claimer, c.shared.pods_in(ns)).await?;
    let active: Vec<Arc<Pod>> = all.iter().filter(|p| is_active(p)).cloned().collect();
    let terminating = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !finished(p))
        .count();

    let old = job.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let indexed_mode = spec.completion_mode.as_deref() == Some("Indexed");
    let done = indexed_mode.then(|| indexed::succeeded(&all, spec.completions.unwrap_or(1)));
    let succeeded_pods = match &done {
        Some(d) => d.len(),
        None => all.iter().filter(|p| phase(p) == Some("Succeeded")).count(),
    } as i32;
    let failed_pods = all.iter().filter(|p| phase(p) == Some("Failed")).count() as i32;
    // Never below what was recorded: pods deleted by others stay counted.
    let succeeded = succeeded_pods.max(old.succeeded.unwrap_or(0));
    let mut failed = failed_pods.max(old.failed.unwrap_or(0));

    let suspended = spec.suspend == Some(true);
    if suspended {
        set_condition(
            &mut st,
            js::SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        );
    } else {
        if has_condition(&old, js::SUSPENDED) {
            set_condition(
                &mut st,
                js::SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                now,
            );
            // The active deadline counts anew from the resume.
            st.start_time = Some(Time(now));
        }
        st.start_time.get_or_insert(Time(now));
    }

    let verdict = verdict(&spec, &old, &st, &active, succeeded, failed, suspended, now);
    let wait = c.expectations.borrow_mut().wait(key);
    let mut requeue: Option<Duration> = wait;
    let (mut created, mut deleted) = (0, 0);
    if let Some((kind, reason, message)) = &verdict {
        let interim = if *kind == js::FAILED {
            js::FAILURE_TARGET
        } else {
            js::SUCCESS_CRITERIA_MET
        };
        if *kind == js::FAILED && !has_condition(&old, interim) {
            // Pods killed for a failing Job count as failed, as upstream counts them.
            failed += active.len() as i32;
            c.shared
                .recorder
                .record(&*job, true, reason, message.clone());
        }
        set_condition(&mut st, interim, "True", reason, message, now);
        if !active.is_empty() {
            deleted = manage::delete(c, key, &job, &active).await?;
        }
        // The terminal condition once no pod of the Job is still running (as since 1.31).
        if active.len() == deleted && terminating == 0 && wait.is_none() {
            set_condition(&mut st, kind, "True", reason, message, now);
            if *kind == js::COMPLETE {
                st.completion_time = Some(Time(now));
                c.shared
                    .recorder
                    .record(&*job, false, "Completed", "Job completed".into());
            }
        }
    } else if suspended {
        if !active.is_empty() {
            deleted = manage::delete(c, key, &job, &active).await?;
        }
    } else if wait.is_none() {
        let (d, cr, after) =
            manage_pods(c, key, &job, &spec, &all, &active, succeeded, &done, now).await?;
        (deleted, created) = (d, cr);
        requeue = min(requeue, after);
    }

    st.active = nonzero(active.len() as i32 + created as i32 - deleted as i32);
    st.succeeded = nonzero(succeeded);
    st.failed = nonzero(failed);
    st.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
    st.terminating = Some((terminating + deleted) as i32);
    st.completed_indexes = done.as_ref().map(indexed::ranges).filter(|s| !s.is_empty());
    js::write(&c.shared.client, &job, &st).await?;

    let finished = has_condition(&st, js::COMPLETE) || has_condition(&st, js::FAILED);
    if finished {
        let mut done_job = (*job).clone();
        done_job.status = Some(st);
        return ttl::check(&c.shared.client, &done_job, now).await;
    }
    if let (Some(ads), Some(start), false) =
        (spec.active_deadline_seconds, &st.start_time, suspended)
    {
        let end = start.0 + jiff::SignedDuration::from_secs(ads);
        let left = now.duration_until(end).as_millis().max(0) as u64;
        requeue = min(requeue, Some(Duration::from_millis(left)));
    }
    Ok(requeue)
}

fn finished(p: &Pod) -> bool {
    matches!(phase(p), Some("Succeeded" | "Failed"))
}

fn nonzero(n: i32) -> Option<i32> {
    (n > 0).then_some(n)
}

fn min(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the Job has succeeded or failed, keeping an end decided earlier.
#[allow(clippy::too_many_arguments)]
fn verdict(
    spec: &JobSpec,
    old: &JobStatus,
    st: &JobStatus,
    active: &[Arc<Pod>],
    succeeded: i32,
    failed: i32,
    suspended: bool,
    now: Timestamp,
) -> Option<Verdict> {
    let decided = |type_: &str| {
        let c = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")?;
        Some((
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        ))
    };
    if let Some((r, m)) = decided(js::FAILURE_TARGET) {
        return Some((js::FAILED, r, m));
    }
    if let Some((r, m)) = decided(js::SUCCESS_CRITERIA_MET) {
        return Some((js::COMPLETE, r, m));
    }
    let limit = spec.backoff_limit.unwrap_or(6);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = active.iter().map(|p| pods::restarts(p)).sum();
    let restarts_exceeded = on_failure
        && if limit == 0 {
            restarts > 0
        } else {
            restarts >= limit
        };
    if failed > limit || restarts_exceeded {
        let m = "Job has reached the specified backoff limit";
        return Some((js::FAILED, "BackoffLimitExceeded".into(), m.into()));
    }
    if let (Some(ads), Some(start), false) =
        (spec.active_deadline_seconds, &st.start_time, suspended)
    {
        if now.duration_since(start.0).as_secs() >= ads {
            let m = "Job was active longer than specified deadline";
            return Some((js::FAILED, "DeadlineExceeded".into(), m.into()));
        }
    }
    let complete = match spec.completions {
        Some(n) => succeeded >= n,
        // A work queue: done once a pod succeeded and the others have ended.
        None => succeeded > 0 && active.is_empty(),
    };
    complete.then(|| {
        let m = "Reached expected number of succeeded pods";
        (js::COMPLETE, "CompletionsReached".into(), m.into())
    })
}

/// Keeps min(parallelism, remaining) pods active (per index in Indexed mode), creating new
/// ones only after the failure back-off. Returns (deleted, created, requeue).
#[allow(clippy::too_many_arguments)]
async fn manage_pods(
    c: &JobController,
    key: &str,
    job: &Job,
    spec: &JobSpec,
    all: &[Arc<Pod>],
    active: &[Arc<Pod>],
    succeeded: i32,
    done: &Option<std::collections::BTreeSet<i32>>,
    now: Timestamp,
) -> Result<(usize, usize, Option<Duration>), crate::controllers::runtime::ReconcileError> {
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let (doomed, wanted): (Vec<Arc<Pod>>, Vec<Option<i32>>) = match done {
        Some(done) => {
            let n = spec.completions.unwrap_or(1);
            let (doomed, create) = indexed::plan(active, done, n, parallelism);
            (doomed, create.into_iter().map(Some).collect())
        }
        None => {
            let want = match spec.completions {
                // Work queue: after a success, let the running ones finish, start no more.
                None if succeeded > 0 => active.len(),
                None => parallelism,
                Some(n) => (n - succeeded).clamp(0, parallelism as i32) as usize,
            };
            if active.len() > want {
                let doomed = manage::deletion_order(active);
                (doomed[..active.len() - want].to_vec(), Vec::new())
            } else {
                (Vec::new(), vec![None; want - active.len()])
            }
        }
    };
    let deleted = if doomed.is_empty() {
        0
    } else {
        manage::delete(c, key, job, &doomed).await?
    };
    if wanted.is_empty() {
        return Ok((deleted, 0, None));
    }
    let wait = backoff::remaining(all.iter().map(|p| p.as_ref()), now);
    if !wait.is_zero() {
        return Ok((deleted, 0, Some(wait)));
    }
    let created = manage::create(c, key, job, wanted).await?;
    Ok((deleted, created, None))
}
