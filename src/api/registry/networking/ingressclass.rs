//! IngressClasses: which controller serves an Ingress.

use k8s_openapi::api::networking::v1::IngressClass;

use crate::api::registry::validation::immutable;
use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;

pub struct IngressClasses;

pub static RESOURCE: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    plural: "ingressclasses",
    singular: "ingressclass",
    kind: "IngressClass",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: true,
    strategy: &IngressClasses,
};

impl Strategy for IngressClasses {
    type Object = IngressClass;

    fn validate_update(&self, new: &IngressClass, old: &IngressClass, errs: &mut Vec<Cause>) {
        let controller = |c: &IngressClass| c.spec.as_ref().and_then(|s| s.controller.clone());
        immutable(&controller(new), &controller(old), "spec.controller", errs);
    }
}
