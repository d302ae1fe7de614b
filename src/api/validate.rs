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
    use k8s_openapi::api::{discovery::v1 as disc, networking::v1 as net};
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
    let name_ok = if label_names {
        is_dns1123_label(name)
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
    fn names_are_dns_1123() {
        let res = find("", "v1", "configmaps").expect("configmaps");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
        assert!(matches!(
            check(res, &cm, FieldValidation::Strict),
            Err(ApiError::Invalid { .. })
        ));
    }
}
