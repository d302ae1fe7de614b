//! One CronJob reconcile: bring `status.active` up to date, prune the history, then start the
//! most recent missed run if it is due, allowed by the concurrency policy and within
//! startingDeadlineSeconds; come back at the next run.

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::ResourceExt;

use super::history::{finished, to_prune};
use super::policy::{decide, Action};
use super::schedule::{self, TOO_MANY_MISSED};
use super::template::{self, SCHEDULED_KEY};
use super::{status, CronJobController};
use crate::controllers::pods::controlled_by;
use crate::controllers::runtime::{split, ReconcileError, ReconcileResult};
use crate::controllers::shared::obj_ref;

/// Come back a little after the next run is due.
const SLACK: Duration = Duration::from_millis(100);

pub async fn sync(c: &CronJobController, key: &str) -> ReconcileResult {
    let (ns, name) = split(key);
    let Some(cj) = c.shared.cronjobs.store.get(&obj_ref::<CronJob>(ns, name)) else {
        return Ok(None);
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let now = c.clock.now();
    let uid = cj.uid().unwrap_or_default();
    let jobs: Vec<Arc<Job>> = c
        .shared
        .jobs
        .store
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == ns && controlled_by(&j.metadata, &uid))
        .collect();
    let mut st = cj.status.clone().unwrap_or_default();
    st.active = nonempty(active_refs(c, &cj, &jobs).await?);
    let done = jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    if done.as_ref().map(|t| t.0) > st.last_successful_time.as_ref().map(|t| t.0) {
        st.last_successful_time = done;
    }
    prune(c, &cj, &jobs).await;

    let spec = cj.spec.clone().unwrap_or_default();
    let cron = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("unparseable schedule: {:?}: {e}", spec.schedule);
            return give_up(c, &cj, &st, "UnparseableSchedule", msg).await;
        }
    };
    let tz = match schedule::zone(spec.time_zone.as_deref()) {
        Ok(tz) => tz,
        Err(e) => {
            let msg = format!("invalid timeZone: {:?}: {e}", spec.time_zone);
            return give_up(c, &cj, &st, "UnknownTimeZone", msg).await;
        }
    };
    let next = schedule::next_after(&cron, &tz, now).map(|t| c.clock.real_until(t) + SLACK);
    if spec.suspend == Some(true) {
        status::write(&c.shared.client, &cj, &st).await?;
        return Ok(None);
    }
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = st.last_schedule_time.as_ref().map_or(created, |t| t.0);
    let deadline = spec
        .starting_deadline_seconds
        .map(SignedDuration::from_secs);
    if let Some(d) = deadline {
        earliest = earliest.max(now - d);
    }
    let missed = schedule::missed(&cron, &tz, earliest, now);
    if missed.count > TOO_MANY_MISSED {
        let msg = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
        c.shared
            .recorder
            .record(&*cj, true, "TooManyMissedTimes", msg.into());
    }
    let Some(scheduled) = missed.latest else {
        status::write(&c.shared.client, &cj, &st).await?;
        return Ok(next);
    };
    if deadline.is_some_and(|d| scheduled + d < now) {
        let msg = format!("Missed scheduled time to start a job: {scheduled}");
        c.shared.recorder.record(&*cj, true, "MissSchedule", msg);
        status::write(&c.shared.client, &cj, &st).await?;
        return Ok(next);
    }
    let active = st.active.clone().unwrap_or_default();
    match decide(spec.concurrency_policy.as_deref(), active.len()) {
        Action::Skip => {
            tracing::debug!(cronjob = %key, "not starting a job: the previous one still runs (Forbid)");
            status::write(&c.shared.client, &cj, &st).await?;
            return Ok(next);
        }
        Action::Replace => {
            let api: Api<Job> = Api::namespaced(c.shared.client.clone(), ns.unwrap_or_default());
            for r in &active {
                let name = r.name.clone().unwrap_or_default();
                delete_job(&api, &name).await?;
                c.shared.recorder.record(
                    &*cj,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                );
            }
            st.active = None;
        }
        Action::Run => {}
    }
    let job = template::job(&cj, &scheduled.to_zoned(tz.clone()))?;
    let api: Api<Job> = Api::namespaced(c.shared.client.clone(), ns.unwrap_or_default());
    let made = match api.create(&PostParams::default(), &job).await {
        Ok(j) => {
            let msg = format!("Created job {}", j.name_any());
            c.shared
                .recorder
                .record(&*cj, false, "SuccessfulCreate", msg);
            Some(j)
        }
        // Made by an earlier reconcile whose status write was lost: the name says so.
        Err(kube::Error::Api(e)) if e.code == 409 => api.get_opt(&job.name_any()).await?,
        Err(e) => {
            c.shared.recorder.record(
                &*cj,
                true,
                "FailedCreate",
                format!("Error creating job: {e}"),
            );
            return Err(e.into());
        }
    };
    if let Some(j) = made.filter(|j| finished(j).is_none() && controlled_by(&j.metadata, &uid)) {
        let mut refs = st.active.take().unwrap_or_default();
        if !refs.iter().any(|r| r.uid == j.uid()) {
            refs.push(status::job_ref(&j));
        }
        st.active = nonempty(refs);
    }
    st.last_schedule_time = Some(Time(scheduled));
    status::write(&c.shared.client, &cj, &st).await?;
    Ok(next)
}

