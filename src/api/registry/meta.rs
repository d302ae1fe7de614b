//! `ValidateObjectMeta` and `ValidateObjectMetaUpdate`: what every kind's metadata must hold.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::validation::{
    immutable, is_dns1123_label, is_dns1123_subdomain, labels, qualified_name, DNS1123_LABEL_RULE,
    DNS1123_SUBDOMAIN_RULE,
};
use crate::api::resources::Resource;
use crate::api::status::Cause;

/// How a kind's names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: most kinds.
    Subdomain,
    /// DNS-1123 label: namespaces, services.
    Label,
    /// One path segment (`ValidatePathSegmentName`): RBAC kinds (`system:node`).
    PathSegment,
}

/// Upstream's limit on the total size of annotations.
const ANNOTATIONS_MAX: usize = 256 * 1024;

pub fn validate(res: &Resource, rule: NameRule, m: &ObjectMeta, errs: &mut Vec<Cause>) {
    let name = m.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(Cause::required("metadata.name"));
    } else {
        name_errors(rule, name, "metadata.name", errs);
    }
    if res.namespaced {
        if let Some(ns) = m.namespace.as_deref().filter(|ns| !is_dns1123_label(ns)) {
            errs.push(Cause::invalid(
                "metadata.namespace",
                format!("{ns:?}"),
                DNS1123_LABEL_RULE,
            ));
        }
    }
    labels(m.labels.as_ref(), "metadata.labels", errs);
    let mut size = 0;
    for (k, v) in m.annotations.iter().flatten() {
        qualified_name(&k.to_lowercase(), "metadata.annotations", errs);
        size += k.len() + v.len();
    }
    if size > ANNOTATIONS_MAX {
        errs.push(Cause::too_long(
            "metadata.annotations",
            format!("must have at most {ANNOTATIONS_MAX} bytes"),
        ));
    }
    for (i, o) in m.owner_references.iter().flatten().enumerate() {
        let at = format!("metadata.ownerReferences[{i}]");
        if o.api_version.is_empty() {
            errs.push(Cause::invalid(
                format!("{at}.apiVersion"),
                format!("{:?}", o.api_version),
                "version must not be empty",
            ));
        }
        if o.kind.is_empty() {
            errs.push(Cause::invalid(
                format!("{at}.kind"),
                format!("{:?}", o.kind),
                "kind must not be empty",
            ));
        }
        if o.name.is_empty() {
            errs.push(Cause::invalid(
                format!("{at}.name"),
                format!("{:?}", o.name),
                "name must not be empty",
            ));
        }
        if o.uid.is_empty() {
            errs.push(Cause::invalid(
                format!("{at}.uid"),
                format!("{:?}", o.uid),
                "uid must not be empty",
            ));
        }
    }
    let controllers = m
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true))
        .count();
    if controllers > 1 {
        errs.push(Cause::invalid(
            "metadata.ownerReferences",
            "[...]",
            "Only one reference can have Controller set to true",
        ));
    }
    for f in m.finalizers.iter().flatten() {
        qualified_name(f, "metadata.finalizers", errs);
    }
}

fn name_errors(rule: NameRule, name: &str, field: &str, errs: &mut Vec<Cause>) {
    let shown = format!("{name:?}");
    match rule {
        NameRule::Subdomain if !is_dns1123_subdomain(name) => {
            errs.push(Cause::invalid(field, shown, DNS1123_SUBDOMAIN_RULE))
        }
        NameRule::Label if !is_dns1123_label(name) => {
            errs.push(Cause::invalid(field, shown, DNS1123_LABEL_RULE))
        }
        NameRule::PathSegment => {
            for why in path_segment_errors(name) {
                errs.push(Cause::invalid(field, &shown, why));
            }
        }
        _ => {}
    }
}

/// Upstream's `path.IsValidPathSegmentName`.
pub fn path_segment_errors(name: &str) -> Vec<&'static str> {
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

/// What an update may not change in the metadata.
pub fn validate_update(new: &ObjectMeta, old: &ObjectMeta, errs: &mut Vec<Cause>) {
    immutable(&new.name, &old.name, "metadata.name", errs);
    immutable(&new.namespace, &old.namespace, "metadata.namespace", errs);
    immutable(&new.uid, &old.uid, "metadata.uid", errs);
    immutable(
        &new.creation_timestamp,
        &old.creation_timestamp,
        "metadata.creationTimestamp",
        errs,
    );
}
