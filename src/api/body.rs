//! Request bodies: size limit, JSON or YAML (protobuf comes in `protobuf.rs`).

use actix_web::web;
use futures_util::StreamExt;
use serde_json::Value;

use super::status::ApiError;

/// Upstream's limit for a request body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub async fn read(mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
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
            yaml_serde::from_str(text)
                .map_err(|e| ApiError::BadRequest(format!("invalid YAML in the request body: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(bytes),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}
