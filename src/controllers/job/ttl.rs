//! ttlSecondsAfterFinished (upstream's TTL-after-finished controller): a finished Job is
//! deleted, with its pods in the background, that long after it finished.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::ResourceExt;

use super::status::finished_at;
use crate::controllers::runtime::ReconcileResult;

/// When a finished Job expires, if it has a TTL.
pub fn expires_at(job: &Job) -> Option<jiff::Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    finished_at(job)?
        .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl.max(0))))
        .ok()
}

pub async fn check(client: &kube::Client, job: &Job, now: jiff::Timestamp) -> ReconcileResult {
    let Some(at) = expires_at(job) else {
        return Ok(None);
    };
    if at > now {
        let left = now.duration_until(at).as_millis().max(0) as u64;
        return Ok(Some(Duration::from_millis(left)));
    }
    let api: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        // Never a Job of the same name made since.
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &dp).await {
        Ok(_) => {
            tracing::info!(job = %job.name_any(), "deleted finished job after its TTL");
            Ok(None)
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_counts_from_the_finish() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .expect("job");
        assert_eq!(
            expires_at(&job).map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T00:00:30Z")
        );
    }
}
