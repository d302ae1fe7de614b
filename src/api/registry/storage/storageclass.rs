//! StorageClasses: provisioner, parameters, reclaim policy and binding mode are fixed.

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Value};

use crate::api::registry::validation::immutable;
use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;
use crate::api::table::{self, col, s, Col};

pub struct StorageClasses;

pub static RESOURCE: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    plural: "storageclasses",
    singular: "storageclass",
    kind: "StorageClass",
    namespaced: false,
    short_names: &["sc"],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &StorageClasses,
};

impl Strategy for StorageClasses {
    type Object = StorageClass;

    fn defaults(&self, sc: &mut StorageClass) {
        sc.reclaim_policy.get_or_insert_with(|| "Delete".into());
        sc.volume_binding_mode
            .get_or_insert_with(|| "Immediate".into());
    }

    fn validate_update(&self, new: &StorageClass, old: &StorageClass, errs: &mut Vec<Cause>) {
        for (field, changed) in [
            ("parameters", new.parameters != old.parameters),
            ("provisioner", new.provisioner != old.provisioner),
            ("reclaimPolicy", new.reclaim_policy != old.reclaim_policy),
        ] {
            if changed {
                errs.push(Cause::forbidden(
                    field,
                    format!("updates to {field} are forbidden."),
                ));
            }
        }
        immutable(
            &new.volume_binding_mode,
            &old.volume_binding_mode,
            "volumeBindingMode",
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Provisioner", "string"),
            col("ReclaimPolicy", "string"),
            col("VolumeBindingMode", "string"),
            col("AllowVolumeExpansion", "string"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let default = o
            .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
            == Some(&json!("true"));
        let shown = if default {
            format!("{} (default)", s(o, "/metadata/name"))
        } else {
            s(o, "/metadata/name").to_string()
        };
        vec![
            json!(shown),
            json!(s(o, "/provisioner")),
            json!(table::or_none(s(o, "/reclaimPolicy").into()).replace("<none>", "Delete")),
            json!(table::or_none(s(o, "/volumeBindingMode").into()).replace("<none>", "Immediate")),
            json!(o.pointer("/allowVolumeExpansion") == Some(&json!(true))),
            table::age_cell(o),
        ]
    }
}
