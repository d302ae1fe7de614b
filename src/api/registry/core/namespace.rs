//! Namespaces: created Active with the `kubernetes` finalizer; spec and status change only
//! through the namespace's own paths.

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use serde_json::{json, Value};

use crate::api::registry::{NameRule, Storage, Strategy};
use crate::api::resources::{Resource, Sub};
use crate::api::table::{self, col, Col};

pub struct Namespaces;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &[Sub::Status, Sub::Finalize],
    has_generation: false,
    strategy: &Namespaces,
};

/// The finalizer the namespace controller removes once the namespace is empty.
pub const FINALIZER: &str = "kubernetes";

impl Strategy for Namespaces {
    type Object = Namespace;

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn defaults(&self, ns: &mut Namespace) {
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        spec.finalizers
            .get_or_insert_with(|| vec![FINALIZER.into()]);
        let status = ns.status.get_or_insert_with(NamespaceStatus::default);
        status.phase.get_or_insert_with(|| "Active".into());
    }

    fn prepare_for_create(&self, ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        });
        let finalizers = ns
            .spec
            .get_or_insert_with(NamespaceSpec::default)
            .finalizers
            .get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == FINALIZER) {
            finalizers.push(FINALIZER.into());
        }
    }

    fn prepare_for_update(&self, new: &mut Namespace, old: &Namespace) {
        new.spec.clone_from(&old.spec);
        new.status.clone_from(&old.status);
    }

    fn columns(&self) -> Vec<Col> {
        vec![table::name_col(), col("Status", "string"), table::age_col()]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![
            table::name_cell(o),
            json!(table::s(o, "/status/phase")),
            table::age_cell(o),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn storage(&self) -> Storage {
        Storage::Namespace
    }

    /// A namespace goes once `spec.finalizers` is empty too (upstream's
    /// `ShouldDeleteNamespaceDuringUpdate`).
    fn finalizing(&self, o: &Value) -> bool {
        o.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }
}
