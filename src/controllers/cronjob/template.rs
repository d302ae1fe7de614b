//! The Job of one scheduled run: `<cronjob>-<scheduled minutes since the epoch>`, from
//! `jobTemplate`, owned by the CronJob, annotated with its scheduled time.

use jiff::Zoned;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::controllers::pods::owner_ref;
use crate::controllers::runtime::ReconcileError;

pub const SCHEDULED_KEY: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub fn job_name(cronjob: &str, scheduled: jiff::Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in the CronJob's zone, as upstream formats the annotation.
fn rfc3339(z: &Zoned) -> String {
    let off = z.offset();
    if off.seconds() == 0 {
        z.timestamp().to_string()
    } else {
        z.timestamp().display_with_offset(off).to_string()
    }
}

pub fn job(cj: &CronJob, scheduled: &Zoned) -> Result<Job, ReconcileError> {
    let tmpl = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .ok_or_else(|| ReconcileError::Other("CronJob without spec".into()))?;
    let meta = tmpl.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_KEY.into(), rfc3339(scheduled));
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled.timestamp())),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: tmpl.spec,
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_are_named_by_minute_and_annotated_in_the_zone() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "nightly", "namespace": "ns", "uid": "u"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": []}}}}},
        }))
        .expect("cronjob");
        let at: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().expect("t");
        let tz = jiff::tz::TimeZone::get("Asia/Tokyo").expect("zone");
        let j = job(&cj, &at.to_zoned(tz)).expect("job");
        assert_eq!(j.name_any(), format!("nightly-{}", at.as_second() / 60));
        assert_eq!(j.annotations()[SCHEDULED_KEY], "2026-01-01T09:05:00+09:00");
        assert_eq!(j.labels()["a"], "b");
        let owner = &j.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
        let utc = job(&cj, &at.to_zoned(jiff::tz::TimeZone::UTC)).expect("job");
        assert_eq!(utc.annotations()[SCHEDULED_KEY], "2026-01-01T00:05:00Z");
    }
}
