//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`, the `k8s\0`
//! envelope), as kubectl 1.32+ sends for `kubectl create ...`.

use serde_json::Value;

use super::status::ApiError;

const MAGIC: &[u8; 4] = b"k8s\0";

pub fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    if !bytes.starts_with(MAGIC) {
        return Err(ApiError::BadRequest(
            "protobuf body without the k8s envelope".into(),
        ));
    }
    // Not decoded yet: kubectl 1.32+ `create` subcommands need it (see the README).
    Err(ApiError::UnsupportedMediaType(
        "protobuf request bodies are not supported yet; use `kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`".into(),
    ))
}
