//! The node authorizer (upstream's Node authorizer and NodeRestriction together): a node
//! may write only its own Node and Lease and the pods bound to it, and read the secrets,
//! config maps, claims and ServiceAccount tokens of those pods. Everything else a node may do
//! comes from RBAC (the `system:node` ClusterRole).

use serde_json::Value;

use super::{Attributes, Decision};
use crate::api::state::ApiState;
use crate::store::Consistency;

const WRITES: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

fn writes(a: &Attributes) -> bool {
    WRITES.contains(&a.verb.as_str())
}

fn deny(node: &str, a: &Attributes, why: &str) -> Decision {
    Decision::Deny(format!(
        "node '{node}' cannot {} {}{}: {why}",
        a.verb,
        a.resource,
        if a.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", a.subresource)
        }
    ))
}

pub async fn authorize(state: &ApiState, node: &str, a: &Attributes) -> Decision {
    if !a.resource_request {
        return Decision::NoOpinion;
    }
    match (a.api_group.as_str(), a.resource.as_str()) {
        ("", "nodes") if writes(a) => own(node, a, &a.name),
        ("coordination.k8s.io", "leases") if writes(a) => {
            if a.namespace != "kube-node-lease" {
                return deny(node, a, "nodes write leases only in kube-node-lease");
            }
            own(node, a, &a.name)
        }
        ("", "pods") => pods(state, node, a).await,
        ("", "persistentvolumes") if writes(a) => volumes(state, node, a).await,
        // The local-path provisioner on every node follows all claims: RBAC's system:node
        // grants list and watch of claims; single reads and secrets stay per pod.
        ("", "persistentvolumeclaims") if matches!(a.verb.as_str(), "list" | "watch") => {
            Decision::NoOpinion
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims") => {
            referenced(state, node, a).await
        }
        ("", "serviceaccounts") if a.subresource == "token" && a.verb == "create" => {
            referenced(state, node, a).await
        }
        _ => Decision::NoOpinion,
    }
}

/// Writes to a node-named object (Node, Lease): only the node's own. A create names no
/// object in the path; RBAC decides it and the name is checked on admission upstream.
fn own(node: &str, a: &Attributes, name: &str) -> Decision {
    if name.is_empty() && a.verb == "create" {
        return Decision::NoOpinion;
    }
    if name == node {
        Decision::Allow
    } else {
        deny(node, a, "not its own")
    }
}

async fn load(state: &ApiState, key: &str) -> Option<Value> {
    let kv = state.store.get(key, Consistency::Local).await.ok()??;
    serde_json::from_slice(&kv.value).ok()
}

/// PersistentVolumes (the node's local-path provisioner): only those whose node affinity
/// selects this node alone. A create names none in the path: NodeRestriction checks its body.
async fn volumes(state: &ApiState, node: &str, a: &Attributes) -> Decision {
    if a.name.is_empty() {
        return if a.verb == "create" {
            Decision::NoOpinion
        } else {
            deny(node, a, "nodes change volumes one at a time")
        };
    }
    let key = crate::api::registry::core::persistentvolume::RESOURCE.key(None, &a.name);
    match load(state, &key).await {
        Some(pv) if super::node_restriction::pv_is_nodes(&pv, node) => Decision::NoOpinion,
        Some(_) => deny(
            node,
            a,
            "the volume's node affinity does not select this node alone",
        ),
        None if a.verb == "delete" => Decision::NoOpinion,
        None => deny(node, a, "no such volume"),
    }
}

async fn pods(state: &ApiState, node: &str, a: &Attributes) -> Decision {
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    if read && a.subresource.is_empty() {
        return Decision::NoOpinion;
    }
    if a.name.is_empty() {
        return deny(node, a, "nodes change pods one at a time");
    }
    if a.subresource == "binding" {
        return deny(node, a, "nodes do not schedule");
    }
    let pod = load(state, &format!("/registry/pods/{}/{}", a.namespace, a.name)).await;
    match pod {
        Some(p) if p["spec"]["nodeName"].as_str() == Some(node) => Decision::Allow,
        Some(_) => deny(node, a, "the pod is not bound to this node"),
        // Deleting a pod that is gone is harmless (404 follows); anything else is refused.
        None if a.verb == "delete" => Decision::Allow,
        None => deny(node, a, "no such pod"),
    }
}

