//! The kinds the API serves, one strategy each, as upstream's `pkg/registry/<group>/<kind>`:
//! defaults, what create and update prepare, create and update validation over the
//! k8s-openapi type, table columns and the fields a field selector may name. Generic
//! handlers reach a kind only through its [`Resource`]'s strategy (`Rest`).

pub mod apps;
pub mod auth;
pub mod batch;
pub mod coordination;
pub mod core;
pub mod discovery;
pub mod meta;
pub mod networking;
pub mod pod_spec;
pub mod rbac;
pub mod storage;
pub mod validation;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::resources::Resource;
use super::status::{ApiError, Cause};
use super::table::{self, Col};
use super::validate::FieldValidation;
pub use meta::NameRule;

/// How a kind is stored beyond put and delete of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Plain,
    /// With the ClusterIP and NodePort allocations held in the same transactions.
    ServiceAllocations,
    /// Deleted through its lifecycle: Terminating, emptied, then removed.
    Namespace,
    /// Not stored: a review answered on create (`api::auth::review`).
    Review,
}

/// One kind's behaviour, over its k8s-openapi type.
pub trait Strategy: Send + Sync + 'static {
    type Object: Serialize
        + DeserializeOwned
        + schemars::JsonSchema
        + k8s_openapi::Metadata<Ty = ObjectMeta>;

    /// How names of this kind are validated.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Upstream's defaulting functions (applied to every write).
    fn defaults(&self, _obj: &mut Self::Object) {}

    /// What a create sets beyond the generic metadata (upstream's `PrepareForCreate`).
    fn prepare_for_create(&self, _obj: &mut Self::Object) {}

    /// What an update takes from the stored object beyond the generic metadata and status
    /// (upstream's `PrepareForUpdate`).
    fn prepare_for_update(&self, _new: &mut Self::Object, _old: &Self::Object) {}

    /// Create (and update) validation of the kind's own fields; metadata is checked already.
    fn validate(&self, _obj: &Self::Object, _errs: &mut Vec<Cause>) {}

    /// What may not change (upstream's `ValidateXUpdate`, beyond the metadata).
    fn validate_update(&self, _new: &Self::Object, _old: &Self::Object, _errs: &mut Vec<Cause>) {}

    /// `kubectl get` columns (NAME first); with `cells` in the same order.
    fn columns(&self) -> Vec<Col> {
        vec![table::name_col(), table::age_col()]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![table::name_cell(obj), table::age_cell(obj)]
    }

    /// Field-selector fields besides `metadata.name` and `metadata.namespace`.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// Rules over the JSON of an update before it is decoded (values the client left out
    /// that the server keeps).
    fn prepare_update_json(&self, _old: &Value, _new: &mut Value) {}

    /// Validation written over JSON (run after `validate`).
    fn validate_json(&self, _obj: &Value, _errs: &mut Vec<Cause>) {}

    fn storage(&self) -> Storage {
        Storage::Plain
    }

    /// Finalizers of the kind's own that hold an object being deleted (a namespace's
    /// `spec.finalizers`), besides `metadata.finalizers`.
    fn finalizing(&self, _obj: &Value) -> bool {
        false
    }

    /// A delete waits for someone (a pod's node agent) before the object goes, with this
    /// grace period unless the client gives one (upstream's `CheckGracefulDelete`).
    fn graceful_delete(&self, _obj: &Value) -> Option<i64> {
        None
    }
}

/// A strategy as generic handlers use it: over JSON, the typed work inside.
pub trait Rest: Send + Sync {
    /// Decodes a new object as the kind's type (400 for type errors, or unknown fields under
    /// `Strict`), defaults it, prepares it for create and validates it (422). `obj` becomes
    /// the typed form; the warnings name unknown fields.
    fn admit_create(
        &self,
        res: &Resource,
        obj: &mut Value,
        fv: FieldValidation,
    ) -> Result<Vec<String>, ApiError>;

    /// The same for an update of `old` (the stored object), with update validation; the
    /// generation is bumped when the defaulted spec changed.
    fn admit_update(
        &self,
        res: &Resource,
        old: &Value,
        new: &mut Value,
        fv: FieldValidation,
    ) -> Result<Vec<String>, ApiError>;

