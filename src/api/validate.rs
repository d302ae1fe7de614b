//! Validation as upstream does it for the fields Skiff uses: well-formed names, typed
//! decoding (wrong types are a 400), unknown fields (`fieldValidation`), and per-kind rules
//! (422 `Invalid` with causes naming the field).

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::resources::Resource;
use super::selectors::labels_of;
use super::status::{ApiError, Cause};

/// How unknown fields are treated (`fieldValidation` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of Strict, Warn, Ignore (got {other})"
            ))),
        }
    }
}

pub use crate::config::is_dns_label as is_dns1123_label;

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, ApiError> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body does not decode as the expected type: {e}"
        ))
    })?;
    serde_json::to_value(typed).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Decodes into the k8s-openapi type of `kind` and back: type errors fail here, and the
/// difference to the input are the fields the type does not know.
fn typed(kind: &str, obj: &Value) -> Result<Value, ApiError> {
    use k8s_openapi::api::{
        apps::v1 as apps, batch::v1 as batch, coordination::v1 as coord, core::v1 as core,
    };
    use k8s_openapi::api::{discovery::v1 as disc, networking::v1 as net, rbac::v1 as rbac};
    match kind {
        "Namespace" => round_trip::<core::Namespace>(obj),
        "Node" => round_trip::<core::Node>(obj),
        "Pod" => round_trip::<core::Pod>(obj),
        "Service" => round_trip::<core::Service>(obj),
        "Endpoints" => round_trip::<core::Endpoints>(obj),
        "ConfigMap" => round_trip::<core::ConfigMap>(obj),
        "Secret" => round_trip::<core::Secret>(obj),
        "Event" => round_trip::<core::Event>(obj),
        "ServiceAccount" => round_trip::<core::ServiceAccount>(obj),
        "PersistentVolume" => round_trip::<core::PersistentVolume>(obj),
        "PersistentVolumeClaim" => round_trip::<core::PersistentVolumeClaim>(obj),
        "StorageClass" => round_trip::<k8s_openapi::api::storage::v1::StorageClass>(obj),
        "Deployment" => round_trip::<apps::Deployment>(obj),
        "ReplicaSet" => round_trip::<apps::ReplicaSet>(obj),
        "DaemonSet" => round_trip::<apps::DaemonSet>(obj),
        "StatefulSet" => round_trip::<apps::StatefulSet>(obj),
        "ControllerRevision" => round_trip::<apps::ControllerRevision>(obj),
        "Job" => round_trip::<batch::Job>(obj),
        "CronJob" => round_trip::<batch::CronJob>(obj),
        "Lease" => round_trip::<coord::Lease>(obj),
        "Ingress" => round_trip::<net::Ingress>(obj),
        "IngressClass" => round_trip::<net::IngressClass>(obj),
        "EndpointSlice" => round_trip::<disc::EndpointSlice>(obj),
        "Role" => round_trip::<rbac::Role>(obj),
        "ClusterRole" => round_trip::<rbac::ClusterRole>(obj),
        "RoleBinding" => round_trip::<rbac::RoleBinding>(obj),
        "ClusterRoleBinding" => round_trip::<rbac::ClusterRoleBinding>(obj),
        _ => Ok(obj.clone()),
    }
}

