//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0`
//! envelope around a `runtime.Unknown`, whose raw bytes are the object. kubectl 1.32+ sends
//! them for `kubectl create ...`. Decoded by a small wire reader guided by the message
//! layouts in `schema.txt` (generated from the k8s-pb and k8s-openapi crates), into the same
//! JSON the API stores.

mod wire;

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::status::ApiError;
use wire::{Reader, WireValue};

const MAGIC: &[u8; 4] = b"k8s\0";
/// Kinds of meta.k8s.io that clients send with the version of the group they talk to.
const META_KINDS: &[&str] = &[
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "GetOptions",
    "ListOptions",
];
/// Nested messages deeper than this are refused (the API types nest far less).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
enum Kind {
    String,
    Bytes,
    Int32,
    Int64,
    Bool,
    Double,
    Float,
    Message(String),
    Map(Box<Kind>, Box<Kind>),
}

#[derive(Debug)]
struct Field {
    json: String,
    kind: Kind,
    repeated: bool,
    /// A Go struct embedded inline: its fields go into the parent object.
    inline: bool,
}

/// Pointer fields of the API types (`*int32`, `*bool`, ...): for them a zero or false on the
/// wire was set on purpose. Every other scalar zero is Go's unset value, which Go's JSON
/// encoding omits, and so does this decoder.
const POINTER_SCALARS: &[&str] = &[
    "replicas",
    "parallelism",
    "completions",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "activeDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "ttlSecondsAfterFinished",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "startingDeadlineSeconds",
    "suspend",
    "automountServiceAccountToken",
    "immutable",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "runAsNonRoot",
    "privileged",
    "allowPrivilegeEscalation",
    "defaultMode",
    "mode",
    "optional",
    "gracePeriodSeconds",
    "priority",
    "enableServiceLinks",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "partition",
    "expirationSeconds",
    "ready",
    "serving",
    "terminating",
    "leaseDurationSeconds",
    "leaseTransitions",
    "hostUsers",
    "allocateLoadBalancerNodePorts",
    "manualSelector",
    "podReplacementPolicy",
];

type Schema = HashMap<String, HashMap<u64, Field>>;

fn kind_of(s: &str, ty: Option<&str>) -> Option<Kind> {
    Some(match s {
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        "int32" => Kind::Int32,
        "int64" => Kind::Int64,
        "bool" => Kind::Bool,
        "double" => Kind::Double,
        "float" => Kind::Float,
        "m" => Kind::Message(ty?.to_string()),
        _ => {
            let rest = s.strip_prefix("map:")?;
            let (k, v) = rest.split_once(':')?;
            let value = match v.strip_prefix("m:") {
                Some(t) => Kind::Message(t.to_string()),
                None => kind_of(v, None)?,
            };
            Kind::Map(Box::new(kind_of(k, None)?), Box::new(value))
        }
    })
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut out: Schema = HashMap::new();
        let mut current = String::new();
        for line in include_str!("schema.txt").lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["M", name] => {
                    current = name.to_string();
                    out.entry(current.clone()).or_default();
                }
                ["F", tag, json, kind, rest @ ..] => {
                    let ty = rest.first().filter(|t| **t != "r").copied();
                    let (Ok(tag), Some(kind)) = (tag.parse(), kind_of(kind, ty)) else {
                        continue;
                    };
                    let field = Field {
                        json: json.to_string(),
                        kind,
                        repeated: rest.contains(&"r"),
                        inline: rest.contains(&"i"),
                    };
                    out.entry(current.clone()).or_default().insert(tag, field);
                }
                _ => {}
            }
        }
        out
    })
}

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!("invalid protobuf request body: {why}"))
}

/// The message name of an object: `apps/v1` + `Deployment` -> `api.apps.v1.Deployment`.
fn message_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let package = match group.split('.').next() {
        Some("") | None => "core",
        Some(first) => first,
    };
    format!("api.{package}.{version}.{kind}")
}

