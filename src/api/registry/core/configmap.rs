//! ConfigMaps; an `immutable: true` one keeps its data for good.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;
use crate::api::table::{self, col, Col};

pub struct ConfigMaps;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &ConfigMaps,
};

/// Upstream's limit on a ConfigMap's or Secret's data (1 MiB).
pub const DATA_MAX: usize = 1024 * 1024;

/// Keys of a ConfigMap or Secret (`IsConfigMapKey`).
pub fn data_keys<'a>(keys: impl Iterator<Item = &'a String>, field: &str, errs: &mut Vec<Cause>) {
    for k in keys {
        let ok = !k.is_empty()
            && k.len() <= 253
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            && k != "."
            && k != ".."
            && !k.starts_with("..");
        if !ok {
            errs.push(Cause::invalid(
                field,
                format!("{k:?}"),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
}

/// `immutable: true` freezes the flag itself and the listed fields (name, changed).
pub fn frozen(
    new_immutable: Option<bool>,
    old_immutable: Option<bool>,
    fields: &[(&str, bool)],
    errs: &mut Vec<Cause>,
) {
    if old_immutable != Some(true) {
        return;
    }
    const WHY: &str = "field is immutable when `immutable` is set";
    if new_immutable != Some(true) {
        errs.push(Cause::forbidden("immutable", WHY));
    }
    for (field, changed) in fields {
        if *changed {
            errs.push(Cause::forbidden(*field, WHY));
        }
    }
}

impl Strategy for ConfigMaps {
    type Object = ConfigMap;

    fn validate(&self, cm: &ConfigMap, errs: &mut Vec<Cause>) {
        data_keys(cm.data.iter().flatten().map(|(k, _)| k), "data", errs);
        data_keys(
            cm.binary_data.iter().flatten().map(|(k, _)| k),
            "binaryData",
            errs,
        );
        for k in cm.data.iter().flatten().map(|(k, _)| k) {
            if cm.binary_data.as_ref().is_some_and(|b| b.contains_key(k)) {
                errs.push(Cause::invalid(
                    "data",
                    format!("{k:?}"),
                    "duplicate of key present in binaryData",
                ));
            }
        }
        let size: usize = cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + cm.binary_data
                .iter()
                .flatten()
                .map(|(k, v)| k.len() + v.0.len())
                .sum::<usize>();
        if size > DATA_MAX {
            errs.push(Cause::too_long(
                "",
                format!("must have at most {DATA_MAX} bytes"),
            ));
        }
    }

    fn validate_update(&self, new: &ConfigMap, old: &ConfigMap, errs: &mut Vec<Cause>) {
        frozen(
            new.immutable,
            old.immutable,
            &[
                ("data", new.data != old.data),
                ("binaryData", new.binary_data != old.binary_data),
            ],
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![table::name_col(), col("Data", "integer"), table::age_col()]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let n = o
            .get("data")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
            + o.get("binaryData")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
        vec![table::name_cell(o), json!(n), table::age_cell(o)]
    }
}
