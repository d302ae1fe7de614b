//! Strategic merge patch for the built-in kinds: maps merge recursively, lists with a patch
//! merge key merge item by item, other lists are replaced; the directives `$patch`,
//! `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>` as kubectl
//! sends them (apply, set image, label, annotate, edit).

use serde_json::{Map, Value};

use super::status::ApiError;

enum ListStrategy {
    /// Items are objects matched by this key.
    MergeKey(&'static str),
    /// Items are scalars, merged as a set (finalizers).
    Primitive,
}

/// The patch strategy of the list at `path` (field names from the object root) of `kind`,
/// from the struct tags of the Kubernetes API types.
fn strategy(kind: &str, path: &[String]) -> Option<ListStrategy> {
    let field = path.last()?.as_str();
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    use ListStrategy::*;
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" => MergeKey("name"),
        "env" | "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims" => {
            MergeKey("name")
        }
        "volumeMounts" => MergeKey("mountPath"),
        "volumeDevices" => MergeKey("devicePath"),
        "hostAliases" | "podIPs" | "hostIPs" => MergeKey("ip"),
        "topologySpreadConstraints" => MergeKey("topologyKey"),
        "ownerReferences" if parent == Some("metadata") => MergeKey("uid"),
        "finalizers" if parent == Some("metadata") => Primitive,
        "conditions" => MergeKey("type"),
        "addresses" if kind == "Node" => MergeKey("type"),
        "ports" if kind == "Service" && parent == Some("spec") => MergeKey("port"),
        "ports"
            if matches!(
                parent,
                Some("containers" | "initContainers" | "ephemeralContainers")
            ) =>
        {
            MergeKey("containerPort")
        }
        _ => return None,
    })
}

/// How a list merges, as OpenAPI says it to clients (`x-kubernetes-patch-strategy` and
/// `x-kubernetes-patch-merge-key`): kubectl 1.29+ computes its patches from that, so it must
/// say what `merge` does.
pub fn patch_extensions(
    kind: &str,
    path: &[String],
) -> Option<(&'static str, Option<&'static str>)> {
    let field = path.last().map(String::as_str);
    // Upstream's `retainKeys`: the volume source and deployment strategy of the last apply.
    let retain = field == Some("volumes");
    Some(match strategy(kind, path)? {
        ListStrategy::MergeKey(key) if retain => ("merge,retainKeys", Some(key)),
        ListStrategy::MergeKey(key) => ("merge", Some(key)),
        ListStrategy::Primitive => ("merge", None),
    })
}

/// Maps whose old keys an apply clears (upstream's `patchStrategy:"retainKeys"` on a
/// Deployment's strategy: switching to Recreate drops `rollingUpdate`).
pub fn retains_keys(kind: &str, path: &[String]) -> bool {
    kind == "Deployment" && path == ["spec", "strategy"]
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Applies `patch` to `original` (an object of `kind`).
pub fn merge(kind: &str, original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut path = Vec::new();
    match merge_value(kind, &mut path, Some(original), patch)? {
        Some(v) => Ok(v),
        None => Err(bad(
            "a strategic merge patch cannot delete the whole object",
        )),
    }
}

/// Merges `patch` into `original`; `None` means "delete this value".
fn merge_value(
    kind: &str,
    path: &mut Vec<String>,
    original: Option<&Value>,
    patch: &Value,
) -> Result<Option<Value>, ApiError> {
    match patch {
        Value::Null => Ok(None),
        Value::Object(p) => {
            let empty = Map::new();
            let orig = original.and_then(Value::as_object).unwrap_or(&empty);
            merge_map(kind, path, orig, p)
        }
        other => Ok(Some(other.clone())),
    }
}

fn merge_map(
    kind: &str,
    path: &mut Vec<String>,
    orig: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Value>, ApiError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut out = patch.clone();
            out.remove("$patch");
            return Ok(Some(Value::Object(out)));
        }
        Some("merge") | None => {}
        Some(other) => return Err(bad(format!("unknown patch directive $patch: {other}"))),
    }
    let mut out = orig.clone();
    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let order = v
                .as_array()
                .ok_or_else(|| bad(format!("{k} must be a list")))?;
            orders.push((field, order));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v
                .as_array()
                .ok_or_else(|| bad(format!("{k} must be a list")))?;
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|item| !gone.contains(item));
            }
            continue;
        }
        path.push(k.clone());
        let merged = match v {
            Value::Array(items) => merge_list(kind, path, out.get(k), items)?,
            _ => merge_value(kind, path, out.get(k), v)?,
        };
        path.pop();
        match merged {
            Some(m) => out.insert(k.clone(), m),
            None => out.remove(k),
        };
    }
    if let Some(keep) = patch.get("$retainKeys") {
        let keep = keep
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list"))?;
        out.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k.as_str())));
    }
    for (field, order) in orders {
        path.push(field.to_string());
        let key = match strategy(kind, path) {
            Some(ListStrategy::MergeKey(key)) => Some(key),
            _ => None,
        };
        path.pop();
        if let Some(Value::Array(list)) = out.get_mut(field) {
            reorder(list, order, key);
        }
    }
    Ok(Some(Value::Object(out)))
}