/// Reads of secrets, config maps and claims, and ServiceAccount tokens, that a pod bound to
/// this node uses.
async fn referenced(state: &ApiState, node: &str, a: &Attributes) -> Decision {
    let allowed = match a.resource.as_str() {
        "serviceaccounts" => true,
        _ => a.verb == "get",
    };
    if !allowed || a.name.is_empty() {
        return deny(node, a, "nodes read only what their pods use, by name");
    }
    let prefix = format!("/registry/pods/{}/", a.namespace);
    let Ok(page) = state.store.list(&prefix, None, 0, Consistency::Local).await else {
        return deny(node, a, "pods unavailable");
    };
    let uses = page.kvs.iter().any(|kv| {
        serde_json::from_slice::<Value>(&kv.value).is_ok_and(|p| {
            p["spec"]["nodeName"].as_str() == Some(node) && uses(&p["spec"], &a.resource, &a.name)
        })
    });
    if uses {
        Decision::Allow
    } else {
        deny(node, a, "no pod bound to this node uses it")
    }
}

fn names<'a>(v: &'a Value, path: &[&str]) -> impl Iterator<Item = &'a str> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().into_iter()
}

/// Whether a pod spec refers to `resource` `name`.
pub fn uses(spec: &Value, resource: &str, name: &str) -> bool {
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let containers: Vec<Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| arr(&spec[*k]))
        .collect();
    let mut refs: Vec<String> = Vec::new();
    match resource {
        "serviceaccounts" => {
            refs.push(
                spec["serviceAccountName"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string(),
            );
        }
        "secrets" | "configmaps" => {
            let (vol, vol_key, env_key, from_key) = if resource == "secrets" {
                ("secret", "secretName", "secretKeyRef", "secretRef")
            } else {
                ("configMap", "name", "configMapKeyRef", "configMapRef")
            };
            for v in arr(&spec["volumes"]) {
                refs.extend(names(&v, &[vol, vol_key]).map(String::from));
                for s in arr(&v["projected"]["sources"]) {
                    refs.extend(names(&s, &[vol, "name"]).map(String::from));
                }
            }
            for c in &containers {
                for e in arr(&c["env"]) {
                    refs.extend(names(&e, &["valueFrom", env_key, "name"]).map(String::from));
                }
                for e in arr(&c["envFrom"]) {
                    refs.extend(names(&e, &[from_key, "name"]).map(String::from));
                }
            }
            if resource == "secrets" {
                for s in arr(&spec["imagePullSecrets"]) {
                    refs.extend(names(&s, &["name"]).map(String::from));
                }
            }
        }
        "persistentvolumeclaims" => {
            for v in arr(&spec["volumes"]) {
                refs.extend(names(&v, &["persistentVolumeClaim", "claimName"]).map(String::from));
            }
        }
        _ => {}
    }
    refs.iter().any(|r| r == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_references() {
        let spec = json!({
            "serviceAccountName": "robot",
            "volumes": [
                {"name": "a", "secret": {"secretName": "vol-secret"}},
                {"name": "b", "configMap": {"name": "vol-cm"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "d", "projected": {"sources": [{"secret": {"name": "proj"}}]}}
            ],
            "containers": [{"name": "c", "env": [
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}
            ], "envFrom": [{"configMapRef": {"name": "from-cm"}}]}],
            "imagePullSecrets": [{"name": "pull"}]
        });
        for s in ["vol-secret", "proj", "env-secret", "pull"] {
            assert!(uses(&spec, "secrets", s), "{s}");
        }
        assert!(!uses(&spec, "secrets", "vol-cm"));
        assert!(uses(&spec, "configmaps", "vol-cm"));
        assert!(uses(&spec, "configmaps", "from-cm"));
        assert!(uses(&spec, "persistentvolumeclaims", "data"));
        assert!(uses(&spec, "serviceaccounts", "robot"));
        assert!(!uses(&spec, "serviceaccounts", "default"));
        assert!(uses(&json!({}), "serviceaccounts", "default"));
    }
}
