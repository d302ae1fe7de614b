//! The default ClusterRoles and ClusterRoleBindings (upstream's `bootstrappolicy`), limited
//! to the resources Skiff serves, created when the API starts. Like upstream's reconciler,
//! an existing default with `rbac.authorization.kubernetes.io/autoupdate` not `"false"` gets
//! whatever rules, labels, annotations or subjects it is missing (nothing is taken away).

use std::time::Duration;

use serde_json::{json, Map, Value};
use tracing::warn;

use super::rbac::{PolicyRule, GROUP};
use super::{AUTHENTICATED, MASTERS, NODES, UNAUTHENTICATED};
use crate::api::object;
use crate::api::resources;
use crate::store::{Consistency, StoreClient, StoreError};

pub const BOOTSTRAP_LABEL: &str = "kubernetes.io/bootstrapping";
pub const BOOTSTRAP_VALUE: &str = "rbac-defaults";
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
/// The group upstream's `system:monitoring` ClusterRole is bound to.
pub const MONITORING: &str = "system:monitoring";

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `rbacv1helpers.NewRule(verbs).Groups(groups).Resources(resources)`.
fn rule(verbs: &[&str], groups: &[&str], res: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: owned(verbs),
        api_groups: owned(groups),
        resources: owned(res),
        ..Default::default()
    }
}

/// `rbacv1helpers.NewRule(verbs).URLs(urls)`.
fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: owned(verbs),
        non_resource_urls: owned(urls),
        ..Default::default()
    }
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: &[PolicyRule]) -> Value {
    let mut l = Map::new();
    l.insert(BOOTSTRAP_LABEL.into(), json!(BOOTSTRAP_VALUE));
    for (k, v) in labels {
        l.insert(k.to_string(), json!(v));
    }
    let mut obj = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": l,
            "annotations": {AUTOUPDATE: "true"},
        },
    });
    if !rules.is_empty() {
        obj["rules"] = rules.iter().map(PolicyRule::to_json).collect();
    }
    obj
}

