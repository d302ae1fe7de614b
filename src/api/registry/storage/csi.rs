//! The CSI kinds upstream serves in storage.k8s.io (drivers, nodes, storage capacities,
//! volume attachments): stored and served for the tools and charts that read or write
//! them; Skiff's own volumes are local paths.

use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, CSIStorageCapacity, VolumeAttachment};
use serde_json::{json, Value};

use crate::api::registry::validation::immutable;
use crate::api::registry::Strategy;
use crate::api::resources::{Resource, Sub};
use crate::api::status::Cause;
use crate::api::table::{self, col, s, Col};

const GROUP: &str = "storage.k8s.io";

pub struct CsiDrivers;

pub static CSI_DRIVERS: Resource = Resource {
    group: GROUP,
    version: "v1",
    plural: "csidrivers",
    singular: "csidriver",
    kind: "CSIDriver",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &CsiDrivers,
};

impl Strategy for CsiDrivers {
    type Object = CSIDriver;

    fn defaults(&self, d: &mut CSIDriver) {
        let spec = &mut d.spec;
        spec.attach_required.get_or_insert(true);
        spec.pod_info_on_mount.get_or_insert(false);
        spec.storage_capacity.get_or_insert(false);
        spec.requires_republish.get_or_insert(false);
        spec.volume_lifecycle_modes
            .get_or_insert_with(|| vec!["Persistent".into()]);
        spec.fs_group_policy
            .get_or_insert_with(|| "ReadWriteOnceWithFSType".into());
        spec.se_linux_mount.get_or_insert(false);
    }

    fn validate_update(&self, new: &CSIDriver, old: &CSIDriver, errs: &mut Vec<Cause>) {
        immutable(
            &new.spec.attach_required,
            &old.spec.attach_required,
            "spec.attachRequired",
            errs,
        );
        immutable(
            &new.spec.volume_lifecycle_modes,
            &old.spec.volume_lifecycle_modes,
            "spec.volumeLifecycleModes",
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("AttachRequired", "boolean"),
            col("PodInfoOnMount", "boolean"),
            col("StorageCapacity", "boolean"),
            col("Modes", "string"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let modes: Vec<&str> = table::arr(o, "/spec/volumeLifecycleModes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        vec![
            table::name_cell(o),
            json!(o.pointer("/spec/attachRequired") == Some(&json!(true))),
            json!(o.pointer("/spec/podInfoOnMount") == Some(&json!(true))),
            json!(o.pointer("/spec/storageCapacity") == Some(&json!(true))),
            json!(table::or_none(modes.join(","))),
            table::age_cell(o),
        ]
    }
}

pub struct CsiNodes;

pub static CSI_NODES: Resource = Resource {
    group: GROUP,
    version: "v1",
    plural: "csinodes",
    singular: "csinode",
    kind: "CSINode",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &CsiNodes,
};

impl Strategy for CsiNodes {
    type Object = CSINode;

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Drivers", "integer"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![
            table::name_cell(o),
            json!(table::arr(o, "/spec/drivers").len()),
            table::age_cell(o),
        ]
    }
}

pub struct CsiStorageCapacities;

pub static CSI_STORAGE_CAPACITIES: Resource = Resource {
    group: GROUP,
    version: "v1",
    plural: "csistoragecapacities",
    singular: "csistoragecapacity",
    kind: "CSIStorageCapacity",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &CsiStorageCapacities,
};

impl Strategy for CsiStorageCapacities {
    type Object = CSIStorageCapacity;

    fn validate(&self, c: &CSIStorageCapacity, errs: &mut Vec<Cause>) {
        if c.storage_class_name.is_empty() {
            errs.push(Cause::required("storageClassName"));
        }
    }

    fn validate_update(
        &self,
        new: &CSIStorageCapacity,
        old: &CSIStorageCapacity,
        errs: &mut Vec<Cause>,
    ) {
        immutable(
            &new.storage_class_name,
            &old.storage_class_name,
            "storageClassName",
            errs,
        );
        immutable(&new.node_topology, &old.node_topology, "nodeTopology", errs);
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("StorageClassName", "string"),
            col("Capacity", "string"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![
            table::name_cell(o),
            json!(s(o, "/storageClassName")),
            json!(table::or_none(s(o, "/capacity").into())),
            table::age_cell(o),
        ]
    }
}

pub struct VolumeAttachments;

pub static VOLUME_ATTACHMENTS: Resource = Resource {
    group: GROUP,
    version: "v1",
    plural: "volumeattachments",
    singular: "volumeattachment",
    kind: "VolumeAttachment",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[Sub::Status],
    has_generation: false,
    strategy: &VolumeAttachments,
};

impl Strategy for VolumeAttachments {
    type Object = VolumeAttachment;

    fn prepare_for_create(&self, v: &mut VolumeAttachment) {
        v.status = None;
    }

    fn validate_update(
        &self,
        new: &VolumeAttachment,
        old: &VolumeAttachment,
        errs: &mut Vec<Cause>,
    ) {
        immutable(&new.spec, &old.spec, "spec", errs);
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Attacher", "string"),
            col("PV", "string"),
            col("Node", "string"),
            col("Attached", "boolean"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        vec![
            table::name_cell(o),
            json!(s(o, "/spec/attacher")),
            json!(s(o, "/spec/source/persistentVolumeName")),
            json!(s(o, "/spec/nodeName")),
            json!(o.pointer("/status/attached") == Some(&json!(true))),
            table::age_cell(o),
        ]
    }
}
