//! EndpointSlices: the address type is fixed.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::api::registry::validation::{immutable, shown};
use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;

pub struct EndpointSlices;

pub static RESOURCE: Resource = Resource {
    group: "discovery.k8s.io",
    version: "v1",
    plural: "endpointslices",
    singular: "endpointslice",
    kind: "EndpointSlice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: true,
    strategy: &EndpointSlices,
};

impl Strategy for EndpointSlices {
    type Object = EndpointSlice;

    fn validate(&self, slice: &EndpointSlice, errs: &mut Vec<Cause>) {
        let types = ["IPv4", "IPv6", "FQDN"];
        if !types.contains(&slice.address_type.as_str()) {
            errs.push(Cause::not_supported(
                "addressType",
                shown(&slice.address_type),
                &types,
            ));
        }
    }

    fn validate_update(&self, new: &EndpointSlice, old: &EndpointSlice, errs: &mut Vec<Cause>) {
        immutable(&new.address_type, &old.address_type, "addressType", errs);
    }
}
