//! Pod Security Admission, as upstream's PodSecurity plugin: the namespace's
//! `pod-security.kubernetes.io/*` labels (over the cluster's defaults, `baseline` enforced
//! unless configured) choose a level and version per mode. Pods that break the enforced level
//! are refused (403); workload templates are only warned about and audited, as upstream, since
//! their pods are checked when created; namespaces' labels are validated, and tightening one's
//! enforce level warns about the pods already there.

pub mod checks;
pub mod config;
pub mod policy;

use std::collections::{BTreeMap, HashMap};
use std::ptr;

use k8s_openapi::api::core::v1::PodSpec;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::Value;

use super::auth::UserInfo;
use super::registry::core::{namespace, pod};
use super::request::Ctx;
use super::resources::Resource;
use super::status::ApiError;
use checks::{describe, evaluate, Finding, PodView};
pub use config::{ConfigError, PodSecurityConfig};
use policy::{Level, LevelVersion, Policy};

/// Audit annotations upstream's plugin adds.
const AUDIT_VIOLATIONS: &str = "pod-security.kubernetes.io/audit-violations";
const ENFORCE_POLICY: &str = "pod-security.kubernetes.io/enforce-policy";

/// Existing pods checked when a namespace's enforce level tightens (upstream's limit).
const NAMESPACE_POD_LIMIT: usize = 3000;

pub struct PodSecurity {
    config: PodSecurityConfig,
    evaluations: IntCounterVec,
}

impl PodSecurity {
    pub fn new(config: PodSecurityConfig, registry: &Registry) -> Result<Self, prometheus::Error> {
        let evaluations = IntCounterVec::new(
            Opts::new(
                "pod_security_evaluations_total",
                "Policy evaluations of the PodSecurity admission plugin, by decision and mode.",
            ),
            &[
                "decision",
                "mode",
                "policy_level",
                "policy_version",
                "request_operation",
                "resource",
            ],
        )?;
        registry.register(Box::new(evaluations.clone()))?;
        Ok(PodSecurity {
            config,
            evaluations,
        })
    }

    fn exempt(&self, ns: &str, user: &str) -> bool {
        let e = &self.config.exemptions;
        e.namespaces.iter().any(|n| n == ns) || e.usernames.iter().any(|u| u == user)
    }
}

/// Where a kind keeps the pod it describes: the object itself for pods, the template for the
/// workload kinds upstream's plugin reads.
fn pod_pointer(res: &Resource) -> Option<&'static str> {
    if ptr::eq(res, &pod::RESOURCE) {
        return Some("");
    }
    match (res.group, res.plural) {
        ("", "podtemplates") => Some("/template"),
        ("", "replicationcontrollers")
        | ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(|l| BTreeMap::deserialize(l).ok())
        .unwrap_or_default()
}

/// A pod update is checked again only when a container image changed (the rest of the spec
/// is immutable), as upstream.
fn images_changed(new: &Value, old: &Value) -> bool {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .any(|list| {
            let images = |v: &Value| -> Vec<Value> {
                v["spec"][list]
                    .as_array()
                    .map(|cs| cs.iter().map(|c| c["image"].clone()).collect())
                    .unwrap_or_default()
            };
            images(new) != images(old)
        })
}

/// The admission of a create (`old` None) or update of `obj`: warnings to return, or the
/// refusal.
pub async fn admit(
    ctx: &Ctx<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let res = ctx.res();
    if ptr::eq(res, &namespace::RESOURCE) {
        return admit_namespace(ctx, obj, old).await;
    }
    let Some(pointer) = pod_pointer(res) else {
        return Ok(Vec::new());
    };
    let psa = &ctx.state.pod_security;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if psa.exempt(ns, &UserInfo::of(ctx.req).username) {
        return Ok(Vec::new());
    }
    let is_pod = pointer.is_empty();
    if let (true, Some(old)) = (is_pod, old) {
        if !images_changed(obj, old) {
            return Ok(Vec::new());
        }
    }
    let ns_obj = super::namespaces::get(ctx, ns).await?;
    let (policy, label_errors) = Policy::from_labels(&labels_of(&ns_obj), psa.config.defaults);
    if label_errors.is_empty() && policy.fully_privileged() {
        return Ok(Vec::new());
    }
    let Some(template) = obj.pointer(pointer) else {
        return Ok(Vec::new());
    };
    let spec = PodSpec::deserialize(&template["spec"])
        .map_err(|e| ApiError::BadRequest(format!("failed to decode pod spec: {e}")))?;
    let exempt_class = spec
        .runtime_class_name
        .as_deref()
        .is_some_and(|c| psa.config.exemptions.runtime_classes.iter().any(|r| r == c));
    if exempt_class {
        return Ok(Vec::new());
    }
    let annotations: BTreeMap<String, String> = template
        .pointer("/metadata/annotations")
        .and_then(|a| BTreeMap::deserialize(a).ok())
        .unwrap_or_default();
    let mut view = PodView::new(&annotations, &spec);
    let mut results: HashMap<(Level, policy::Version), Vec<Finding>> = HashMap::new();
    let mut eval = |lv: LevelVersion| -> Vec<Finding> {
        results
            .entry((lv.level, lv.version))
            .or_insert_with(|| evaluate(lv, &mut view))
            .clone()
    };
    let op = if old.is_some() { "update" } else { "create" };
    let count = |decision: &str, mode: &str, lv: LevelVersion| {
        psa.evaluations
            .with_label_values(&[
                decision,
                mode,
                &lv.level.to_string(),
                &lv.version.to_string(),
                op,
                res.plural,
            ])
            .inc();
    };
    let mut refusal = None;
    if is_pod {
        super::audit::annotate(ctx.req, ENFORCE_POLICY, policy.enforce.to_string());
        let found = eval(policy.enforce);
        if found.is_empty() {
            count("allow", "enforce", policy.enforce);
        } else {
            count("deny", "enforce", policy.enforce);
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            refusal = Some(ApiError::Forbidden(format!(
                "{} {name:?} is forbidden: violates PodSecurity {:?}: {}",
                res.plural,
                policy.enforce.to_string(),
                describe(&found)
            )));
        }
    }
    let found = eval(policy.audit);
    if !found.is_empty() {
        count("deny", "audit", policy.audit);
        super::audit::annotate(
            ctx.req,
            AUDIT_VIOLATIONS,
            format!(
                "would violate PodSecurity {:?}: {}",
                policy.audit.to_string(),
                describe(&found)
            ),
        );
    }
    if let Some(e) = refusal {
        return Err(e);
    }
    let found = eval(policy.warn);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    count("deny", "warn", policy.warn);
    Ok(vec![format!(
        "would violate PodSecurity {:?}: {}",
        policy.warn.to_string(),
        describe(&found)
    )])
}