fn nonempty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

async fn give_up(
    c: &CronJobController,
    cj: &CronJob,
    st: &CronJobStatus,
    reason: &str,
    msg: String,
) -> ReconcileResult {
    tracing::warn!(cronjob = %cj.name_any(), "{msg}");
    c.shared.recorder.record(cj, true, reason, msg);
    status::write(&c.shared.client, cj, st).await?;
    Ok(None)
}

/// The unfinished Jobs of this CronJob's runs: those already listed that still exist (asking
/// the API about ones the cache does not show yet) and any the cache shows with a scheduled
/// time (created before a status write was lost). Manual Jobs are not runs.
async fn active_refs(
    c: &CronJobController,
    cj: &CronJob,
    jobs: &[Arc<Job>],
) -> Result<Vec<k8s_openapi::api::core::v1::ObjectReference>, ReconcileError> {
    let listed = cj
        .status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default();
    let mut refs = Vec::new();
    for j in jobs {
        let was_listed = listed.iter().any(|r| r.uid == j.uid());
        let scheduled = j.annotations().contains_key(SCHEDULED_KEY);
        if finished(j).is_none()
            && j.metadata.deletion_timestamp.is_none()
            && (was_listed || scheduled)
        {
            refs.push(status::job_ref(j));
        }
    }
    let api: Api<Job> =
        Api::namespaced(c.shared.client.clone(), &cj.namespace().unwrap_or_default());
    for r in listed {
        if jobs.iter().any(|j| j.uid() == r.uid) {
            continue;
        }
        // Not in the cache: newer than it, or gone.
        let name = r.name.clone().unwrap_or_default();
        if let Some(j) = api.get_opt(&name).await? {
            if j.uid() == r.uid && finished(&j).is_none() {
                refs.push(r);
            }
        }
    }
    Ok(refs)
}

async fn prune(c: &CronJobController, cj: &CronJob, jobs: &[Arc<Job>]) {
    let spec = cj.spec.as_ref();
    let doomed = to_prune(
        jobs,
        spec.and_then(|s| s.successful_jobs_history_limit),
        spec.and_then(|s| s.failed_jobs_history_limit),
    );
    let api: Api<Job> =
        Api::namespaced(c.shared.client.clone(), &cj.namespace().unwrap_or_default());
    for j in doomed {
        match delete_job(&api, &j.name_any()).await {
            Ok(()) => {
                let msg = format!("Deleted job {}", j.name_any());
                c.shared.recorder.record(cj, false, "SuccessfulDelete", msg);
            }
            // The next reconcile tries again.
            Err(e) => tracing::debug!("pruning job {}: {e}", j.name_any()),
        }
    }
}

async fn delete_job(api: &Api<Job>, name: &str) -> Result<(), ReconcileError> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
