//! PersistentVolumeClaims: protected by a finalizer while pods use them; the spec is fixed
//! at creation but for the volume it binds to (once) and, when bound, a larger storage
//! request.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimStatus};
use serde_json::{json, Value};

use crate::api::registry::validation::immutable;
use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, access_modes, col, s, wide, Col};
use crate::k8s::quantity;

pub struct PersistentVolumeClaims;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    kind: "PersistentVolumeClaim",
    namespaced: true,
    short_names: &["pvc"],
    categories: &[],
    subresources: &[Sub::Status],
    has_generation: false,
    strategy: &PersistentVolumeClaims,
};

/// Upstream's storage object in use protection: a claim goes only once no pod uses it (the
/// volume controller removes the finalizer).
pub const PROTECTION: &str = "kubernetes.io/pvc-protection";

fn storage(c: &PersistentVolumeClaim) -> Option<i64> {
    let q = c
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    quantity::parse(&q.0, 1.0)
}

impl Strategy for PersistentVolumeClaims {
    type Object = PersistentVolumeClaim;

    fn defaults(&self, pvc: &mut PersistentVolumeClaim) {
        let spec = pvc.spec.get_or_insert_with(Default::default);
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
        let status = pvc
            .status
            .get_or_insert_with(PersistentVolumeClaimStatus::default);
        status.phase.get_or_insert_with(|| "Pending".into());
    }

    fn prepare_for_create(&self, pvc: &mut PersistentVolumeClaim) {
        pvc.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        let finalizers = pvc.metadata.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == PROTECTION) {
            finalizers.push(PROTECTION.into());
        }
    }

    fn validate_update(
        &self,
        new: &PersistentVolumeClaim,
        old: &PersistentVolumeClaim,
        errs: &mut Vec<Cause>,
    ) {
        let (mut new_spec, mut old_spec) = (
            new.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        immutable(
            &new_spec.volume_mode,
            &old_spec.volume_mode,
            "volumeMode",
            errs,
        );
        // The binder sets the volume once; a claim without a class may get one.
        if old_spec.volume_name.as_deref().unwrap_or("").is_empty() {
            old_spec.volume_name.clone_from(&new_spec.volume_name);
        }
        if old_spec.storage_class_name.is_none() {
            old_spec
                .storage_class_name
                .clone_from(&new_spec.storage_class_name);
        }
        let bound = old.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            let old_storage = old_spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .cloned();
            if let Some(requests) = new_spec
                .resources
                .as_mut()
                .and_then(|r| r.requests.as_mut())
            {
                match old_storage {
                    Some(q) => requests.insert("storage".into(), q),
                    None => requests.remove("storage"),
                };
            }
            new_spec
                .volume_attributes_class_name
                .clone_from(&old_spec.volume_attributes_class_name);
        }
        if new_spec != old_spec {
            errs.push(Cause::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let capacity = old
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .and_then(|q| quantity::parse(&q.0, 1.0));
        if let (Some(n), Some(o)) = (storage(new), storage(old)) {
            if n < o && capacity.is_none_or(|c| n <= c) {
                errs.push(Cause::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Status", "string"),
            col("Volume", "string"),
            col("Capacity", "string"),
            col("Access Modes", "string"),
            col("StorageClass", "string"),
            col("VolumeAttributesClass", "string"),
            table::age_col(),
            wide("VolumeMode"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![
            table::name_cell(o),
            json!(s(o, "/status/phase")),
            json!(s(o, "/spec/volumeName")),
            json!(s(o, "/status/capacity/storage")),
            json!(access_modes(o, "/status/accessModes")),
            json!(table::or_none(s(o, "/spec/storageClassName").into())),
            json!("<unset>"),
            table::age_cell(o),
            json!(s(o, "/spec/volumeMode")),
        ]
    }
}