/// Namespaces: labels must parse; a tighter enforce level warns about the pods already there.
async fn admit_namespace(
    ctx: &Ctx<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let defaults = ctx.state.pod_security.config.defaults;
    let (new_policy, errs) = Policy::from_labels(&labels_of(obj), defaults);
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let refuse = |errs| ApiError::invalid("", "Namespace", name, errs);
    let Some(old) = old else {
        return if errs.is_empty() {
            Ok(Vec::new())
        } else {
            Err(refuse(errs))
        };
    };
    let (old_policy, old_errs) = Policy::from_labels(&labels_of(old), defaults);
    if !errs.is_empty() && (old_errs.is_empty() || errs != old_errs) {
        return Err(refuse(errs));
    }
    let (new, was) = (new_policy.enforce, old_policy.enforce);
    let relaxed = new.version == was.version && new.level <= was.level;
    if new == was || new.level == Level::Privileged || relaxed {
        return Ok(Vec::new());
    }
    if ctx
        .state
        .pod_security
        .config
        .exemptions
        .namespaces
        .iter()
        .any(|n| n == name)
    {
        return Ok(Vec::new());
    }
    Ok(existing_pod_warnings(ctx, name, new).await)
}

/// Upstream's warnings for existing pods that break `enforce`: one line per distinct set of
/// reasons, naming the first pod and how many others share it.
async fn existing_pod_warnings(ctx: &Ctx<'_>, ns: &str, enforce: LevelVersion) -> Vec<String> {
    let prefix = pod::RESOURCE.key(Some(ns), "");
    let page = match ctx
        .state
        .store
        .list(&prefix, None, 0, crate::store::Consistency::Local)
        .await
    {
        Ok(page) => page,
        Err(_) => {
            return vec!["failed to list pods while checking new PodSecurity enforce level".into()]
        }
    };
    let total = page.kvs.len();
    // reasons -> (first pod name, count)
    let mut by_reasons: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for kv in page.kvs.iter().take(NAMESPACE_POD_LIMIT) {
        let Ok(p) = serde_json::from_slice::<k8s_openapi::api::core::v1::Pod>(&kv.value) else {
            continue;
        };
        let (Some(spec), Some(name)) = (p.spec.as_ref(), p.metadata.name.clone()) else {
            continue;
        };
        let annotations = p.metadata.annotations.clone().unwrap_or_default();
        let found = evaluate(enforce, &mut PodView::new(&annotations, spec));
        if found.is_empty() {
            continue;
        }
        let reasons: Vec<&str> = found.iter().map(|f| f.reason.as_str()).collect();
        let entry = by_reasons
            .entry(reasons.join(", "))
            .or_insert_with(|| (name.clone(), 0));
        entry.1 += 1;
        if name < entry.0 {
            entry.0 = name;
        }
    }
    let mut out = Vec::new();
    if total > NAMESPACE_POD_LIMIT {
        out.push(format!(
            "new PodSecurity enforce level only checked against the first {NAMESPACE_POD_LIMIT} of {total} existing pods"
        ));
    }
    if by_reasons.is_empty() {
        return out;
    }
    out.push(format!(
        "existing pods in namespace {ns:?} violate the new PodSecurity enforce level {:?}",
        enforce.to_string()
    ));
    let mut lines: Vec<String> = by_reasons
        .into_iter()
        .map(|(reasons, (first, n))| match n {
            1 => format!("{first}: {reasons}"),
            2 => format!("{first} (and 1 other pod): {reasons}"),
            n => format!("{first} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    lines.sort();
    out.extend(lines);
    out
}
