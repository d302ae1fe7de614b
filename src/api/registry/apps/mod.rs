//! The apps group (`/apis/apps/v1`), and what its workloads share: a selector that must
//! select the template's labels and may not change, and templates whose pods always restart.

pub mod controllerrevision;
pub mod daemonset;
pub mod deployment;
pub mod replicaset;
pub mod statefulset;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::pod_spec;
use super::validation::{immutable, non_negative, shown};
use crate::api::status::Cause;
use crate::k8s::selector::selects;

/// A workload's selector and template (`ValidatePodTemplateSpecForReplicaSet` and friends):
/// the selector is required and non-empty, matches the template's labels, and the template's
/// pods restart always and have no deadline. `claims` are further names its containers may
/// mount (a StatefulSet's claim templates).
pub fn validate_workload(
    kind: &str,
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    replicas: Option<i32>,
    claims: &[&str],
    errs: &mut Vec<Cause>,
) {
    non_negative(replicas.map(i64::from), "spec.replicas", errs);
    // A selector the client left out decodes as one without either list.
    let missing = selector.match_labels.is_none() && selector.match_expressions.is_none();
    match Some(selector).filter(|_| !missing) {
        None => errs.push(Cause::required("spec.selector")),
        Some(s) => {
            let empty = s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty());
            if empty {
                errs.push(Cause::invalid(
                    "spec.selector",
                    shown(s),
                    format!("empty selector is invalid for {}", kind.to_lowercase()),
                ));
            } else if !selects(s, template_labels(template).unwrap_or(&Default::default())) {
                errs.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    shown(&template_labels(template)),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    pod_spec::validate_template(template, "spec.template", claims, errs);
    if let Some(spec) = &template.spec {
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        if policy != "Always" {
            errs.push(Cause::not_supported(
                "spec.template.spec.restartPolicy",
                shown(policy),
                &["Always"],
            ));
        }
        if spec.active_deadline_seconds.is_some() {
            errs.push(Cause::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                format!("activeDeadlineSeconds in {kind} is not Supported"),
            ));
        }
    }
}

fn template_labels(t: &PodTemplateSpec) -> Option<&std::collections::BTreeMap<String, String>> {
    t.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// The selector of a Deployment, ReplicaSet or DaemonSet is fixed at creation.
pub fn selector_immutable(
    new: Option<&LabelSelector>,
    old: Option<&LabelSelector>,
    errs: &mut Vec<Cause>,
) {
    immutable(&new, &old, "spec.selector", errs);
}
