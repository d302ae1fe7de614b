//! Leases: node heartbeats and leader election.

use k8s_openapi::api::coordination::v1::Lease;

use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;

pub struct Leases;

pub static RESOURCE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    singular: "lease",
    kind: "Lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &Leases,
};

impl Strategy for Leases {
    type Object = Lease;

    fn validate(&self, lease: &Lease, errs: &mut Vec<Cause>) {
        let spec = lease.spec.as_ref();
        if let Some(d) = spec
            .and_then(|s| s.lease_duration_seconds)
            .filter(|d| *d <= 0)
        {
            errs.push(Cause::invalid(
                "spec.leaseDurationSeconds",
                d,
                "must be greater than 0",
            ));
        }
        if let Some(t) = spec.and_then(|s| s.lease_transitions).filter(|t| *t < 0) {
            errs.push(Cause::invalid(
                "spec.leaseTransitions",
                t,
                "must be greater than or equal to 0",
            ));
        }
    }
}
