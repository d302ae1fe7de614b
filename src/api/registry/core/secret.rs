//! Secrets: `stringData` folds into `data` as upstream's conversion does; the type is fixed
//! at creation and `immutable: true` freezes the data.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use serde_json::{json, Value};

use super::configmap::{data_keys, frozen, DATA_MAX};
use crate::api::registry::validation::immutable;
use crate::api::registry::Strategy;
use crate::api::resources::Resource;
use crate::api::status::Cause;
use crate::api::table::{self, col, s, Col};

pub struct Secrets;

pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    has_generation: false,
    strategy: &Secrets,
};

impl Strategy for Secrets {
    type Object = Secret;

    fn defaults(&self, secret: &mut Secret) {
        secret.type_.get_or_insert_with(|| "Opaque".into());
        // Upstream's conversion: `stringData` is write-only, merged over `data`.
        if let Some(strings) = secret.string_data.take() {
            let data = secret.data.get_or_insert_with(Default::default);
            for (k, v) in strings {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self, secret: &Secret, errs: &mut Vec<Cause>) {
        let data = secret.data.iter().flatten();
        data_keys(data.clone().map(|(k, _)| k), "data", errs);
        let size: usize = data.map(|(k, v)| k.len() + v.0.len()).sum();
        if size > DATA_MAX {
            errs.push(Cause::too_long(
                "data",
                format!("must have at most {DATA_MAX} bytes"),
            ));
        }
        let has = |k: &str| secret.data.as_ref().is_some_and(|d| d.contains_key(k));
        match secret.type_.as_deref().unwrap_or("Opaque") {
            "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
                errs.push(Cause::required("data[.dockerconfigjson]"))
            }
            "kubernetes.io/tls" => {
                for k in ["tls.crt", "tls.key"] {
                    if !has(k) {
                        errs.push(Cause::required(format!("data[{k}]")));
                    }
                }
            }
            _ => {}
        }
    }

    fn validate_update(&self, new: &Secret, old: &Secret, errs: &mut Vec<Cause>) {
        immutable(&new.type_, &old.type_, "type", errs);
        frozen(
            new.immutable,
            old.immutable,
            &[("data", new.data != old.data)],
            errs,
        );
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            table::name_col(),
            col("Type", "string"),
            col("Data", "integer"),
            table::age_col(),
        ]
    }

    fn cells(&self, o: &Value) -> Vec<Value> {
        let n = o
            .get("data")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        vec![
            table::name_cell(o),
            json!(s(o, "/type")),
            json!(n),
            table::age_cell(o),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
}