    fn columns(&self) -> Vec<Col>;
    fn cells(&self, obj: &Value) -> Vec<Value>;
    fn selectable_fields(&self) -> &'static [&'static str];
    fn storage(&self) -> Storage;
    fn finalizing(&self, obj: &Value) -> bool;
    fn graceful_delete(&self, obj: &Value) -> Option<i64>;

    /// The kind's JSON schema as a `$ref` into `generator`'s definitions (OpenAPI).
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> Value;
}

/// Decodes as `T`: a type error is a 400, and the fields the type dropped are unknown.
fn decode<T: DeserializeOwned + Serialize>(
    obj: &Value,
    fv: FieldValidation,
) -> Result<(T, Vec<String>), ApiError> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body does not decode as the expected type: {e}"
        ))
    })?;
    let mut unknown = Vec::new();
    if fv != FieldValidation::Ignore {
        let known = encode(&typed)?;
        validation::unknown_fields(obj, &known, "", &mut unknown);
    }
    if fv == FieldValidation::Strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    let warnings = unknown
        .into_iter()
        .map(|u| format!("unknown field \"{u}\""))
        .collect();
    Ok((typed, warnings))
}

fn encode<T: Serialize>(obj: &T) -> Result<Value, ApiError> {
    serde_json::to_value(obj).map_err(|e| ApiError::Internal(e.to_string()))
}

fn refuse(res: &Resource, obj: &Value, causes: Vec<Cause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        res.group,
        res.kind,
        super::object::name_of(obj),
        causes,
    ))
}

impl<S: Strategy> Rest for S {
    fn admit_create(
        &self,
        res: &Resource,
        obj: &mut Value,
        fv: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        let (mut typed, warnings) = decode::<S::Object>(obj, fv)?;
        self.defaults(&mut typed);
        self.prepare_for_create(&mut typed);
        let mut causes = Vec::new();
        meta::validate(res, self.name_rule(), typed.metadata(), &mut causes);
        self.validate(&typed, &mut causes);
        *obj = encode(&typed)?;
        self.validate_json(obj, &mut causes);
        refuse(res, obj, causes)?;
        Ok(warnings)
    }

    fn admit_update(
        &self,
        res: &Resource,
        old: &Value,
        new: &mut Value,
        fv: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        self.prepare_update_json(old, new);
        let (mut typed, warnings) = decode::<S::Object>(new, fv)?;
        // The stored object was written through this strategy: it decodes. Defaulted as
        // upstream's storage decoder does, so defaults added since it was written are no
        // change.
        let (mut was, _) = decode::<S::Object>(old, FieldValidation::Ignore)?;
        self.defaults(&mut was);
        self.prepare_for_update(&mut typed, &was);
        self.defaults(&mut typed);
        let mut causes = Vec::new();
        meta::validate(res, self.name_rule(), typed.metadata(), &mut causes);
        meta::validate_update(typed.metadata(), was.metadata(), &mut causes);
        self.validate(&typed, &mut causes);
        self.validate_update(&typed, &was, &mut causes);
        *new = encode(&typed)?;
        self.validate_json(new, &mut causes);
        refuse(res, new, causes)?;
        if res.has_generation && encode(&was)?.get("spec") != new.get("spec") {
            super::object::bump_generation(old, new);
        }
        Ok(warnings)
    }

    fn columns(&self) -> Vec<Col> {
        Strategy::columns(self)
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        Strategy::cells(self, obj)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        Strategy::selectable_fields(self)
    }

    fn storage(&self) -> Storage {
        Strategy::storage(self)
    }

    fn finalizing(&self, obj: &Value) -> bool {
        Strategy::finalizing(self, obj)
    }

    fn graceful_delete(&self, obj: &Value) -> Option<i64> {
        Strategy::graceful_delete(self, obj)
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> Value {
        generator.subschema_for::<S::Object>().to_value()
    }
}

#[cfg(test)]
mod tests;
