//! The batch group (`/apis/batch/v1`).

pub mod cronjob;
pub mod job;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::pod_spec;
use super::validation::{non_negative, shown};
use crate::api::status::Cause;

/// Upstream's Job defaults (`SetDefaults_Job`), also applied to a CronJob's job template.
pub fn job_defaults(spec: &mut JobSpec) {
    let parallel = spec.parallelism;
    spec.parallelism.get_or_insert(1);
    if parallel.is_none() || spec.completions.is_some() {
        spec.completions.get_or_insert(1);
    }
    spec.backoff_limit.get_or_insert(6);
    spec.completion_mode
        .get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    pod_spec::template_defaults(&mut spec.template);
}

/// A Job's spec at `path`: counts are not negative and its pods finish (restart on failure
/// or never, not always).
pub fn validate_job_spec(spec: &JobSpec, path: &str, errs: &mut Vec<Cause>) {
    for (field, v) in [
        ("parallelism", spec.parallelism),
        ("completions", spec.completions),
        ("backoffLimit", spec.backoff_limit),
    ] {
        non_negative(v.map(i64::from), &format!("{path}.{field}"), errs);
    }
    if let Some(d) = spec.active_deadline_seconds.filter(|d| *d <= 0) {
        errs.push(Cause::invalid(
            format!("{path}.activeDeadlineSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    validate_template(&spec.template, &format!("{path}.template"), errs);
}

fn validate_template(t: &PodTemplateSpec, path: &str, errs: &mut Vec<Cause>) {
    pod_spec::validate_template(t, path, &[], errs);
    let policy = t
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if !matches!(policy, "OnFailure" | "Never") {
        errs.push(Cause::not_supported(
            format!("{path}.spec.restartPolicy"),
            shown(policy),
            &["OnFailure", "Never"],
        ));
    }
}
