//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! and server-side apply.

use serde_json::Value;

use super::body::{depth, MAX_DEPTH};
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
            json_patch(&mut out, &ops.0)?;
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

/// Upstream's limit on the operations of one JSON patch.
const MAX_JSON_PATCH_OPS: usize = 10_000;
/// How much one JSON patch may copy (or move somewhere deeper), in bytes of JSON: each `copy`
/// of the document into itself doubles it, so without a bound a few dozen operations would
/// need more memory than the machine has.
const MAX_JSON_PATCH_COPIED: usize = super::body::MAX_BODY;

/// Applies a JSON patch (RFC 6902) one operation at a time, refusing before it runs one that
/// would make the document too large or too deep: a few `copy`s of the document into its
/// deepest member double its depth each, until cloning or dropping it overflows the stack, and
/// an object deeper than `MAX_DEPTH` could not be read back from the store anyway. A failed
/// operation fails the whole patch and the caller drops `doc`, so nothing needs undoing
/// (`json_patch::patch`'s undo panics on a move of a member onto its parent followed by a
/// failing operation).
fn json_patch(doc: &mut Value, ops: &[json_patch::PatchOperation]) -> Result<(), ApiError> {
    use json_patch::PatchOperation as Op;
    if ops.len() > MAX_JSON_PATCH_OPS {
        return Err(ApiError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPS}, got {}",
            ops.len()
        )));
    }
    let mut budget = MAX_JSON_PATCH_COPIED;
    for (i, op) in ops.iter().enumerate() {
        // How deep what this operation puts at `path` nests (members at depth n sit in n
        // containers); the rest of the document does not get deeper.
        let placed = match op {
            Op::Add(o) => Some(tokens(o.path.as_str()) + depth(&o.value)),
            Op::Replace(o) => Some(tokens(o.path.as_str()) + depth(&o.value)),
            // A member moved no deeper than it was stays within the document's depth.
            Op::Move(o) if tokens(o.path.as_str()) <= tokens(o.from.as_str()) => None,
            Op::Copy(json_patch::CopyOperation { from, path, .. })
            | Op::Move(json_patch::MoveOperation { from, path, .. }) => {
                match doc.pointer(from.as_str()) {
                    Some(source) => {
                        budget = charge(source, budget).ok_or_else(|| {
                            ApiError::TooLarge(format!(
                                "the JSON patch copies or moves more than {MAX_JSON_PATCH_COPIED} bytes"
                            ))
                        })?;
                        Some(tokens(path.as_str()) + depth(source))
                    }
                    // json_patch reports the missing member.
                    None => None,
                }
            }
            Op::Remove(_) | Op::Test(_) => None,
        };
        if placed.is_some_and(|d| d > MAX_DEPTH) {
            return Err(ApiError::BadRequest(format!(
                "the JSON patch would nest the object deeper than {MAX_DEPTH} levels"
            )));
        }
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| ApiError::Invalid {
            message: format!(
                "the JSON patch could not be applied: operation '/{i}' failed at path '{}': {}",
                e.path, e.kind
            ),
            subject: Default::default(),
            causes: Vec::new(),
        })?;
    }
    Ok(())
}

/// The number of reference tokens of a JSON pointer.
fn tokens(pointer: &str) -> usize {
    pointer.bytes().filter(|&b| b == b'/').count()
}

/// `budget` less about the size of `v` as JSON, or `None` when that is more than `budget`
/// (stopping as soon as it is).
fn charge(v: &Value, mut budget: usize) -> Option<usize> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        let size = match v {
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Object(m) => {
                stack.extend(m.values());
                2 + m.keys().map(|k| k.len() + 4).sum::<usize>()
            }
            Value::String(s) => s.len() + 2,
            _ => 8,
        };
        budget = budget.checked_sub(size)?;
    }
    Some(budget)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_patch_of(doc: Value, ops: Value) -> Result<Value, ApiError> {
        apply(PatchType::Json, "ConfigMap", &doc, &ops)
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": {}}], "c": 2})), 4);
    }

    #[test]
    fn moving_a_member_onto_its_parent_then_failing_is_an_error_not_a_panic() {
        // json_patch::patch's undo of the move is a move into itself: it panicked.
        let ops = json!([
            {"op": "move", "from": "/a/b", "path": "/a"},
            {"op": "test", "path": "/x", "value": 1},
        ]);
        let err = json_patch_of(json!({"a": {"b": 1}}), ops).expect_err("test fails");
        assert!(err.to_string().contains("operation '/1' failed"), "{err}");
    }

    #[test]
    fn copying_the_document_into_itself_is_bounded() {
        // Each copy of the list into itself doubles it: 64 of them would need 2^64 times its
        // size.
        let ops: Vec<Value> = (0..64)
            .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/-"}))
            .collect();
        let err =
            json_patch_of(json!({"a": ["x".repeat(100)]}), json!(ops)).expect_err("too large");
        assert!(matches!(err, ApiError::TooLarge(_)), "{err}");
        // A few copies are fine.
        let ops = json!([{"op": "copy", "from": "", "path": "/b"}]);
        let out = json_patch_of(json!({"a": 1}), ops).expect("copy");
        assert_eq!(out, json!({"a": 1, "b": {"a": 1}}));
    }

    #[test]
    fn patched_objects_nest_no_deeper_than_the_store_reads() {
        // Copying the document into its deepest member doubles its depth.
        let mut doc = json!(1);
        for _ in 0..100 {
            doc = json!({ "a": doc });
        }
        let deepest = "/a".repeat(100);
        let ops = json!([{"op": "copy", "from": "", "path": deepest}]);
        let err = json_patch_of(doc.clone(), ops).expect_err("too deep");
        assert!(err.to_string().contains("deeper than 127"), "{err}");
        let mut deep = json!(1);
        for _ in 0..30 {
            deep = json!([deep]);
        }
        let ops = json!([{"op": "add", "path": deepest, "value": deep}]);
        assert!(json_patch_of(doc.clone(), ops).is_err());
        let ops = json!([{"op": "add", "path": deepest, "value": [[1]]}]);
        let out = json_patch_of(doc, ops).expect("add");
        assert_eq!(depth(&out), 102);
        serde_json::from_slice::<Value>(&serde_json::to_vec(&out).expect("to")).expect("read back");
    }

    #[test]
    fn too_many_operations_are_refused() {
        let ops: Vec<Value> = (0..=MAX_JSON_PATCH_OPS)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        let err = json_patch_of(json!({}), json!(ops)).expect_err("too many");
        assert!(matches!(err, ApiError::TooLarge(_)), "{err}");
    }
}