/// Decodes a `k8s\0`-enveloped object into JSON with `apiVersion` and `kind`.
pub fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s envelope"))?;
    let unknown = decode_message("apimachinery.pkg.runtime.Unknown", body, 0)?;
    let api_version = unknown
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(
        unknown.get("contentEncoding").and_then(Value::as_str),
        None | Some("")
    ) {
        return Err(bad("content encodings are not supported"));
    }
    let name = message_name(api_version, kind);
    // Option kinds (DeleteOptions, ...) are meta.k8s.io's, sent under any group's version.
    let meta = format!("apimachinery.pkg.apis.meta.v1.{kind}");
    let name = if !schema().contains_key(&name) && META_KINDS.contains(&kind) {
        meta
    } else {
        name
    };
    if !schema().contains_key(&name) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "protobuf bodies of {kind} ({api_version}) are not supported; send JSON"
        )));
    }
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .map(|b64| base64::engine::general_purpose::STANDARD.decode(b64))
        .transpose()
        .map_err(bad)?
        .unwrap_or_default();
    let mut obj = decode_message(&name, &raw, 0)?;
    // Raw JSON fields (RawExtension, FieldsV1) nest up to serde_json's limit below the depth
    // of their field; the store could not read such an object back.
    if super::body::depth(&obj) > super::body::MAX_DEPTH {
        return Err(bad(format!(
            "the object nests deeper than {} levels",
            super::body::MAX_DEPTH
        )));
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

fn decode_message(name: &str, bytes: &[u8], depth: usize) -> Result<Value, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad("nesting too deep"));
    }
    if let Some(v) = special(name, bytes)? {
        return Ok(v);
    }
    let fields = schema()
        .get(name)
        .ok_or_else(|| bad(format!("unknown message {name}")))?;
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while let Some((tag, value)) = r.next_field().map_err(bad)? {
        // Unknown fields are skipped, as protobuf decoders do.
        let Some(f) = fields.get(&tag) else { continue };
        match &f.kind {
            Kind::Map(k, v) => {
                let WireValue::Bytes(entry) = value else {
                    return Err(bad("map entry is not length-delimited"));
                };
                let (key, val) = map_entry(entry, k, v, depth)?;
                let m = out.entry(f.json.clone()).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(key, val);
                }
            }
            kind if f.repeated => {
                let items = scalar_or_packed(kind, value, depth)?;
                let list = out.entry(f.json.clone()).or_insert_with(|| json!([]));
                if let Some(l) = list.as_array_mut() {
                    l.extend(items);
                }
            }
            kind => {
                let v = single(kind, value, depth)?;
                match (f.inline, v) {
                    (true, Value::Object(inner)) => out.extend(inner),
                    (_, v) if is_go_zero(&f.json, &v) => {}
                    (_, v) => {
                        out.insert(f.json.clone(), v);
                    }
                }
            }
        }
    }
    Ok(Value::Object(out))
}

fn is_go_zero(field: &str, v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(false) => !POINTER_SCALARS.contains(&field),
        Value::Number(n) => n.as_f64() == Some(0.0) && !POINTER_SCALARS.contains(&field),
        _ => false,
    }
}

fn map_entry(bytes: &[u8], k: &Kind, v: &Kind, depth: usize) -> Result<(String, Value), ApiError> {
    let mut r = Reader::new(bytes);
    let (mut key, mut val) = (String::new(), None);
    while let Some((tag, value)) = r.next_field().map_err(bad)? {
        match tag {
            1 => {
                key = single(k, value, depth)?
                    .as_str()
                    .map(String::from)
                    .unwrap_or_default()
            }
            2 => val = Some(single(v, value, depth)?),
            _ => {}
        }
    }
    let val = val.unwrap_or_else(|| match v {
        Kind::String | Kind::Bytes => json!(""),
        _ => Value::Null,
    });
    Ok((key, val))
}

