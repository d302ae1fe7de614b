//! Job status: conditions as upstream sets them (Complete / SuccessCriteriaMet, Failed /
//! FailureTarget, Suspended) and writing the status through the status subresource.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::Value;

use crate::controllers::runtime::ReconcileError;

pub const COMPLETE: &str = "Complete";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const FAILED: &str = "Failed";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUSPENDED: &str = "Suspended";

pub fn has_condition(st: &JobStatus, type_: &str) -> bool {
    st.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Complete or Failed: the Job is done for good.
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| has_condition(s, COMPLETE) || has_condition(s, FAILED))
}

/// When a finished Job finished.
pub fn finished_at(job: &Job) -> Option<jiff::Timestamp> {
    let st = job.status.as_ref()?;
    st.conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .or_else(|| st.completion_time.as_ref().map(|t| t.0))
}

/// Sets a condition; the transition time only moves when the status changes.
pub fn set_condition(
    st: &mut JobStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let conds = st.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status && c.reason.as_deref() == Some(reason) => {}
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(Time(now));
        }
        None => conds.push(JobCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        }),
    }
}

/// A merge patch turning `old` into `new`: fields gone from `new` are nulled.
pub fn merge_patch(old: &JobStatus, new: &JobStatus) -> Result<Value, ReconcileError> {
    let to =
        |s: &JobStatus| serde_json::to_value(s).map_err(|e| ReconcileError::Other(e.to_string()));
    let (old, mut new) = (to(old)?, to(new)?);
    if let (Some(o), Some(n)) = (old.as_object(), new.as_object_mut()) {
        for k in o.keys() {
            n.entry(k.clone()).or_insert(Value::Null);
        }
    }
    Ok(serde_json::json!({ "status": new }))
}

pub async fn write(
    client: &kube::Client,
    job: &Job,
    new: &JobStatus,
) -> Result<(), ReconcileError> {
    let old = job.status.clone().unwrap_or_default();
    if &old == new {
        return Ok(());
    }
    let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    api.patch_status(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(merge_patch(&old, new)?),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_and_patches_clear_fields() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("t");
        let t1: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().expect("t");
        let mut st = JobStatus::default();
        set_condition(
            &mut st,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            t0,
        );
        set_condition(
            &mut st,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            t1,
        );
        let c = &st.conditions.as_ref().expect("conditions")[0];
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert!(has_condition(&st, SUSPENDED));
        set_condition(&mut st, SUSPENDED, "False", "JobResumed", "Job resumed", t1);
        assert!(!has_condition(&st, SUSPENDED));
        let old = JobStatus {
            active: Some(2),
            ..Default::default()
        };
        let patch = merge_patch(&old, &JobStatus::default()).expect("patch");
        assert_eq!(patch["status"]["active"], Value::Null);
        assert!(patch["status"]
            .as_object()
            .is_some_and(|o| o.contains_key("active")));
    }
}
