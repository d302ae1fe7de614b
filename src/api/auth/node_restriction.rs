//! NodeRestriction on what a node writes (the authorizer in `node.rs` decides which objects it
//! may touch; this checks the bodies): its own Node and Lease only; on its Node, only the
//! labels upstream lets a kubelet set, never a change of taints, and once registered never
//! other addresses or another kubelet port (the API server dials them for logs and exec);
//! PersistentVolumes only when their node affinity names it; Ingress status only with
//! addresses of registered nodes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::UserInfo;
use crate::api::registry::coordination::lease as leases;
use crate::api::registry::core::{node as nodes, persistentvolume as pvs};
use crate::api::registry::networking::ingress as ingresses;
use crate::api::request::Ctx;
use crate::api::resources::Resource;
use crate::api::status::ApiError;
use crate::store::Consistency;

/// Labels a kubelet may set on its Node in the kubernetes.io and k8s.io namespaces (upstream's
/// `kubeletapis.IsKubeletLabel`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_domain(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

/// Whether a node may set or change the label `key` on itself.
fn node_may_set(key: &str) -> bool {
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    if in_domain(namespace, "node-restriction.kubernetes.io") {
        return false;
    }
    let reserved = in_domain(namespace, "kubernetes.io") || in_domain(namespace, "k8s.io");
    !reserved
        || KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|d| in_domain(namespace, d))
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(|l| serde::Deserialize::deserialize(l).ok())
        .unwrap_or_default()
}

/// The labels set, changed or removed between `old` and `new` that a node may not touch.
fn forbidden_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    let (n, o) = (labels(new), old.map(labels).unwrap_or_default());
    let keys: BTreeSet<&String> = n.keys().chain(o.keys()).collect();
    keys.into_iter()
        .filter(|k| n.get(*k) != o.get(*k) && !node_may_set(k))
        .cloned()
        .collect()
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn refuse(what: &str, name: &str, why: String) -> ApiError {
    ApiError::Forbidden(format!("{what} {name:?} is forbidden: {why}"))
}

/// The hostnames a PersistentVolume's required node affinity selects
/// (`kubernetes.io/hostname In [...]`, as the local-path provisioner writes it).
fn pv_nodes(pv: &Value) -> Vec<&str> {
    pv.pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|t| t["matchExpressions"].as_array().into_iter().flatten())
        .filter(|e| e["key"] == "kubernetes.io/hostname" && e["operator"] == "In")
        .flat_map(|e| e["values"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect()
}

/// Whether a PersistentVolume is this node's: its affinity selects this node and no other.
pub fn pv_is_nodes(pv: &Value, node: &str) -> bool {
    let names = pv_nodes(pv);
    !names.is_empty() && names.iter().all(|n| *n == node)
}

/// NodeRestriction on create: a node creates only its own Node (with labels it may set) and
/// Lease, and PersistentVolumes bound to itself.
pub fn admit_create(user: &UserInfo, res: &Resource, obj: &Value) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let name = name_of(obj);
    if std::ptr::eq(res, &nodes::RESOURCE) {
        if name != node {
            return Err(refuse(
                "nodes",
                name,
                format!("node {node:?} is not allowed to modify node {name:?}"),
            ));
        }
        let bad = forbidden_labels(obj, None);
        if !bad.is_empty() {
            return Err(refuse(
                "nodes",
                name,
                format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    bad.join(", ")
                ),
            ));
        }
    }
    if std::ptr::eq(res, &leases::RESOURCE) && name != node {
        return Err(refuse(
            "leases",
            name,
            format!("can only access node lease with the same name as the requesting node, not {name:?}"),
        ));
    }
    if std::ptr::eq(res, &pvs::RESOURCE) && !pv_is_nodes(obj, node) {
        return Err(refuse(
            "persistentvolumes",
            name,
            format!("node {node:?} may only create persistent volumes whose node affinity selects it alone"),
        ));
    }
    Ok(())
}

/// NodeRestriction on an update of `old` to `new` (`status`: through the status subresource).
pub async fn admit_update(
    ctx: &Ctx<'_>,
    old: &Value,
    new: &Value,
    status: bool,
) -> Result<(), ApiError> {
    let user = UserInfo::of(ctx.req);
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let res = ctx.res();
    let name = name_of(new);
    if std::ptr::eq(res, &nodes::RESOURCE) {
        return node_update(node, old, new, status);
    }
    if std::ptr::eq(res, &pvs::RESOURCE) && !(pv_is_nodes(old, node) && pv_is_nodes(new, node)) {
        return Err(refuse(
            "persistentvolumes",
            name,
            format!("node {node:?} may only change persistent volumes whose node affinity selects it alone"),
        ));
    }
    if std::ptr::eq(res, &ingresses::RESOURCE) && status {
        let known = node_addresses(ctx).await?;
        let entries = new
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let foreign = entries.iter().any(|e| {
            e.get("hostname").is_some_and(|h| !h.is_null())
                || !e["ip"].as_str().is_some_and(|ip| known.contains(ip))
        });
        if foreign {
            return Err(refuse(
                "ingresses",
                name,
                format!("node {node:?} may only publish the addresses of registered nodes"),
            ));
        }
    }
    Ok(())
}

