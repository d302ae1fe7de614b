//! PersistentVolumes: the volume source is fixed at creation.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeSpec, PersistentVolumeStatus};
use serde_json::{json, Value};

use crate::api::registry::validation::immutable;
use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, access_modes, col, s, wide, Col};

pub struct PersistentVolumes;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "persistentvolumes",
    singular: "persistentvolume",
    kind: "PersistentVolume",
    namespaced: false,
    short_names: &["pv"],
    categories: &[],
    subresources: &[Sub::Status],
    has_generation: false,
    strategy: &PersistentVolumes,
};

/// The spec without what an update may change (capacity, access modes, claim, reclaim
/// policy, class, mount options, volume mode and node affinity are compared apart).
fn source(spec: &PersistentVolumeSpec) -> PersistentVolumeSpec {
    PersistentVolumeSpec {
        capacity: None,
        access_modes: None,
        claim_ref: None,
        persistent_volume_reclaim_policy: None,
        storage_class_name: None,
        mount_options: None,
        volume_mode: None,
        node_affinity: None,
        volume_attributes_class_name: None,
        ..spec.clone()
    }
}

impl Strategy for PersistentVolumes {
    type Object = PersistentVolume;

    fn defaults(&self, pv: &mut PersistentVolume) {
        let spec = pv.spec.get_or_insert_with(Default::default);
        spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
        spec.persistent_volume_reclaim_policy
            .get_or_insert_with(|| "Retain".into());
        let status = pv
            .status
            .get_or_insert_with(PersistentVolumeStatus::default);
        status.phase.get_or_insert_with(|| "Pending".into());
    }

    fn prepare_for_create(&self, pv: &mut PersistentVolume) {
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }

    fn validate_update(
        &self,
        new: &PersistentVolume,
        old: &PersistentVolume,
        errs: &mut Vec<Cause>,
    ) {
        let spec = |p: &PersistentVolume| p.spec.clone().unwrap_or_default();
        let (new, old) = (spec(new), spec(old));
        if source(&new) != source(&old) {
            errs.push(Cause::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        immutable(&new.volume_mode, &old.volume_mode, "volumeMode", errs);
        if old.node_affinity.is_some() && new.node_affinity != old.node_affinity {
            errs.push(Cause::invalid(
                "nodeAffinity",
                crate::api::registry::validation::shown(&new.node_affinity),
                "field is immutable, except for updating from beta label to GA",
            ));
        }
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Capacity", "string"),
            col("Access Modes", "string"),
            col("Reclaim Policy", "string"),
            col("Status", "string"),
            col("Claim", "string"),
            col("StorageClass", "string"),
            col("VolumeAttributesClass", "string"),
            col("Reason", "string"),
            table::age_col(),
            wide("VolumeMode"),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let claim = match (
            s(o, "/spec/claimRef/namespace"),
            s(o, "/spec/claimRef/name"),
        ) {
            (_, "") => String::new(),
            (ns, n) => format!("{ns}/{n}"),
        };
        vec![
            table::name_cell(o),
            json!(s(o, "/spec/capacity/storage")),
            json!(access_modes(o, "/spec/accessModes")),
            json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
            json!(s(o, "/status/phase")),
            json!(claim),
            json!(s(o, "/spec/storageClassName")),
            json!("<unset>"),
            json!(s(o, "/status/reason")),
            table::age_cell(o),
            json!(s(o, "/spec/volumeMode")),
        ]
    }
}
