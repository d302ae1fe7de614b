//! CronJobs: Jobs on a schedule (the controller reads the schedule in its time zone).

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, CronJobStatus};
use serde_json::{json, Value};

use super::{job_defaults, validate_job_spec};
use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, arr, col, s, wide, Col};

pub struct CronJobs;

pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    plural: "cronjobs",
    singular: "cronjob",
    kind: "CronJob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[Sub::Status],
    has_generation: true,
    strategy: &CronJobs,
};

impl Strategy for CronJobs {
    type Object = CronJob;

    fn defaults(&self, cj: &mut CronJob) {
        let spec = cj.spec.get_or_insert_with(CronJobSpec::default);
        spec.concurrency_policy
            .get_or_insert_with(|| "Allow".into());
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        if let Some(job) = spec.job_template.spec.as_mut() {
            job_defaults(job);
        }
    }

    fn prepare_for_create(&self, cj: &mut CronJob) {
        cj.status = Some(CronJobStatus::default());
    }

    fn validate(&self, cj: &CronJob, errs: &mut Vec<Cause>) {
        let Some(spec) = &cj.spec else {
            return errs.push(Cause::required("spec"));
        };
        if spec.schedule.is_empty() {
            errs.push(Cause::required("spec.schedule"));
        }
        match &spec.job_template.spec {
            None => errs.push(Cause::required("spec.jobTemplate.spec")),
            Some(job) => validate_job_spec(job, "spec.jobTemplate.spec", errs),
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Schedule", "string"),
            col("Timezone", "string"),
            col("Suspend", "boolean"),
            col("Active", "integer"),
            col("Last Schedule", "string"),
            table::age_col(),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let (c, im) = table::containers_images(o, "/spec/jobTemplate/spec/template/spec");
        let last = s(o, "/status/lastScheduleTime");
        vec![
            table::name_cell(o),
            json!(s(o, "/spec/schedule")),
            json!(table::or_none(s(o, "/spec/timeZone").into())),
            json!(o.pointer("/spec/suspend") == Some(&json!(true))),
            json!(arr(o, "/status/active").len()),
            json!(if last.is_empty() {
                "<none>".into()
            } else {
                table::age_of(last)
            }),
            table::age_cell(o),
            json!(c),
            json!(im),
            json!(table::selector(o)),
        ]
    }
}