fn merge_list(
    kind: &str,
    path: &mut Vec<String>,
    original: Option<&Value>,
    patch: &[Value],
) -> Result<Option<Value>, ApiError> {
    let replace = patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let orig: Vec<Value> = original
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let strategy = strategy(kind, path);
    if replace || strategy.is_none() {
        let items = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(Some(Value::Array(items)));
    }
    let mut out = orig;
    match strategy {
        Some(ListStrategy::Primitive) => {
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
        }
        Some(ListStrategy::MergeKey(key)) => {
            for item in patch {
                let id = item.get(key).ok_or_else(|| {
                    bad(format!(
                        "a list item of {} lacks its merge key {key}",
                        path.join(".")
                    ))
                })?;
                let pos = out.iter().position(|o| o.get(key) == Some(id));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(p) = pos {
                        out.remove(p);
                    }
                    continue;
                }
                let merged = merge_value(kind, path, pos.map(|p| &out[p]), item)?;
                match (pos, merged) {
                    (Some(p), Some(m)) => out[p] = m,
                    (Some(p), None) => {
                        out.remove(p);
                    }
                    (None, Some(m)) => out.push(m),
                    (None, None) => {}
                }
            }
        }
        None => {}
    }
    Ok(Some(Value::Array(out)))
}

/// Orders `list` as `order` names its items (by merge key, or by value for scalars); items
/// not named keep their relative order after the named ones.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let id = |v: &Value| match key {
        Some(k) => v.get(k).cloned(),
        None => Some(v.clone()),
    };
    let rank = |v: &Value| {
        let i = id(v);
        order
            .iter()
            .position(|o| i.is_some() && id(o) == i)
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubectl_apply_patch_removes_container_env_finalizer_and_switches_volume() {
        let live = json!({
            "metadata": {"finalizers": ["example.com/a", "example.com/b"]},
            "spec": {"template": {"spec": {
                "containers": [
                    {"name": "nginx", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "busybox"}
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}}]
            }}}
        });
        // A real patch from kubectl 1.33 (see the kubectl compatibility note).
        let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/b"],"$setElementOrder/finalizers":["example.com/a"]},"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"$setElementOrder/volumes":[{"name":"cfg"}],"containers":[{"$setElementOrder/env":[{"name":"B"}],"env":[{"$patch":"delete","name":"A"}],"name":"nginx"},{"$patch":"delete","name":"sidecar"}],"volumes":[{"$retainKeys":["name","secret"],"configMap":null,"name":"cfg","secret":{"secretName":"s"}}]}}}});
        let out = merge("Deployment", &live, &patch).expect("merge");
        assert_eq!(out["metadata"]["finalizers"], json!(["example.com/a"]));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"],
            json!([{"name": "nginx", "image": "nginx:1", "env": [{"name": "B", "value": "2"}]}])
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name": "cfg", "secret": {"secretName": "s"}}])
        );
    }

    #[test]
    fn set_image_merges_by_name_and_atomic_lists_are_replaced() {
        let live = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "x:1", "args": ["1", "2"]}, {"name": "b", "image": "y:1"}],
            "tolerations": [{"key": "k1"}]
        }}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "y:2"}, {"name": "a", "args": ["3"]}],
            "tolerations": [{"key": "k2"}]
        }}}});
        let out = merge("Deployment", &live, &patch).expect("merge");
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0],
            json!({"name": "a", "image": "x:1", "args": ["3"]})
        );
        assert_eq!(spec["containers"][1]["image"], "y:2");
        assert_eq!(spec["tolerations"], json!([{"key": "k2"}]));
    }

    #[test]
    fn retain_keys_switches_strategy_and_null_deletes() {
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "paused": true}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}, "paused": null}});
        let out = merge("Deployment", &live, &patch).expect("merge");
        assert_eq!(out["spec"], json!({"strategy": {"type": "Recreate"}}));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let live = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
        let out = merge("Service", &live, &patch).expect("merge");
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
    }
}
