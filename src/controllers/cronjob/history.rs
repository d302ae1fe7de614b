//! History limits: finished Jobs beyond successfulJobsHistoryLimit / failedJobsHistoryLimit
//! are deleted, oldest first (by start time, as upstream).

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;

/// "Complete" or "Failed" once a Job finished.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| conds.iter().any(|c| c.type_ == *t && c.status == "True"))
}

/// The Jobs to delete; a missing limit keeps all of that kind.
pub fn to_prune(jobs: &[Arc<Job>], succeeded: Option<i32>, failed: Option<i32>) -> Vec<Arc<Job>> {
    let mut out = Vec::new();
    for (kind, limit) in [("Complete", succeeded), ("Failed", failed)] {
        let Some(limit) = limit else { continue };
        let mut of_kind: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none() && finished(j) == Some(kind))
            .collect();
        of_kind.sort_by_key(|j| {
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref());
            let created = j.metadata.creation_timestamp.as_ref();
            (start.or(created).map(|t| t.0), j.name_any())
        });
        let extra = of_kind.len().saturating_sub(limit.max(0) as usize);
        out.extend(of_kind.into_iter().take(extra).cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(name: &str, kind: &str, start: &str) -> Arc<Job> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"startTime": start,
                    "conditions": [{"type": kind, "status": "True"}]},
            }))
            .expect("job"),
        )
    }

    #[test]
    fn oldest_finished_beyond_the_limits_go() {
        let jobs = vec![
            job("s3", "Complete", "2026-01-01T00:03:00Z"),
            job("s1", "Complete", "2026-01-01T00:01:00Z"),
            job("s2", "Complete", "2026-01-01T00:02:00Z"),
            job("f1", "Failed", "2026-01-01T00:01:00Z"),
            job("f2", "Failed", "2026-01-01T00:02:00Z"),
            job("running", "Suspended", "2026-01-01T00:00:00Z"),
        ];
        let names = |v: Vec<Arc<Job>>| v.iter().map(|j| j.name_any()).collect::<Vec<_>>();
        assert_eq!(names(to_prune(&jobs, Some(2), Some(1))), ["s1", "f1"]);
        assert_eq!(names(to_prune(&jobs, Some(0), None)), ["s1", "s2", "s3"]);
        assert!(to_prune(&jobs, None, Some(5)).is_empty());
    }
}
