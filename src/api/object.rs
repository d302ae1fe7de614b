//! Stored objects: JSON in the store, `resourceVersion` taken from the key's mod revision,
//! and the system metadata Kubernetes sets on create and keeps on update.

use rand::Rng;
use serde_json::{json, Map, Value};

use super::resources::Resource;
use super::status::{ApiError, Cause, Subject};
use crate::store::KeyValue;

pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn subject(res: &Resource, name: &str) -> Subject {
    Subject {
        group: res.group.into(),
        kind: res.plural.into(),
        name: name.into(),
    }
}

/// The object as clients see it: stored JSON plus `metadata.resourceVersion`.
pub fn from_kv(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

const META_PREFIX: &[u8] = b"{\"metadata\":{";

/// Bytes to store: everything but `resourceVersion`, which the store's revision gives.
/// `metadata` comes first, so `with_rv` can add the version without parsing the object.
pub fn to_bytes(obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut o = obj.clone();
    let mut meta = o
        .as_object_mut()
        .and_then(|m| m.remove("metadata"))
        .unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    let err = |e: serde_json::Error| ApiError::Internal(e.to_string());
    let mut out = b"{\"metadata\":".to_vec();
    serde_json::to_writer(&mut out, &meta).map_err(err)?;
    let rest = serde_json::to_vec(&o).map_err(err)?;
    if rest.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&rest[1..]);
    } else {
        out.push(b'}');
    }
    Ok(out)
}

/// The stored bytes with `metadata.resourceVersion` added, without a parse; `None` for bytes
/// not laid out by `to_bytes`.
pub fn with_rv(bytes: &[u8], rv: u64) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(META_PREFIX)?;
    let mut out = Vec::with_capacity(bytes.len() + 32);
    out.extend_from_slice(META_PREFIX);
    out.extend_from_slice(format!("\"resourceVersion\":\"{rv}\"").as_bytes());
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// JSON bytes of a stored object as clients see it.
pub fn kv_json(kv: &KeyValue, rv: u64) -> Result<Vec<u8>, ApiError> {
    match with_rv(&kv.value, rv) {
        Some(b) => Ok(b),
        None => {
            let mut o = from_kv(kv)?;
            set_rv(&mut o, rv);
            serde_json::to_vec(&o).map_err(|e| ApiError::Internal(e.to_string()))
        }
    }
}

pub fn meta(obj: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    obj.get("metadata")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    // Just ensured to be an object.
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub fn name_of(obj: &Value) -> &str {
    meta(obj).get("name").and_then(Value::as_str).unwrap_or("")
}

/// `resourceVersion` given by the client, if any: a precondition for updates.
pub fn client_rv(obj: &Value) -> Result<Option<u64>, ApiError> {
    match meta(obj).get("resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {s:?}"))),
        Some(other) => Err(ApiError::BadRequest(format!(
            "invalid resourceVersion {other}"
        ))),
    }
}

/// Checks `apiVersion`/`kind` of a request body (filled in when absent).
pub fn check_type(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    };
    let want_av = res.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )))
        }
        _ => {
            map.insert("apiVersion".into(), json!(want_av));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != res.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )))
        }
        _ => {
            map.insert("kind".into(), json!(res.kind));
        }
    }
    if map
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    Ok(())
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Sets what the server owns on create: name from generateName, namespace, uid,
/// creationTimestamp, generation; drops what clients may not set.
pub fn prepare_create(
    res: &Resource,
    obj: &mut Value,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    check_type(res, obj)?;
    let m = meta_mut(obj);
    if m.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let base = m
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if base.is_empty() {
            return Err(ApiError::invalid(
                res.group,
                res.kind,
                "",
                vec![Cause::required("metadata.name")],
            ));
        }
        let mut rng = rand::thread_rng();
        let suffix: String = (0..5)
            .map(|_| GENERATE_CHARS[rng.gen_range(0..GENERATE_CHARS.len())] as char)
            .collect();
        let base: String = base.chars().take(58).collect();
        m.insert("name".into(), json!(format!("{base}{suffix}")));
    }
    if res.namespaced {
        let ns = namespace.unwrap_or("default");
        match m.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now()));
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        m.remove(k);
    }
    if res.has_generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    Ok(())
}

