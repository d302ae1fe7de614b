//! Entry points for fuzzing the decoders of untrusted input.
//!
//! The request body decoders (JSON, YAML, protobuf), the three patch types, the label and
//! field selector parsers and the Raft peer frame decoder all read bytes an API client or a
//! peer chose. This module exposes each of them as one `fn(&[u8])` so that the cargo-fuzz
//! targets in `fuzz/`, the replay of their committed corpus (`tests/fuzz_corpus.rs`) and the
//! property tests (`tests/properties.rs`) drive exactly the functions the server calls,
//! without making the private modules of `api` public. Errors are expected and discarded;
//! a panic, a hang or an unbounded allocation is a bug.
//!
//! The `fn(&[u8])` targets are thin adapters: anything cleverer than splitting the input
//! belongs in the code under test.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::store::transport;

/// The handle on the request decoders; its methods are implemented next to them, in
/// `api/body.rs`.
pub struct Decoders;

/// The media types of the three patch types, as `kubectl patch --type` sends them.
pub const JSON_PATCH: &str = "application/json-patch+json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// The byte that separates the target document from the patch in a patch target's input.
/// It never occurs in UTF-8, so neither half can contain it.
pub const PATCH_SEPARATOR: u8 = 0xFF;

/// Decodes a request body of `content_type` as an object handler does.
pub fn decode_body(content_type: &str, bytes: &[u8]) -> Result<Value, String> {
    Decoders::body(content_type, bytes).map_err(|e| e.to_string())
}

/// Parses a PATCH body of `content_type` and applies it to `doc`, an object of `object_kind`,
/// as the patch handler does.
pub fn apply_patch(
    content_type: &str,
    object_kind: &str,
    doc: &Value,
    patch: &[u8],
) -> Result<Value, String> {
    Decoders::patch(content_type, object_kind, doc, patch).map_err(|e| e.to_string())
}

/// Parses a `labelSelector` and matches it against `labels`.
pub fn label_selector_matches(
    selector: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    Decoders::label_selector(selector, labels).map_err(|e| e.to_string())
}

/// Parses a `fieldSelector` for objects of `kind` and matches it against `obj`.
pub fn field_selector_matches(selector: &str, kind: &str, obj: &Value) -> Result<bool, String> {
    Decoders::field_selector(selector, kind, obj).map_err(|e| e.to_string())
}

/// The object patched when a patch target's input names no document of its own.
pub fn sample_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "finalizers": ["example.com/a"],
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                    }],
                    "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                },
            },
        },
    })
}

fn labels() -> BTreeMap<String, String> {
    [("app", "web"), ("tier", "front"), ("env", "prod")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod() -> Value {
    json!({
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {"nodeName": "n1", "restartPolicy": "Always"},
        "status": {"phase": "Running", "podIP": "10.0.0.7"},
    })
}

/// `document 0xFF patch`, or the whole input as the patch of `sample_deployment()` when it
/// has no separator or the document half is not JSON.
fn split_patch(data: &[u8]) -> (Value, &[u8]) {
    match data.iter().position(|&b| b == PATCH_SEPARATOR) {
        Some(i) => {
            let doc = serde_json::from_slice(&data[..i]).unwrap_or_else(|_| sample_deployment());
            (doc, &data[i + 1..])
        }
        None => (sample_deployment(), data),
    }
}

fn patch(content_type: &str, data: &[u8]) {
    let (doc, body) = split_patch(data);
    let _ = apply_patch(content_type, "Deployment", &doc, body);
}

pub fn body_json(data: &[u8]) {
    let _ = decode_body("application/json", data);
}

pub fn body_yaml(data: &[u8]) {
    let _ = decode_body("application/yaml", data);
}

pub fn body_protobuf(data: &[u8]) {
    let _ = decode_body("application/vnd.kubernetes.protobuf", data);
}

pub fn patch_json(data: &[u8]) {
    patch(JSON_PATCH, data);
}

pub fn patch_merge(data: &[u8]) {
    patch(MERGE_PATCH, data);
}

pub fn patch_strategic(data: &[u8]) {
    patch(STRATEGIC_MERGE_PATCH, data);
}

/// Selectors arrive as (URL-decoded) query strings, so only UTF-8 is parsed.
pub fn label_selector(data: &[u8]) {
    if let Ok(sel) = std::str::from_utf8(data) {
        let _ = label_selector_matches(sel, &labels());
    }
}

/// Parsed for every kind with per-kind fields, and one without.
pub fn field_selector(data: &[u8]) {
    if let Ok(sel) = std::str::from_utf8(data) {
        let obj = pod();
        for kind in [
            "Pod",
            "Event",
            "Secret",
            "Node",
            "Namespace",
            "ReplicaSet",
            "ConfigMap",
        ] {
            let _ = field_selector_matches(sel, kind, &obj);
        }
    }
}

/// A frame of a peer connection: the first is the hello, every later one a raft message;
/// both decoders see every input.
pub fn raft_peer_frame(data: &[u8]) {
    let _ = transport::parse_hello(data);
    let _ = transport::decode_message(data);
}

/// An admission configuration file (`api.admission_control_config_file`): a file `path`
/// plugins may name is read relative to it, so the fuzzer's inputs stay in a fake directory.
pub fn admission_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/nonexistent/admission.yaml");
        let _ = crate::api::podsecurity::PodSecurityConfig::parse(path, text);
    }
}

/// An audit policy file (`api.audit_policy_file`), then a level asked of it.
pub fn audit_policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Decoders::audit_policy(text);
    }
}

/// Pod Security Admission over a pod a client sent, at every level, and namespace labels.
pub fn pod_security(data: &[u8]) {
    use crate::api::podsecurity::{checks, policy};
    let Ok(pod) = serde_json::from_slice::<k8s_openapi::api::core::v1::Pod>(data) else {
        return;
    };
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let lv = |level| policy::LevelVersion {
        level,
        version: policy::Version::LATEST,
    };
    let defaults = policy::Policy {
        enforce: lv(policy::Level::Baseline),
        audit: lv(policy::Level::Baseline),
        warn: lv(policy::Level::Baseline),
    };
    let (p, _) = policy::Policy::from_labels(&labels, defaults);
    if let Some(spec) = &pod.spec {
        for level in [
            p.enforce,
            lv(policy::Level::Restricted),
            policy::LevelVersion {
                level: policy::Level::Restricted,
                version: policy::Version::v1(18),
            },
        ] {
            let found = checks::evaluate(level, &mut checks::PodView::new(&annotations, spec));
            let _ = checks::describe(&found);
        }
    }
}

/// A cluster token as `--token`, `security.token` or a join's bearer token carries it.
pub fn cluster_token(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = crate::pki::ClusterToken::parse(text) {
            let _ = t.accepts(text);
        }
    }
}

/// A fuzz target: any bytes in, nothing out, and it must return.
pub type Target = fn(&[u8]);

/// Every target by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("body_json", body_json),
    ("body_yaml", body_yaml),
    ("body_protobuf", body_protobuf),
    ("patch_json", patch_json),
    ("patch_merge", patch_merge),
    ("patch_strategic", patch_strategic),
    ("label_selector", label_selector),
    ("field_selector", field_selector),
    ("raft_peer_frame", raft_peer_frame),
    ("admission_config", admission_config),
    ("audit_policy", audit_policy),
    ("pod_security", pod_security),
    ("cluster_token", cluster_token),
];
