//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! and server-side apply.

use serde_json::Value;

use super::status::ApiError;
use super::strategic;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(media: &str) -> Result<Self, ApiError> {
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
            ))),
        }
    }
}

/// Parses a patch body once, so a retried patch (after a conflict) does not parse again.
pub fn parse(kind: PatchType, content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    match kind {
        PatchType::Apply => super::body::decode(Some("application/yaml"), body)
            .or_else(|_| super::body::decode(content_type, body)),
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid patch: {e}"))),
    }
}

/// Applies a parsed patch to `doc` (the current object of `kind`).
pub fn apply(
    kind: PatchType,
    object_kind: &str,
    doc: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &ops).map_err(|e| ApiError::Invalid {
                message: format!("the JSON patch could not be applied: {e}"),
                subject: Default::default(),
                causes: Vec::new(),
            })?;
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(&mut out, patch);
        }
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            out = strategic::merge(object_kind, &out, patch)?;
        }
        PatchType::Apply => {
            // Server-side apply without field ownership: the applied configuration is merged
            // in with the strategic rules, so fields it names win and lists merge by key.
            out = strategic::merge(object_kind, &out, &strip_nulls(patch))?;
        }
    }
    Ok(out)
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}
