//! Request bodies: size limit, JSON or YAML (protobuf comes in `protobuf.rs`).

use actix_web::web;
use futures_util::StreamExt;
use serde_json::Value;

use super::status::ApiError;

/// Upstream's limit for a request body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub async fn read<S>(mut payload: S) -> Result<web::Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::TooLarge(format!(
                "the request body is larger than the {MAX_BODY} bytes allowed"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// How deep an object may nest: as deep as serde_json reads (127 arrays or objects, its
/// recursion limit), which is the JSON body decoder's limit and the one the store meets again
/// when it reads an object back. Decoders that build a `Value` by other means (protobuf, JSON
/// patch) keep to it, so that nothing they accept becomes unreadable.
pub const MAX_DEPTH: usize = 127;

/// How many containers deep `v` nests (0 for a scalar), without recursion.
pub fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            _ => continue,
        }
        max = max.max(d);
    }
    max
}

/// The media type without parameters, lowercased (`application/json` when absent).
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "application/json".into())
}

/// Decodes an object body by content type.
pub fn decode(content_type: Option<&str>, bytes: &[u8]) -> Result<Value, ApiError> {
    match media_type(content_type).as_str() {
        "application/json" | "*/*" | "text/plain" => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON in the request body: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::BadRequest("the YAML request body is not UTF-8".into()))?;
            let v: Value = yaml_serde::from_str(text).map_err(|e| {
                ApiError::BadRequest(format!("invalid YAML in the request body: {e}"))
            })?;
            // The YAML decoder reads one level more than serde_json does.
            if depth(&v) > MAX_DEPTH {
                return Err(ApiError::BadRequest(format!(
                    "invalid YAML in the request body: nested deeper than {MAX_DEPTH} levels"
                )));
            }
            Ok(v)
        }
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(bytes),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}

/// The door through which `crate::fuzz_targets` reaches the request decoders: `api`'s modules
/// are private, but an inherent impl of a type declared there may live here, next to them.
/// Each method is the same call the handlers make for that input.
impl crate::fuzz_targets::Decoders {
    pub(crate) fn body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
        decode(Some(content_type), bytes)
    }

    pub(crate) fn patch(
        content_type: &str,
        object_kind: &str,
        doc: &Value,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let kind = super::patch::PatchType::from_content_type(content_type)?;
        let patch = super::patch::parse(kind, Some(content_type), body)?;
        super::patch::apply(kind, object_kind, doc, &patch)
    }

    pub(crate) fn label_selector(
        selector: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool, ApiError> {
        Ok(super::selectors::LabelSelector::parse(selector)?.matches(labels))
    }

    pub(crate) fn field_selector(
        selector: &str,
        kind: &str,
        obj: &Value,
    ) -> Result<bool, ApiError> {
        let fields = super::resources::RESOURCES
            .iter()
            .find(|r| r.kind == kind)
            .map_or(&[][..], |r| r.strategy.selectable_fields());
        Ok(super::selectors::FieldSelector::parse(selector, fields)?.matches(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn bodies_nest_no_deeper_than_the_store_reads() {
        for media in ["application/json", "application/yaml"] {
            let ok = decode(Some(media), nested(MAX_DEPTH).as_bytes()).expect(media);
            assert_eq!(depth(&ok), MAX_DEPTH);
            let text = serde_json::to_vec(&ok).expect("to");
            serde_json::from_slice::<Value>(&text).expect("the store reads it back");
            assert!(
                decode(Some(media), nested(MAX_DEPTH + 1).as_bytes()).is_err(),
                "{media}"
            );
        }
    }
}