/// Paths of fields in `input` that the typed form dropped.
fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_fields(iv, kv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks an object about to be written. Returns warnings (unknown fields under `Warn`).
/// A Job's pods finish: they may restart on failure or never, not always.
fn job_restart_policy(template: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let policy = template
        .and_then(|t| t.pointer("/spec/restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if !matches!(policy, "OnFailure" | "Never") {
        causes.push(Cause::not_supported(
            format!("{path}.spec.restartPolicy"),
            format!("\"{policy}\""),
            &["OnFailure", "Never"],
        ));
    }
}

pub fn check(res: &Resource, obj: &Value, fv: FieldValidation) -> Result<Vec<String>, ApiError> {
    let known = typed(res.kind, obj)?;
    let mut unknown = Vec::new();
    if fv != FieldValidation::Ignore {
        unknown_fields(obj, &known, "", &mut unknown);
    }
    if fv == FieldValidation::Strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    let name = super::object::name_of(obj);
    let mut causes = Vec::new();
    let label_names = matches!(res.kind, "Namespace" | "Service");
    let rbac_kind = matches!(
        res.kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    );
    let name_ok = if label_names {
        is_dns1123_label(name)
    } else if rbac_kind {
        true // path segment names, checked by `rbac`
    } else {
        is_dns1123_subdomain(name)
    };
    if !name_ok {
        let rule = if label_names {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        causes.push(Cause::invalid("metadata.name", format!("\"{name}\""), rule));
    }
    check_labels(obj, &mut causes);
    match res.kind {
        "Pod" => pod_spec(obj.get("spec"), "spec", &mut causes),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" => {
            workload(res.kind, obj, &mut causes)
        }
        "Job" => {
            template(obj.pointer("/spec/template"), "spec.template", &mut causes);
            job_restart_policy(obj.pointer("/spec/template"), "spec.template", &mut causes);
        }
        "CronJob" => {
            job_restart_policy(
                obj.pointer("/spec/jobTemplate/spec/template"),
                "spec.jobTemplate.spec.template",
                &mut causes,
            );
            if obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                causes.push(Cause::required("spec.schedule"));
            }
            template(
                obj.pointer("/spec/jobTemplate/spec/template"),
                "spec.jobTemplate.spec.template",
                &mut causes,
            )
        }
        "Service" => service(obj, &mut causes),
        _ if rbac_kind => rbac(res.kind, obj, &mut causes),
        _ => {}
    }
    if causes.is_empty() {
        Ok(unknown
            .into_iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect())
    } else {
        Err(ApiError::invalid(res.group, res.kind, name, causes))
    }
}

/// Upstream's `ValidateRBACName` (`path.IsValidPathSegmentName`): RBAC names may hold
/// colons (`system:node`) but must be usable as one path segment.
fn rbac_name_errors(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    match name {
        "." => out.push("may not be '.'"),
        ".." => out.push("may not be '..'"),
        _ => {}
    }
    if name.contains('/') {
        out.push("may not contain '/'");
    }
    if name.contains('%') {
        out.push("may not contain '%'");
    }
    out
}

/// `field.Required(path, detail)`.
fn required(field: impl Into<String>, detail: &str) -> Cause {
    let mut c = Cause::required(field);
    if !detail.is_empty() {
        c.message = format!("{}: {detail}", c.message);
    }
    c
}

fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's RBAC validation (`pkg/apis/rbac/validation`): rules, aggregation rules,
/// role references and subjects.
fn rbac(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    const GROUP: &str = super::auth::rbac::GROUP;
    let name = super::object::name_of(obj);
    for why in rbac_name_errors(name) {
        causes.push(Cause::invalid("metadata.name", format!("\"{name}\""), why));
    }
    let namespaced = matches!(kind, "Role" | "RoleBinding");
    if matches!(kind, "Role" | "ClusterRole") {
        for (i, r) in obj
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("rules[{i}]");
            if str_list(r, "verbs").is_empty() {
                causes.push(required(
                    format!("{at}.verbs"),
                    "verbs must contain at least one value",
                ));
            }
            let urls = str_list(r, "nonResourceURLs");
            if !urls.is_empty() {
                let shown = format!("{urls:?}");
                if namespaced {
                    causes.push(Cause::invalid(
                        format!("{at}.nonResourceURLs"),
                        &shown,
                        "namespaced rules cannot apply to non-resource URLs",
                    ));
                }
                if ["apiGroups", "resources", "resourceNames"]
                    .iter()
                    .any(|k| !str_list(r, k).is_empty())
                {
                    causes.push(Cause::invalid(
                        format!("{at}.nonResourceURLs"),
                        &shown,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    ));
                }
                continue;
            }
            if str_list(r, "apiGroups").is_empty() {
                causes.push(required(
                    format!("{at}.apiGroups"),
                    "resource rules must supply at least one api group",
                ));
            }
            if str_list(r, "resources").is_empty() {
                causes.push(required(
                    format!("{at}.resources"),
                    "resource rules must supply at least one resource",
                ));
            }
        }
        if let Some(agg) = obj.get("aggregationRule").filter(|a| !a.is_null()) {
            let selectors = agg.get("clusterRoleSelectors").and_then(Value::as_array);
            if selectors.is_none_or(|s| s.is_empty()) {
                causes.push(required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
        }
        return;
    }
    // RoleBinding, ClusterRoleBinding
    let rr = |k: &str| {
        obj.pointer(&format!("/roleRef/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    if rr("apiGroup") != GROUP {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            format!("\"{}\"", rr("apiGroup")),
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&rr("kind")) {
        causes.push(Cause::not_supported(
            "roleRef.kind",
            format!("\"{}\"", rr("kind")),
            kinds,
        ));
    }
    if rr("name").is_empty() {
        causes.push(Cause::required("roleRef.name"));
    } else {
        for why in rbac_name_errors(rr("name")) {
            causes.push(Cause::invalid(
                "roleRef.name",
                format!("\"{}\"", rr("name")),
                why,
            ));
        }
    }
    for (i, sub) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("subjects[{i}]");
        let f = |k: &str| sub.get(k).and_then(Value::as_str).unwrap_or("");
        if f("name").is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        }
        match f("kind") {
            "ServiceAccount" => {
                if !f("name").is_empty() && !is_dns1123_subdomain(f("name")) {
                    causes.push(Cause::invalid(
                        format!("{at}.name"),
                        format!("\"{}\"", f("name")),
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    ));
                }
                if !f("apiGroup").is_empty() {
                    causes.push(Cause::not_supported(
                        format!("{at}.apiGroup"),
                        format!("\"{}\"", f("apiGroup")),
                        &[""],
                    ));
                }
                if !namespaced && f("namespace").is_empty() {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
            }
            "User" | "Group" => {
                if f("apiGroup") != GROUP {
                    causes.push(Cause::not_supported(
                        format!("{at}.apiGroup"),
                        format!("\"{}\"", f("apiGroup")),
                        &[GROUP],
                    ));
                }
            }
            other => causes.push(Cause::not_supported(
                format!("{at}.kind"),
                format!("\"{other}\""),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

/// Checks what may not change in an update (upstream's `Validate*Update`): a binding's
/// `roleRef` is immutable.
pub fn check_update(res: &Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    if !matches!(res.kind, "RoleBinding" | "ClusterRoleBinding") {
        return Ok(());
    }
    let role_ref = |o: &Value| {
        let mut r = super::auth::rbac::RoleRef::from_json(o.get("roleRef"));
        if r.api_group.is_empty() {
            r.api_group = super::auth::rbac::GROUP.into();
        }
        r
    };
    let (was, now) = (role_ref(old), role_ref(new));
    if was == now {
        return Ok(());
    }
    let shown = format!(
        "rbac.RoleRef{{APIGroup:\"{}\", Kind:\"{}\", Name:\"{}\"}}",
        now.api_group, now.kind, now.name
    );
    Err(ApiError::invalid(
        res.group,
        res.kind,
        super::object::name_of(new),
        vec![Cause::invalid("roleRef", shown, "cannot change roleRef")],
    ))
}

fn check_labels(obj: &Value, causes: &mut Vec<Cause>) {
    for (k, v) in labels_of(obj) {
        let (prefix, key) = k.rsplit_once('/').unwrap_or(("", k.as_str()));
        let name_ok = !key.is_empty()
            && key.len() <= 63
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && key.starts_with(|c: char| c.is_ascii_alphanumeric())
            && key.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !name_ok || (!prefix.is_empty() && !is_dns1123_subdomain(prefix)) {
            causes.push(Cause::invalid(
                "metadata.labels",
                format!("\"{k}\""),
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        let value_ok = v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && (v.is_empty()
                || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.ends_with(|c: char| c.is_ascii_alphanumeric())));
        if !value_ok {
            causes.push(Cause::invalid("metadata.labels", format!("\"{v}\""), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"));
        }
    }
}

fn workload(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    match selector.and_then(|s| s.get("matchLabels").or(s.get("matchExpressions"))) {
        None => causes.push(Cause::required("spec.selector")),
        Some(_) => {
            if let Some(Value::Object(ml)) = selector.and_then(|s| s.get("matchLabels")) {
                let matches = ml
                    .iter()
                    .all(|(k, v)| template_labels.and_then(|t| t.get(k)) == Some(v));
                if !matches {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        serde_json::to_string(&template_labels).unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    if kind != "DaemonSet" {
        if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
            if r < 0 {
                causes.push(Cause::invalid(
                    "spec.replicas",
                    r,
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    template(obj.pointer("/spec/template"), "spec.template", causes);
}

fn template(t: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    match t {
        None => causes.push(Cause::required(path)),
        Some(t) => pod_spec(t.get("spec"), &format!("{path}.spec"), causes),
    }
}

fn pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec else {
        causes.push(Cause::required(path));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut names = HashSet::new();
    for (list, items) in [
        ("initContainers", spec.get("initContainers")),
        ("containers", spec.get("containers")),
    ] {
        for (i, c) in items
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{path}.{list}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                causes.push(Cause::required(format!("{at}.name")));
            } else if !is_dns1123_label(name) {
                causes.push(Cause::invalid(format!("{at}.name"), format!("\"{name}\""), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"));
            } else if !names.insert(name.to_string()) {
                causes.push(Cause::duplicate(
                    format!("{at}.name"),
                    format!("\"{name}\""),
                ));
            }
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                causes.push(Cause::required(format!("{at}.image")));
            }
            for (j, p) in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                port(
                    p.get("containerPort"),
                    &format!("{at}.ports[{j}].containerPort"),
                    true,
                    causes,
                );
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !matches!(rp, "Always" | "OnFailure" | "Never") {
            causes.push(Cause::not_supported(
                format!("{path}.restartPolicy"),
                format!("\"{rp}\""),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
}

fn port(v: Option<&Value>, field: &str, required: bool, causes: &mut Vec<Cause>) {
    match v.and_then(Value::as_i64) {
        None if required => causes.push(Cause::required(field)),
        Some(p) if !(1..=65535).contains(&p) => causes.push(Cause::invalid(
            field,
            p,
            "must be between 1 and 65535, inclusive",
        )),
        _ => {}
    }
}

fn service(obj: &Value, causes: &mut Vec<Cause>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let allowed = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !allowed.contains(&ty) {
        causes.push(Cause::not_supported(
            "spec.type",
            format!("\"{ty}\""),
            &allowed,
        ));
    }
    super::services::validate(obj, causes);
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    if ty != "ExternalName"
        && ports.is_none_or(|p| p.is_empty())
        && obj.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
    {
        causes.push(Cause::required("spec.ports"));
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.into_iter().flatten().enumerate() {
        port(
            p.get("port"),
            &format!("spec.ports[{i}].port"),
            true,
            causes,
        );
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64) {
            port(
                Some(&Value::from(np)),
                &format!("spec.ports[{i}].nodePort"),
                false,
                causes,
            );
        }
        let key = (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string(),
        );
        if !seen.insert(key.clone()) {
            causes.push(Cause::duplicate(
                format!("spec.ports[{i}]"),
                format!("{{{:?}, \"{}\"}}", key.0.unwrap_or(0), key.1),
            ));
        }
        if ports.is_some_and(|ps| ps.len() > 1)
            && p.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::find;
    use serde_json::json;

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn workload_rules_name_the_field() {
        let res = find("apps", "v1", "deployments").expect("deployments");
        let bad = deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}}
        }));
        let Err(ApiError::Invalid { causes, .. }) = check(res, &bad, FieldValidation::Strict)
        else {
            panic!("expected Invalid");
        };
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.template.metadata.labels"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.template.spec.containers[0].image"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.template.spec.containers[1].name"),
            "{fields:?}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_under_strict_and_reported_under_warn() {
        let res = find("", "v1", "configmaps").expect("configmaps");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "creationTimestamp": null}, "data": {"a": "b"}, "dta": {}});
        assert!(
            matches!(check(res, &cm, FieldValidation::Strict), Err(ApiError::BadRequest(m)) if m.contains("\"dta\""))
        );
        assert_eq!(
            check(res, &cm, FieldValidation::Warn).expect("warn"),
            vec!["unknown field \"dta\"".to_string()]
        );
        let typed_wrong = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}});
        assert!(matches!(
            check(res, &typed_wrong, FieldValidation::Ignore),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn rbac_objects_validate_like_upstream() {
        let g = "rbac.authorization.k8s.io";
        let fields = |kind: &str, obj: Value| -> Vec<String> {
            let plural = match kind {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                "RoleBinding" => "rolebindings",
                _ => "clusterrolebindings",
            };
            let res = find(g, "v1", plural).expect("rbac kind");
            match check(res, &obj, FieldValidation::Strict) {
                Ok(_) => vec![],
                Err(ApiError::Invalid { causes, .. }) => {
                    causes.into_iter().map(|c| c.field).collect()
                }
                Err(e) => panic!("{e}"),
            }
        };
        let ok_role = json!({"metadata": {"name": "system:x"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(fields("Role", ok_role).is_empty());
        let bad_role = json!({"metadata": {"name": "a/b"}, "rules": [{"verbs": [], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
        assert_eq!(
            fields("Role", bad_role),
            [
                "metadata.name",
                "rules[0].verbs",
                "rules[0].apiGroups",
                "rules[1].nonResourceURLs"
            ]
        );
        let mixed = json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["get"], "resources": ["pods"], "nonResourceURLs": ["/x"]}], "aggregationRule": {}});
        assert_eq!(
            fields("ClusterRole", mixed),
            [
                "rules[0].nonResourceURLs",
                "aggregationRule.clusterRoleSelectors"
            ]
        );
        let crb = json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": g, "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "s"}, {"kind": "User", "name": "u"}, {"kind": "Bot", "name": ""}]});
        assert_eq!(
            fields("ClusterRoleBinding", crb),
            [
                "roleRef.kind",
                "subjects[0].namespace",
                "subjects[1].apiGroup",
                "subjects[2].name",
                "subjects[2].kind"
            ]
        );
        let rb = json!({"metadata": {"name": "b", "namespace": "n"}, "roleRef": {"apiGroup": g, "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "s"}, {"kind": "Group", "apiGroup": g, "name": "devs"}]});
        assert!(fields("RoleBinding", rb.clone()).is_empty());
        let res = find(g, "v1", "rolebindings").expect("rolebindings");
        let mut changed = rb.clone();
        changed["roleRef"]["name"] = json!("other");
        assert!(check_update(res, &rb, &rb).is_ok());
        let Err(ApiError::Invalid { message, .. }) = check_update(res, &rb, &changed) else {
            panic!("roleRef changed");
        };
        assert!(message.contains("roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"other\"}: cannot change roleRef"), "{message}");
    }

    #[test]
    fn names_are_dns_1123() {
        let res = find("", "v1", "configmaps").expect("configmaps");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
        assert!(matches!(
            check(res, &cm, FieldValidation::Strict),
            Err(ApiError::Invalid { .. })
        ));
    }
}