fn aggregated(name: &str, labels: &[(&str, &str)], selector_label: &str) -> Value {
    let mut obj = cluster_role(name, labels, &[]);
    obj["aggregationRule"] =
        json!({"clusterRoleSelectors": [{"matchLabels": {selector_label: "true"}}]});
    obj
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let core = &[""];
    vec![
        // A "root" role which can do absolutely anything.
        cluster_role(
            "cluster-admin",
            &[],
            &[rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        // Just enough to discover API versions for negotiation.
        cluster_role(
            "system:discovery",
            &[],
            &[urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        // What anyone, authenticated or not, may see about the cluster.
        cluster_role(
            "system:public-info-viewer",
            &[],
            &[urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        // Enough for a user to learn about themselves.
        cluster_role(
            "system:basic-user",
            &[],
            &[
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        // For servers that check their callers through the cluster (TokenReview, SAR).
        cluster_role(
            "system:auth-delegator",
            &[],
            &[
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            &[urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
        // Namespace-level admin: edit plus granting permissions within the namespace.
        aggregated("admin", &[], AGGREGATE_TO_ADMIN),
        // Namespace-level editor: every user-level action, no status or policy.
        aggregated("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        // Namespace-level viewer: read-only access to non-escalating resources.
        aggregated("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            &[rule(READ_WRITE, &[GROUP], &["roles", "rolebindings"])],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            &[
                rule(READ, core, &["pods/exec", "secrets"]),
                rule(&["impersonate"], core, &["serviceaccounts"]),
                rule(WRITE, core, &["pods", "pods/exec"]),
                rule(&["create"], core, &["pods/eviction"]),
                rule(
                    WRITE,
                    core,
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "secrets",
                        "serviceaccounts",
                        "services",
                    ],
                ),
                rule(&["create"], core, &["serviceaccounts/token"]),
                rule(
                    WRITE,
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                rule(WRITE, &["batch"], &["jobs", "cronjobs"]),
                rule(WRITE, &["networking.k8s.io"], &["ingresses"]),
                rule(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            &[
                rule(
                    READ,
                    core,
                    &[
                        "pods",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "configmaps",
                    ],
                ),
                rule(
                    READ,
                    core,
                    &["events", "pods/status", "namespaces/status", "pods/log"],
                ),
                // Reading namespaces at namespace scope means reading *this* namespace.
                rule(READ, core, &["namespaces"]),
                rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                    ],
                ),
                rule(
                    READ,
                    &["batch"],
                    &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
                ),
                rule(
                    READ,
                    &["networking.k8s.io"],
                    &["ingresses", "ingresses/status"],
                ),
            ],
        ),
        // What every node agent needs; the node authorizer narrows the per-object verbs to
        // the node's own objects, and grants Secrets, ConfigMaps and claims of its pods.
        cluster_role(
            "system:node",
            &[],
            &[
                rule(
                    READ,
                    core,
                    &[
                        "nodes",
                        "pods",
                        "services",
                        "endpoints",
                        "namespaces",
                        "persistentvolumes",
                    ],
                ),
                rule(&["list", "watch"], core, &["persistentvolumeclaims"]),
                rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
                rule(
                    READ,
                    &["networking.k8s.io"],
                    &["ingresses", "ingressclasses"],
                ),
                rule(&["create", "patch", "update"], core, &["events"]),
                rule(
                    &["create", "patch", "update"],
                    &["events.k8s.io"],
                    &["events"],
                ),
                // The node's local-path provisioner.
                rule(
                    &["create", "update", "patch", "delete"],
                    core,
                    &["persistentvolumes"],
                ),
                rule(
                    &["update", "patch"],
                    &["networking.k8s.io"],
                    &["ingresses/status"],
                ),
                rule(
                    &[
                        "create", "delete", "get", "list", "patch", "update", "watch",
                    ],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(&["create"], core, &["nodes"]),
                rule(
                    &["get", "update", "patch"],
                    core,
                    &["nodes", "nodes/status"],
                ),
                rule(&["update", "patch", "delete"], core, &["pods"]),
                rule(&["update", "patch"], core, &["pods/status"]),
                rule(&["create"], core, &["pods/eviction"]),
            ],
        ),
    ]
}

fn cluster_role_binding(role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": GROUP, "kind": "Group", "name": g}))
        .collect();
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": role,
            "labels": {BOOTSTRAP_LABEL: BOOTSTRAP_VALUE},
            "annotations": {AUTOUPDATE: "true"},
        },
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The default ClusterRoleBindings (each named after its ClusterRole).
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        cluster_role_binding("cluster-admin", &[MASTERS]),
        cluster_role_binding("system:monitoring", &[MONITORING]),
        cluster_role_binding("system:discovery", &[AUTHENTICATED]),
        cluster_role_binding("system:basic-user", &[AUTHENTICATED]),
        cluster_role_binding(
            "system:public-info-viewer",
            &[AUTHENTICATED, UNAUTHENTICATED],
        ),
        cluster_role_binding("system:node", &[NODES]),
    ]
}

/// Adds to `existing` what `expected` has and it lacks; `None` when nothing is missing or
/// the object opted out of updates (autoupdate "false") or binds another role.
fn reconcile(existing: &Value, expected: &Value) -> Option<Value> {
    let autoupdate = existing
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str);
    if autoupdate == Some("false") {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let Some(want) = expected
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let meta = object::meta_mut(&mut out);
        if !meta.get(field).is_some_and(Value::is_object) {
            meta.insert(field.into(), json!({}));
        }
        if let Some(have) = meta.get_mut(field).and_then(Value::as_object_mut) {
            for (k, v) in want {
                if !have.contains_key(k) {
                    have.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
    }
    for list in ["rules", "subjects"] {
        let Some(want) = expected.get(list).and_then(Value::as_array) else {
            continue;
        };
        let have = out
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut merged = have.clone();
        for w in want {
            let present = if list == "rules" {
                let w = PolicyRule::from_json(w);
                have.iter().any(|h| PolicyRule::from_json(h) == w)
            } else {
                have.contains(w)
            };
            if !present {
                merged.push(w.clone());
                changed = true;
            }
        }
        out[list] = json!(merged);
    }
    if let Some(want) = expected.get("aggregationRule") {
        let have = out
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut merged = have.clone();
        for s in want
            .get("clusterRoleSelectors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !have.contains(s) {
                merged.push(s.clone());
                changed = true;
            }
        }
        out["aggregationRule"] = json!({"clusterRoleSelectors": merged});
    }
    if let (Some(a), Some(b)) = (existing.get("roleRef"), expected.get("roleRef")) {
        if a != b {
            // Upstream recreates such a binding; an edited default is left as it is here.
            return None;
        }
    }
    changed.then_some(out)
}

/// Creates one default object, or completes an existing one; false when the store is not
/// taking writes yet (try again).
async fn ensure(store: &StoreClient, plural: &str, expected: &Value) -> bool {
    let Some(res) = resources::find(GROUP, "v1", plural) else {
        return true;
    };
    let name = object::name_of(expected).to_string();
    let key = res.key(None, &name);
    let retry = |e: &StoreError| e.is_retryable() || matches!(e, StoreError::Conflict { .. });
    match store.get(&key, Consistency::Linearizable).await {
        Err(e) if retry(&e) => return false,
        Err(e) => {
            warn!("default {plural} {name}: {e}");
            return true;
        }
        Ok(Some(kv)) => {
            let Ok(existing) = serde_json::from_slice::<Value>(&kv.value) else {
                return true;
            };
            let Some(updated) = reconcile(&existing, expected) else {
                return true;
            };
            let Ok(bytes) = object::to_bytes(&updated) else {
                return true;
            };
            return match store.update(&key, bytes, Some(kv.mod_revision)).await {
                Ok(_) => true,
                Err(e) if retry(&e) => false,
                Err(e) => {
                    warn!("updating default {plural} {name}: {e}");
                    true
                }
            };
        }
        Ok(None) => {}
    }
    let mut obj = expected.clone();
    if let Err(e) = object::prepare_create(res, &mut obj, None) {
        warn!("default {plural} {name}: {e}");
        return true;
    }
    let Ok(bytes) = object::to_bytes(&obj) else {
        return true;
    };
    match store.create(&key, bytes).await {
        Ok(_) => true,
        // Another server created it meanwhile: look again (and complete it).
        Err(StoreError::AlreadyExists { .. }) => false,
        Err(e) if retry(&e) => false,
        Err(e) => {
            warn!("creating default {plural} {name}: {e}");
            true
        }
    }
}

/// Creates the default ClusterRoles and ClusterRoleBindings if missing (and completes
/// existing ones); retried until the store takes writes.
pub async fn bootstrap(store: StoreClient) {
    let objects = cluster_roles()
        .into_iter()
        .map(|o| ("clusterroles", o))
        .chain(
            cluster_role_bindings()
                .into_iter()
                .map(|o| ("clusterrolebindings", o)),
        );
    for (plural, obj) in objects {
        let mut attempts = 0u32;
        while !ensure(&store, plural, &obj).await {
            attempts += 1;
            let pause = if attempts < 50 { 200 } else { 2000 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::rbac::{authorize, RbacSnapshot};
    use crate::api::auth::{Attributes, Decision, UserInfo};

    fn defaults() -> RbacSnapshot {
        let objs: Vec<Value> = cluster_roles()
            .into_iter()
            .chain(cluster_role_bindings())
            .collect();
        RbacSnapshot::from_objects(&objs)
    }

    fn req(user: &UserInfo, verb: &str, group: &str, resource: &str, sub: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "default".into(),
            name: "x".into(),
            path: String::new(),
        }
    }

    fn path(user: &UserInfo, p: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_grant_like_upstream() {
        let snap = defaults();
        let admin = UserInfo {
            username: "admin".into(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
            ..Default::default()
        };
        let alice = UserInfo {
            username: "alice".into(),
            groups: vec![AUTHENTICATED.into()],
            ..Default::default()
        };
        let anon = UserInfo::anonymous();
        let allow = |a: &Attributes| authorize(a, &snap) == Decision::Allow;
        assert!(allow(&req(&admin, "create", "", "pods", "")));
        assert!(allow(&req(
            &admin,
            "delete",
            "apps",
            "deployments",
            "scale"
        )));
        assert!(allow(&path(&admin, "/metrics")));
        assert!(!allow(&req(&alice, "create", "", "pods", "")));
        assert!(allow(&req(
            &alice,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            ""
        )));
        assert!(allow(&req(
            &alice,
            "create",
            "authentication.k8s.io",
            "selfsubjectreviews",
            ""
        )));
        assert!(allow(&path(&alice, "/apis/apps/v1")));
        assert!(!allow(&path(&alice, "/metrics")));
        assert!(allow(&path(&anon, "/version")));
        assert!(allow(&path(&anon, "/healthz")));
        assert!(!allow(&path(&anon, "/apis")));
        assert!(!allow(&req(
            &anon,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            ""
        )));
        let node = UserInfo {
            username: "system:node:n1".into(),
            groups: vec![NODES.into(), AUTHENTICATED.into()],
            ..Default::default()
        };
        assert!(allow(&req(&node, "patch", "", "nodes", "status")));
        assert!(allow(&req(&node, "list", "", "persistentvolumeclaims", "")));
        assert!(!allow(&req(&node, "get", "", "persistentvolumeclaims", "")));
        assert!(!allow(&req(&node, "get", "", "secrets", "")));
        assert!(allow(&req(&node, "create", "", "pods", "eviction")));
    }

    #[test]
    fn admin_edit_view_aggregate() {
        let snap = defaults();
        let n = |r: &str| snap.cluster_role_rules(r).map(<[_]>::len).unwrap_or(0);
        assert!(n("view") > 0);
        assert!(n("edit") > n("view"));
        assert!(n("admin") > n("edit"));
        let has = |role: &str, verb: &str, group: &str, res: &str| {
            let a = Attributes {
                verb: verb.into(),
                resource_request: true,
                api_group: group.into(),
                resource: res.split('/').next().unwrap_or("").into(),
                subresource: res.split('/').nth(1).unwrap_or("").into(),
                ..Default::default()
            };
            snap.cluster_role_rules(role)
                .unwrap_or(&[])
                .iter()
                .any(|r| r.allows(&a))
        };
        assert!(has("view", "list", "apps", "deployments"));
        assert!(!has("view", "get", "", "secrets"));
        assert!(has("edit", "get", "", "secrets"));
        assert!(has("edit", "create", "", "pods/exec"));
        assert!(!has("edit", "create", GROUP, "rolebindings"));
        assert!(has("admin", "create", GROUP, "rolebindings"));
        assert!(has("admin", "list", "batch", "jobs"));
    }

    #[test]
    fn reconcile_only_adds() {
        let want = cluster_roles().remove(0);
        let mut have = want.clone();
        assert!(reconcile(&have, &want).is_none());
        have["rules"] = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
        have["metadata"]["labels"] = json!({"mine": "yes"});
        let out = reconcile(&have, &want).expect("completed");
        assert_eq!(out["rules"].as_array().map(Vec::len), Some(3));
        assert_eq!(out["metadata"]["labels"]["mine"], "yes");
        assert_eq!(out["metadata"]["labels"][BOOTSTRAP_LABEL], BOOTSTRAP_VALUE);
        have["metadata"]["annotations"] = json!({AUTOUPDATE: "false"});
        assert!(reconcile(&have, &want).is_none());
    }
}
