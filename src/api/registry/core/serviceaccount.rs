//! ServiceAccounts (tokens come from their `token` subresource, `api::serviceaccounts`).

use k8s_openapi::api::core::v1::ServiceAccount;

use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};

pub struct ServiceAccounts;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[Sub::Token],
    has_generation: false,
    strategy: &ServiceAccounts,
};

impl Strategy for ServiceAccounts {
    type Object = ServiceAccount;
}
