//! The rbac.authorization.k8s.io group: upstream's RBAC validation (`pkg/apis/rbac/validation`)
//! of rules, aggregation rules, role references and subjects; a binding's `roleRef` is fixed.

pub mod clusterrole;
pub mod clusterrolebinding;
pub mod role;
pub mod rolebinding;

use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
use serde_json::Value;

use super::meta::path_segment_errors;
use super::validation::is_dns1123_subdomain;
use crate::api::auth::rbac::GROUP;
use crate::api::status::Cause;

/// Bindings name users and groups of the RBAC group unless they say otherwise.
pub fn binding_defaults(role_ref: &mut RoleRef, subjects: Option<&mut Vec<Subject>>) {
    if role_ref.api_group.is_empty() {
        role_ref.api_group = GROUP.into();
    }
    for s in subjects.into_iter().flatten() {
        let empty = s.api_group.as_deref().is_none_or(str::is_empty);
        if empty && matches!(s.kind.as_str(), "User" | "Group") {
            s.api_group = Some(GROUP.into());
        }
    }
}

/// A binding's `roleRef` never changes (upstream prints its internal Go form).
pub fn role_ref_immutable(new: &RoleRef, old: &RoleRef, errs: &mut Vec<Cause>) {
    if new != old {
        let shown = format!(
            "{{\"APIGroup\":{:?},\"Kind\":{:?},\"Name\":{:?}}}",
            new.api_group, new.kind, new.name
        );
        errs.push(Cause::invalid("roleRef", shown, "field is immutable"));
    }
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
pub fn validate(kind: &str, obj: &Value, causes: &mut Vec<Cause>) {
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
        for why in path_segment_errors(rr("name")) {
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