fn node_update(node: &str, old: &Value, new: &Value, status: bool) -> Result<(), ApiError> {
    let name = name_of(new);
    let refused = |why: String| Err(refuse("nodes", name, format!("node {node:?} {why}")));
    if status {
        // Registered addresses and the kubelet port stay: the API server dials them.
        for (field, what) in [
            ("/status/addresses", "addresses"),
            ("/status/daemonEndpoints", "kubelet endpoint"),
        ] {
            let before = old.pointer(field).filter(|v| !is_empty(v));
            if before.is_some_and(|b| Some(b) != new.pointer(field)) {
                return refused(format!("is not allowed to modify its {what}"));
            }
        }
        return Ok(());
    }
    let bad = forbidden_labels(new, Some(old));
    if !bad.is_empty() {
        return refused(format!(
            "is not allowed to modify labels: {}",
            bad.join(", ")
        ));
    }
    let taints = |v: &Value| v.pointer("/spec/taints").filter(|t| !is_empty(t)).cloned();
    if taints(new) != taints(old) {
        return refused("is not allowed to modify taints".into());
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    v.is_null()
        || v.as_array().is_some_and(|a| a.is_empty())
        || v.as_object().is_some_and(|o| o.is_empty())
}

/// Every address of every registered Node.
async fn node_addresses(ctx: &Ctx<'_>) -> Result<BTreeSet<String>, ApiError> {
    let prefix = nodes::RESOURCE.prefix();
    let page = ctx
        .state
        .store
        .list(&prefix, None, 0, Consistency::Local)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(page
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .flat_map(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a["address"].as_str().map(String::from))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_user(name: &str) -> UserInfo {
        UserInfo {
            username: format!("system:node:{name}"),
            groups: vec!["system:nodes".into()],
            ..Default::default()
        }
    }

    #[test]
    fn nodes_set_kubelet_labels_only() {
        assert!(node_may_set("kubernetes.io/hostname"));
        assert!(node_may_set(
            "node.kubernetes.io/exclude-from-external-load-balancers"
        ));
        assert!(node_may_set("example.com/rack"));
        assert!(node_may_set("plain"));
        assert!(!node_may_set("node-restriction.kubernetes.io/trusted"));
        assert!(!node_may_set("node-role.kubernetes.io/control-plane"));
        assert!(!node_may_set("foo.k8s.io/x"));
        let n1 = node_user("n1");
        let bad = json!({"metadata": {"name": "n1", "labels": {
            "kubernetes.io/hostname": "n1", "node-restriction.kubernetes.io/pci": "true"}}});
        let err = admit_create(&n1, &nodes::RESOURCE, &bad).expect_err("restricted label");
        assert_eq!(
            err.to_string(),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: node-restriction.kubernetes.io/pci"
        );
        let other = json!({"metadata": {"name": "n2"}});
        assert!(admit_create(&n1, &nodes::RESOURCE, &other).is_err());
        let admin = UserInfo {
            username: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert!(admit_create(&admin, &nodes::RESOURCE, &bad).is_ok());
    }

    #[test]
    fn a_node_keeps_its_taints_addresses_and_port() {
        let old = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        let mut new = old.clone();
        new["spec"]["taints"] = json!([]);
        assert!(node_update("n1", &old, &new, false)
            .expect_err("taints")
            .to_string()
            .ends_with("is not allowed to modify taints"));
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({});
        assert!(node_update("n1", &old, &new, false)
            .expect_err("labels")
            .to_string()
            .ends_with("is not allowed to modify labels: node-role.kubernetes.io/control-plane"));
        let mut new = old.clone();
        new["status"]["addresses"][0]["address"] = json!("10.0.0.9");
        assert!(node_update("n1", &old, &new, true).is_err());
        let mut new = old.clone();
        new["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = json!(6443);
        assert!(node_update("n1", &old, &new, true).is_err());
        let mut fresh = old.clone();
        fresh["status"] = json!({});
        assert!(
            node_update("n1", &fresh, &old, true).is_ok(),
            "first report"
        );
        assert!(node_update("n1", &old, &old, false).is_ok());
    }

    #[test]
    fn volumes_belong_to_the_node_their_affinity_names() {
        let pv = |nodes: &[&str]| {
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}}})
        };
        assert!(pv_is_nodes(&pv(&["n1"]), "n1"));
        assert!(!pv_is_nodes(&pv(&["n1", "n2"]), "n1"));
        assert!(!pv_is_nodes(&pv(&["n2"]), "n1"));
        assert!(!pv_is_nodes(
            &json!({"spec": {"hostPath": {"path": "/"}}}),
            "n1"
        ));
    }
}
