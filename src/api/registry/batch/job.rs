//! Jobs: pods selected by the Job's uid (unless `manualSelector`); the selector, template
//! and completion settings are fixed once the Job runs.

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};

use super::{job_defaults, validate_job_spec};
use crate::api::registry::validation::{immutable, shown};
use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, arr, col, i, wide, Col};

pub struct Jobs;

pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    plural: "jobs",
    singular: "job",
    kind: "Job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    subresources: &[Sub::Status],
    has_generation: true,
    strategy: &Jobs,
};

/// Labels upstream puts on a Job's pods (and selects them by, through the uid).
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

impl Strategy for Jobs {
    type Object = Job;

    fn defaults(&self, job: &mut Job) {
        job_defaults(job.spec.get_or_insert_with(JobSpec::default));
    }

    /// Unless `manualSelector`, a Job selects its pods by its uid, and its template carries
    /// the labels upstream adds.
    fn prepare_for_create(&self, job: &mut Job) {
        job.status = Some(JobStatus::default());
        let (Some(uid), Some(name)) = (job.metadata.uid.clone(), job.metadata.name.clone()) else {
            return;
        };
        let spec = job.spec.get_or_insert_with(JobSpec::default);
        if spec.manual_selector == Some(true) {
            return;
        }
        spec.selector = Some(LabelSelector {
            match_labels: Some([(CONTROLLER_UID.to_string(), uid.clone())].into()),
            ..Default::default()
        });
        let labels = spec
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default);
        for (k, v) in [
            (CONTROLLER_UID, &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(k.into(), v.clone());
        }
    }

    fn validate(&self, job: &Job, errs: &mut Vec<Cause>) {
        match &job.spec {
            None => errs.push(Cause::required("spec")),
            Some(spec) => validate_job_spec(spec, "spec", errs),
        }
    }

    fn validate_update(&self, new: &Job, old: &Job, errs: &mut Vec<Cause>) {
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
            return;
        };
        immutable(&n.selector, &o.selector, "spec.selector", errs);
        // A suspended Job that never started may still change where its pods go.
        let never_started = o.suspend == Some(true)
            && old
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .is_none();
        let mut template = n.template.clone();
        if never_started {
            let (t, ot) = (&mut template, &o.template);
            if let (Some(spec), Some(old_spec)) = (t.spec.as_mut(), ot.spec.as_ref()) {
                spec.node_selector.clone_from(&old_spec.node_selector);
                spec.tolerations.clone_from(&old_spec.tolerations);
                spec.affinity.clone_from(&old_spec.affinity);
                spec.scheduling_gates.clone_from(&old_spec.scheduling_gates);
            }
            if let (Some(m), Some(om)) = (t.metadata.as_mut(), ot.metadata.as_ref()) {
                m.labels.clone_from(&om.labels);
                m.annotations.clone_from(&om.annotations);
            }
        }
        if template != o.template {
            errs.push(Cause::invalid(
                "spec.template",
                shown(&n.template),
                "field is immutable",
            ));
        }
        let indexed = n.completion_mode.as_deref() == Some("Indexed");
        if indexed {
            if n.completions != o.completions && n.completions != n.parallelism {
                errs.push(Cause::invalid(
                    "spec.completions",
                    shown(&n.completions),
                    "can only be modified in tandem with spec.parallelism",
                ));
            }
        } else {
            immutable(&n.completions, &o.completions, "spec.completions", errs);
        }
        immutable(
            &n.completion_mode,
            &o.completion_mode,
            "spec.completionMode",
            errs,
        );
        immutable(
            &n.pod_failure_policy,
            &o.pod_failure_policy,
            "spec.podFailurePolicy",
            errs,
        );
        immutable(
            &n.backoff_limit_per_index,
            &o.backoff_limit_per_index,
            "spec.backoffLimitPerIndex",
            errs,
        );
        immutable(&n.managed_by, &o.managed_by, "spec.managedBy", errs);
        immutable(
            &n.success_policy,
            &o.success_policy,
            "spec.successPolicy",
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Status", "string"),
            col("Completions", "string"),
            col("Duration", "string"),
            table::age_col(),
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let (c, im) = table::containers_images(o, "/spec/template/spec");
        let conds = arr(o, "/status/conditions");
        let has = |t: &str| {
            conds
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True")
        };
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if has("Suspended") {
            "Suspended"
        } else {
            "Running"
        };
        let completions = format!(
            "{}/{}",
            i(o, "/status/succeeded"),
            o.pointer("/spec/completions")
                .and_then(Value::as_i64)
                .map_or("1".into(), |v| v.to_string())
        );
        let duration = match (
            o.pointer("/status/startTime").and_then(Value::as_str),
            o.pointer("/status/completionTime").and_then(Value::as_str),
        ) {
            (Some(st), Some(ct)) => {
                match (st.parse::<jiff::Timestamp>(), ct.parse::<jiff::Timestamp>()) {
                    (Ok(a), Ok(b)) => table::human_duration(b.as_second() - a.as_second()),
                    _ => String::new(),
                }
            }
            (Some(st), None) => table::age_of(st),
            _ => String::new(),
        };
        vec![
            table::name_cell(o),
            json!(status),
            json!(completions),
            json!(duration),
            table::age_cell(o),
            json!(c),
            json!(im),
            json!(table::selector(o)),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }
}