fn scalar_or_packed(
    kind: &Kind,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Vec<Value>, ApiError> {
    match (kind, value) {
        (Kind::Int32 | Kind::Int64 | Kind::Bool, WireValue::Bytes(packed)) => {
            let mut r = Reader::new(packed);
            let mut out = Vec::new();
            while !r.is_empty() {
                let v = r.varint().map_err(bad)?;
                out.push(single(kind, WireValue::Varint(v), depth)?);
            }
            Ok(out)
        }
        (kind, value) => Ok(vec![single(kind, value, depth)?]),
    }
}

fn single(kind: &Kind, value: WireValue<'_>, depth: usize) -> Result<Value, ApiError> {
    Ok(match (kind, value) {
        (Kind::String, WireValue::Bytes(b)) => json!(std::str::from_utf8(b).map_err(bad)?),
        (Kind::Bytes, WireValue::Bytes(b)) => {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Kind::Int32, WireValue::Varint(v)) => json!(v as i32),
        (Kind::Int64, WireValue::Varint(v)) => json!(v as i64),
        (Kind::Bool, WireValue::Varint(v)) => json!(v != 0),
        (Kind::Double, WireValue::Fixed64(v)) => json!(f64::from_bits(v)),
        (Kind::Float, WireValue::Fixed32(v)) => json!(f32::from_bits(v)),
        (Kind::Message(name), WireValue::Bytes(b)) => decode_message(name, b, depth + 1)?,
        (kind, _) => return Err(bad(format!("wrong wire type for a {kind:?} field"))),
    })
}

/// Types whose JSON form is not their message form.
fn special(name: &str, bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    let fields = || -> Result<HashMap<u64, WireValue<'_>>, ApiError> {
        let mut r = Reader::new(bytes);
        let mut m = HashMap::new();
        while let Some((tag, v)) = r.next_field().map_err(bad)? {
            m.insert(tag, v);
        }
        Ok(m)
    };
    let text = |v: Option<&WireValue>| match v {
        Some(WireValue::Bytes(b)) => std::str::from_utf8(b).map(String::from).map_err(bad),
        _ => Ok(String::new()),
    };
    let int = |v: Option<&WireValue>| match v {
        Some(WireValue::Varint(n)) => *n as i64,
        _ => 0,
    };
    Ok(Some(match name {
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let f = fields()?;
            let secs = int(f.get(&1));
            // Go's zero time (year 1) and an unset time both mean "no time".
            if secs <= 0 {
                return Ok(Some(Value::Null));
            }
            let ts = jiff::Timestamp::from_second(secs).map_err(bad)?;
            json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        }
        "apimachinery.pkg.util.intstr.IntOrString" => {
            let f = fields()?;
            if int(f.get(&1)) == 1 {
                json!(text(f.get(&3))?)
            } else {
                json!(int(f.get(&2)) as i32)
            }
        }
        "apimachinery.pkg.api.resource.Quantity" => json!(text(fields()?.get(&1))?),
        "apimachinery.pkg.runtime.RawExtension" | "apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = match fields()?.get(&1) {
                Some(WireValue::Bytes(b)) => b.to_vec(),
                _ => Vec::new(),
            };
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&raw).map_err(bad)?
            }
        }
        "apimachinery.pkg.apis.meta.v1.Duration" => {
            json!(format!("{}s", int(fields()?.get(&1)) / 1_000_000_000))
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(tag: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(tag << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    fn int_field(tag: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(tag << 3, &mut out);
        varint(v, &mut out);
        out
    }

    #[test]
    fn decodes_a_configmap_as_kubectl_sends_it() {
        let labels = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cfg"), field(3, b""), field(11, &labels)].concat();
        let data = [field(1, b"greeting"), field(2, b"hello")].concat();
        let cm = [field(1, &meta), field(2, &data)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let unknown = [field(1, &type_meta), field(2, &cm)].concat();
        let body = [b"k8s\0".to_vec(), unknown].concat();
        let obj = decode(&body).expect("decode");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"greeting": "hello"}})
        );
    }

    #[test]
    fn delete_options_come_under_any_group_version() {
        // kubectl drain (1.32) deletes pods with DeleteOptions of "v1"; others send "apps/v1".
        for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
            let opts = [int_field(1, 0), field(4, b"Background")].concat();
            let type_meta = [field(1, api_version.as_bytes()), field(2, b"DeleteOptions")].concat();
            let unknown = [field(1, &type_meta), field(2, &opts)].concat();
            let obj = decode(&[b"k8s\0".to_vec(), unknown].concat()).expect(api_version);
            assert_eq!(obj["gracePeriodSeconds"], 0, "{api_version}");
            assert_eq!(obj["propagationPolicy"], "Background");
        }
    }

    #[test]
    fn int_or_string_time_and_repeated_fields() {
        let port = [
            int_field(3, 80),
            field(4, &[int_field(1, 1), field(3, b"http")].concat()),
        ]
        .concat();
        let spec = [field(1, &port), field(5, b"1.2.3.4"), field(5, b"5.6.7.8")].concat();
        let svc = [field(1, &field(1, b"s")), field(2, &spec)].concat();
        let obj = decode_message("api.core.v1.Service", &svc, 0).expect("decode");
        assert_eq!(
            obj["spec"]["ports"][0],
            json!({"port": 80, "targetPort": "http"})
        );
        assert_eq!(obj["spec"]["externalIPs"], json!(["1.2.3.4", "5.6.7.8"]));
        let zero_time = field(8, &int_field(1, (-62135596800i64) as u64));
        let meta = decode_message("apimachinery.pkg.apis.meta.v1.ObjectMeta", &zero_time, 0)
            .expect("decode");
        assert_eq!(meta, json!({}));
    }

    #[test]
    fn raw_json_nested_deeper_than_the_store_reads_is_refused() {
        // metadata.managedFields[0].fieldsV1 is 4 levels deep, so 123 levels of raw JSON there
        // make an object of 127, which serde_json (and so the store) still reads.
        let configmap = |levels: usize| {
            let raw = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            let entry = field(7, &field(1, raw.as_bytes()));
            let meta = [field(1, b"cfg"), field(17, &entry)].concat();
            let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
            let unknown = [field(1, &type_meta), field(2, &field(1, &meta))].concat();
            [b"k8s\0".to_vec(), unknown].concat()
        };
        let obj = decode(&configmap(123)).expect("decode");
        let text = serde_json::to_vec(&obj).expect("to");
        serde_json::from_slice::<Value>(&text).expect("the store reads it back");
        assert!(matches!(
            decode(&configmap(124)),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert!(matches!(
            decode(b"k8s\0\xff\xff\xff"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode(b"not protobuf"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