/// Carries server-owned metadata from the stored object into an update and keeps the status
/// (or, for a status update, everything else). The strategy bumps the generation once the
/// new spec is defaulted.
pub fn prepare_update(
    res: &Resource,
    old: &Value,
    new: &mut Value,
    status_only: bool,
) -> Result<(), ApiError> {
    check_type(res, new)?;
    if status_only {
        let status = new.get("status").cloned();
        let rv = meta(new).get("resourceVersion").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if let Some(rv) = rv {
            meta_mut(new).insert("resourceVersion".into(), rv);
        }
        return Ok(());
    }
    let old_meta = meta(old).clone();
    let name = old_meta.get("name").cloned().unwrap_or(Value::Null);
    let m = meta_mut(new);
    match m.get("name") {
        Some(n) if *n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                n.as_str().unwrap_or(""),
                name.as_str().unwrap_or("")
            )))
        }
        _ => {
            m.insert("name".into(), name);
        }
    }
    let ns = old_meta.get("namespace").cloned();
    match (m.get("namespace").and_then(Value::as_str), &ns) {
        (Some(given), Some(Value::String(was))) if !given.is_empty() && given != was => {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ))
        }
        _ => {}
    }
    // As upstream's BeforeUpdate: a missing uid is the stored one (a different one fails
    // validation); timestamps, the grace period and the generation are the server's.
    if m.get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        if let Some(uid) = old_meta.get("uid") {
            m.insert("uid".into(), uid.clone());
        }
    }
    for k in [
        "namespace",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    m.remove("managedFields");
    m.remove("selfLink");
    if res.has(super::resources::Sub::Status) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    Ok(())
}

/// One more than the stored object's generation: the spec changed.
pub fn bump_generation(old: &Value, new: &mut Value) {
    let g = meta(old)
        .get("generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        + 1;
    meta_mut(new).insert("generation".into(), json!(g));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::find;

    #[test]
    fn create_sets_system_metadata_and_generates_names() {
        let res = find("apps", "v1", "deployments").expect("deployments");
        let mut obj =
            json!({"metadata": {"generateName": "web-", "resourceVersion": "5"}, "spec": {}});
        prepare_create(res, &mut obj, Some("prod")).expect("prepare");
        let m = meta(&obj);
        let name = m["name"].as_str().expect("name");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(m["namespace"], "prod");
        assert_eq!(m["generation"], 1);
        assert!(m.get("resourceVersion").is_none());
        assert_eq!(obj["kind"], "Deployment");
        let mut wrong =
            json!({"apiVersion": "v1", "kind": "Deployment", "metadata": {"name": "x"}});
        assert!(prepare_create(res, &mut wrong, Some("prod")).is_err());
    }

    #[test]
    fn stored_bytes_take_the_resource_version_without_a_parse() {
        for obj in [
            json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "y"}}),
            json!({"metadata": {}}),
        ] {
            let bytes = to_bytes(&obj).expect("bytes");
            let spliced: Value =
                serde_json::from_slice(&with_rv(&bytes, 42).expect("splice")).expect("valid JSON");
            let mut want = obj.clone();
            set_rv(&mut want, 42);
            assert_eq!(spliced, want);
        }
        assert!(with_rv(br#"{"kind":"X"}"#, 1).is_none());
    }

    #[test]
    fn update_keeps_server_metadata_and_status() {
        let res = find("apps", "v1", "deployments").expect("deployments");
        let old = json!({"metadata": {"name": "w", "uid": "u", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut same = json!({"metadata": {"name": "w", "labels": {"a": "b"}, "generation": 9}, "spec": {"replicas": 1}, "status": {"replicas": 9}});
        prepare_update(res, &old, &mut same, false).expect("update");
        assert_eq!(
            (
                meta(&same)["generation"].as_i64(),
                same["status"]["replicas"].as_i64(),
                meta(&same)["uid"].as_str()
            ),
            (Some(3), Some(1), Some("u"))
        );
        let mut other_ns = json!({"metadata": {"name": "w", "namespace": "elsewhere"}});
        let old_ns = json!({"metadata": {"name": "w", "namespace": "here"}});
        assert!(prepare_update(res, &old_ns, &mut other_ns, false).is_err());
    }
}
