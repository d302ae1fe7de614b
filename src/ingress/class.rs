//! Which Ingresses are ours: the IngressClass selection rules.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

/// On an IngressClass: Ingresses without a class get this one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class before `spec.ingressClassName` existed.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether the IngressClass `class` is marked as the cluster's default.
pub fn is_default(class: &str, classes: &[&IngressClass]) -> bool {
    classes.iter().any(|c| {
        c.metadata.name.as_deref() == Some(class)
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    })
}

/// Whether `ing` belongs to `class`: `spec.ingressClassName` names it; else the legacy
/// annotation names it; else neither is set and `class` is the default class.
pub fn is_ours(ing: &Ingress, class: &str, default: bool) -> bool {
    if let Some(name) = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return name == class;
    }
    let legacy = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
    match legacy {
        Some(name) => name == class,
        None => default,
    }
}
