//! `Table` responses (meta.k8s.io/v1) for `kubectl get`, with upstream's printer columns.

use serde_json::{json, Value};

use super::resources::Resource;

type Cell = Value;

struct Col {
    name: &'static str,
    ty: &'static str,
    /// Shown only with `-o wide`.
    wide: bool,
}

const fn col(name: &'static str, ty: &'static str) -> Col {
    Col {
        name,
        ty,
        wide: false,
    }
}

const fn wide(name: &'static str) -> Col {
    Col {
        name,
        ty: "string",
        wide: true,
    }
}

fn columns(kind: &str) -> Vec<Col> {
    let name = col("Name", "string");
    let age = col("Age", "string");
    match kind {
        "Pod" => vec![
            name,
            col("Ready", "string"),
            col("Status", "string"),
            col("Restarts", "string"),
            age,
            wide("IP"),
            wide("Node"),
            wide("Nominated Node"),
            wide("Readiness Gates"),
        ],
        "Deployment" => vec![
            name,
            col("Ready", "string"),
            col("Up-to-date", "integer"),
            col("Available", "integer"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "ReplicaSet" => vec![
            name,
            col("Desired", "integer"),
            col("Current", "integer"),
            col("Ready", "integer"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "DaemonSet" => vec![
            name,
            col("Desired", "integer"),
            col("Current", "integer"),
            col("Ready", "integer"),
            col("Up-to-date", "integer"),
            col("Available", "integer"),
            col("Node Selector", "string"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "StatefulSet" => vec![
            name,
            col("Ready", "string"),
            age,
            wide("Containers"),
            wide("Images"),
        ],
        "Service" => vec![
            name,
            col("Type", "string"),
            col("Cluster-IP", "string"),
            col("External-IP", "string"),
            col("Port(s)", "string"),
            age,
            wide("Selector"),
        ],
        "Endpoints" => vec![name, col("Endpoints", "string"), age],
        "Node" => vec![
            name,
            col("Status", "string"),
            col("Roles", "string"),
            age,
            col("Version", "string"),
            wide("Internal-IP"),
            wide("External-IP"),
            wide("OS-Image"),
            wide("Kernel-Version"),
            wide("Container-Runtime"),
            // Not in upstream's printer: the overlay's subnet per node is what lab users check.
            wide("Pod-CIDR"),
        ],
        "Namespace" => vec![name, col("Status", "string"), age],
        "PersistentVolumeClaim" => vec![
            name,
            col("Status", "string"),
            col("Volume", "string"),
            col("Capacity", "string"),
            col("Access Modes", "string"),
            col("StorageClass", "string"),
            col("VolumeAttributesClass", "string"),
            age,
            wide("VolumeMode"),
        ],
        "PersistentVolume" => vec![
            name,
            col("Capacity", "string"),
            col("Access Modes", "string"),
            col("Reclaim Policy", "string"),
            col("Status", "string"),
            col("Claim", "string"),
            col("StorageClass", "string"),
            col("VolumeAttributesClass", "string"),
            col("Reason", "string"),
            age,
            wide("VolumeMode"),
        ],
        "StorageClass" => vec![
            name,
            col("Provisioner", "string"),
            col("ReclaimPolicy", "string"),
            col("VolumeBindingMode", "string"),
            col("AllowVolumeExpansion", "string"),
            age,
        ],
        "Event" => vec![
            col("Last Seen", "string"),
            col("Type", "string"),
            col("Reason", "string"),
            col("Object", "string"),
            col("Message", "string"),
        ],
        "Job" => vec![
            name,
            col("Status", "string"),
            col("Completions", "string"),
            col("Duration", "string"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "CronJob" => vec![
            name,
            col("Schedule", "string"),
            col("Timezone", "string"),
            col("Suspend", "boolean"),
            col("Active", "integer"),
            col("Last Schedule", "string"),
            age,
            wide("Containers"),
            wide("Images"),
            wide("Selector"),
        ],
        "Ingress" => vec![
            name,
            col("Class", "string"),
            col("Hosts", "string"),
            col("Address", "string"),
            col("Ports", "string"),
            age,
        ],
        "ConfigMap" => vec![name, col("Data", "integer"), age],
        "Secret" => vec![name, col("Type", "string"), col("Data", "integer"), age],
        "Role" | "ClusterRole" => vec![name, col("Created At", "date")],
        "RoleBinding" | "ClusterRoleBinding" => vec![
            name,
            col("Role", "string"),
            age,
            wide("Users"),
            wide("Groups"),
            wide("ServiceAccounts"),
        ],
        _ => vec![name, age],
    }
}

/// A binding's subjects as upstream's `SubjectsStrings`: users, groups, service accounts
/// (`namespace/name`), each joined by ", ".
fn subjects(o: &Value) -> [String; 3] {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for sub in arr(o, "/subjects") {
        let name = s(sub, "/name");
        match s(sub, "/kind") {
            "User" => users.push(name.to_string()),
            "Group" => groups.push(name.to_string()),
            "ServiceAccount" => sas.push(format!("{}/{name}", s(sub, "/namespace"))),
            _ => {}
        }
    }
    [users.join(", "), groups.join(", "), sas.join(", ")]
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

/// Upstream's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h) = (secs / 60, secs / 3600);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let d = h / 24 - (h / 24 / 365) * 365;
        if d == 0 {
            format!("{}y", h / 24 / 365)
        } else {
            format!("{}y{d}d", h / 24 / 365)
        }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn age(obj: &Value) -> String {
    age_of(s(obj, "/metadata/creationTimestamp"))
}

/// READY as `ready/desired` replicas.
fn ready_of(o: &Value) -> String {
    format!(
        "{}/{}",
        i(o, "/status/readyReplicas"),
        i(o, "/spec/replicas")
    )
}

/// A workload's row: NAME, its own columns, AGE, then the wide CONTAINERS, IMAGES (and
/// SELECTOR) columns of its pod template.
fn workload(o: &Value, name: Value, own: Vec<Value>, with_selector: bool) -> Vec<Value> {
    let (c, im) = containers_images(o, "/spec/template/spec");
    let mut row = vec![name];
    row.extend(own);
    row.extend([json!(age(o)), json!(c), json!(im)]);
    if with_selector {
        row.push(json!(selector(o)));
    }
    row
}

fn containers_images(obj: &Value, spec: &str) -> (String, String) {
    let cs = arr(obj, &format!("{spec}/containers"));
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn selector(obj: &Value) -> String {
    let mut parts: Vec<String> = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for e in arr(obj, "/spec/selector/matchExpressions") {
        let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
        let (k, op) = (s(e, "/key"), s(e, "/operator"));
        parts.push(match op {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.to_string(),
            _ => format!("!{k}"),
        });
    }
    or_none(parts.join(","))
}

fn map_selector(obj: &Value, ptr: &str) -> String {
    let parts: Vec<String> = obj
        .pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    or_none(parts.join(","))
}

fn pod_cells(o: &Value) -> Vec<Cell> {
    let statuses = arr(o, "/status/containerStatuses");
    let total = arr(o, "/spec/containers").len();
    let ready = statuses
        .iter()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let restarts: i64 = statuses.iter().map(|c| i(c, "/restartCount")).sum();
    let mut status = s(o, "/status/reason").to_string();
    if status.is_empty() {
        status = s(o, "/status/phase").to_string();
    }
    for c in statuses {
        let waiting = s(c, "/state/waiting/reason");
        let terminated = s(c, "/state/terminated/reason");
        if !waiting.is_empty() {
            status = waiting.into();
        } else if !terminated.is_empty() && status != "Succeeded" {
            status = terminated.into();
        }
    }
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        status = "Terminating".into();
    }
    let ip = s(o, "/status/podIP");
    vec![
        json!(s(o, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts.to_string()),
        json!(age(o)),
        json!(if ip.is_empty() { "<none>" } else { ip }),
        json!(or_none(s(o, "/spec/nodeName").into())),
        json!(or_none(s(o, "/status/nominatedNodeName").into())),
        json!("<none>"),
    ]
}

/// `RWO,ROX`: access modes as kubectl abbreviates them.
fn access_modes(o: &Value, path: &str) -> String {
    arr(o, path)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = arr(o, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) => format!("{}:{np}/{proto}", i(p, "/port")),
                None => format!("{}/{proto}", i(p, "/port")),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn cells(kind: &str, o: &Value) -> Vec<Cell> {
    let name = json!(s(o, "/metadata/name"));
    match kind {
        "Pod" => pod_cells(o),
        "Deployment" => workload(
            o,
            name,
            vec![
                json!(ready_of(o)),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
            ],
            true,
        ),
        "ReplicaSet" => workload(
            o,
            name,
            vec![
                json!(i(o, "/spec/replicas")),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
            ],
            true,
        ),
        "DaemonSet" => workload(
            o,
            name,
            vec![
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                json!(map_selector(o, "/spec/template/spec/nodeSelector")),
            ],
            true,
        ),
        "StatefulSet" => workload(o, name, vec![json!(ready_of(o))], false),
        "Service" => {
            let ty = s(o, "/spec/type");
            let external: Vec<String> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|x| s(x, "/ip").to_string())
                .chain(
                    arr(o, "/spec/externalIPs")
                        .iter()
                        .filter_map(Value::as_str)
                        .map(String::from),
                )
                .collect();
            let external = match (ty, external.is_empty()) {
                ("ExternalName", _) => s(o, "/spec/externalName").to_string(),
                ("LoadBalancer", true) => "<pending>".into(),
                (_, true) => "<none>".into(),
                _ => external.join(","),
            };
            vec![
                name,
                json!(ty),
                json!(or_none(s(o, "/spec/clusterIP").into())),
                json!(external),
                json!(service_ports(o)),
                json!(age(o)),
                json!(map_selector(o, "/spec/selector")),
            ]
        }
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in arr(o, "/subsets") {
                for a in arr(sub, "/addresses") {
                    for p in arr(sub, "/ports") {
                        eps.push(format!("{}:{}", s(a, "/ip"), i(p, "/port")));
                    }
                }
            }
            vec![name, json!(or_none(eps.join(","))), json!(age(o))]
        }
        "Node" => {
            let ready = arr(o, "/status/conditions")
                .iter()
                .find(|c| c["type"] == "Ready");
            let mut status = match ready.map(|c| s(c, "/status")) {
                Some("True") => "Ready".to_string(),
                _ => "NotReady".to_string(),
            };
            if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let addr = |t: &str| {
                arr(o, "/status/addresses")
                    .iter()
                    .find(|a| a["type"] == t)
                    .map(|a| s(a, "/address").to_string())
                    .unwrap_or_else(|| "<none>".into())
            };
            vec![
                name,
                json!(status),
                json!(or_none(roles.join(","))),
                json!(age(o)),
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(s(o, "/status/nodeInfo/osImage")),
                json!(s(o, "/status/nodeInfo/kernelVersion")),
                json!(s(o, "/status/nodeInfo/containerRuntimeVersion")),
                json!(or_none(s(o, "/spec/podCIDR").into())),
            ]
        }
        "Namespace" => vec![name, json!(s(o, "/status/phase")), json!(age(o))],
        "Event" => {
            let last = [
                s(o, "/lastTimestamp"),
                s(o, "/eventTime"),
                s(o, "/metadata/creationTimestamp"),
            ]
            .into_iter()
            .find(|t| !t.is_empty())
            .unwrap_or("");
            let object = format!(
                "{}/{}",
                s(o, "/involvedObject/kind").to_lowercase(),
                s(o, "/involvedObject/name")
            );
            vec![
                json!(age_of(last)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(object),
                json!(s(o, "/message")),
            ]
        }
        "Job" => {
            let (c, im) = containers_images(o, "/spec/template/spec");
            let conds = arr(o, "/status/conditions");
            let has = |t: &str| {
                conds
                    .iter()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            let status = if has("Complete") {
                "Complete"
            } else if has("Failed") {
                "Failed"
            } else if has("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let completions = format!(
                "{}/{}",
                i(o, "/status/succeeded"),
                o.pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .map_or("1".into(), |v| v.to_string())
            );
            let duration = match (
                o.pointer("/status/startTime").and_then(Value::as_str),
                o.pointer("/status/completionTime").and_then(Value::as_str),
            ) {
                (Some(st), Some(ct)) => {
                    match (st.parse::<jiff::Timestamp>(), ct.parse::<jiff::Timestamp>()) {
                        (Ok(a), Ok(b)) => human_duration(b.as_second() - a.as_second()),
                        _ => String::new(),
                    }
                }
                (Some(st), None) => age_of(st),
                _ => String::new(),
            };
            vec![
                name,
                json!(status),
                json!(completions),
                json!(duration),
                json!(age(o)),
                json!(c),
                json!(im),
                json!(selector(o)),
            ]
        }
        "CronJob" => {
            let (c, im) = containers_images(o, "/spec/jobTemplate/spec/template/spec");
            let last = s(o, "/status/lastScheduleTime");
            vec![
                name,
                json!(s(o, "/spec/schedule")),
                json!(or_none(s(o, "/spec/timeZone").into())),
                json!(o.pointer("/spec/suspend") == Some(&json!(true))),
                json!(arr(o, "/status/active").len()),
                json!(if last.is_empty() {
                    "<none>".into()
                } else {
                    age_of(last)
                }),
                json!(age(o)),
                json!(c),
                json!(im),
                json!(selector(o)),
            ]
        }
        "Ingress" => {
            let hosts: Vec<&str> = arr(o, "/spec/rules")
                .iter()
                .map(|r| s(r, "/host"))
                .map(|h| if h.is_empty() { "*" } else { h })
                .collect();
            let addrs: Vec<&str> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|x| s(x, "/ip"))
                .collect();
            let ports = if arr(o, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                json!(or_none(s(o, "/spec/ingressClassName").into())),
                json!(if hosts.is_empty() {
                    "*".into()
                } else {
                    hosts.join(",")
                }),
                json!(addrs.join(",")),
                json!(ports),
                json!(age(o)),
            ]
        }
        "PersistentVolumeClaim" => vec![
            name,
            json!(s(o, "/status/phase")),
            json!(s(o, "/spec/volumeName")),
            json!(s(o, "/status/capacity/storage")),
            json!(access_modes(o, "/status/accessModes")),
            json!(or_none(s(o, "/spec/storageClassName").into())),
            json!("<unset>"),
            json!(age(o)),
            json!(s(o, "/spec/volumeMode")),
        ],
        "PersistentVolume" => {
            let claim = match (
                s(o, "/spec/claimRef/namespace"),
                s(o, "/spec/claimRef/name"),
            ) {
                (_, "") => String::new(),
                (ns, n) => format!("{ns}/{n}"),
            };
            vec![
                name,
                json!(s(o, "/spec/capacity/storage")),
                json!(access_modes(o, "/spec/accessModes")),
                json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                json!(s(o, "/status/phase")),
                json!(claim),
                json!(s(o, "/spec/storageClassName")),
                json!("<unset>"),
                json!(s(o, "/status/reason")),
                json!(age(o)),
                json!(s(o, "/spec/volumeMode")),
            ]
        }
        "StorageClass" => {
            let default = o
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                == Some(&json!("true"));
            let shown = if default {
                format!("{} (default)", s(o, "/metadata/name"))
            } else {
                s(o, "/metadata/name").to_string()
            };
            vec![
                json!(shown),
                json!(s(o, "/provisioner")),
                json!(or_none(s(o, "/reclaimPolicy").into()).replace("<none>", "Delete")),
                json!(or_none(s(o, "/volumeBindingMode").into()).replace("<none>", "Immediate")),
                json!(o.pointer("/allowVolumeExpansion") == Some(&json!(true))),
                json!(age(o)),
            ]
        }
        "ConfigMap" => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, json!(n), json!(age(o))]
        }
        "Secret" => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![name, json!(s(o, "/type")), json!(n), json!(age(o))]
        }
        "Role" | "ClusterRole" => vec![name, json!(s(o, "/metadata/creationTimestamp"))],
        "RoleBinding" | "ClusterRoleBinding" => {
            let role = format!("{}/{}", s(o, "/roleRef/kind"), s(o, "/roleRef/name"));
            let [users, groups, sas] = subjects(o);
            vec![
                name,
                json!(role),
                json!(age(o)),
                json!(users),
                json!(groups),
                json!(sas),
            ]
        }
        _ => vec![name, json!(age(o))],
    }
}

fn column_definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .into_iter()
        .map(|c| {
            let mut d = json!({"name": c.name, "type": c.ty, "format": "", "description": c.name, "priority": if c.wide { 1 } else { 0 }});
            if c.name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect()
}

fn row(res: &Resource, obj: &Value) -> Value {
    let mut meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
    }
    json!({
        "cells": cells(res.kind, obj),
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
    })
}

pub fn for_list(res: &Resource, items: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(res.kind),
        "rows": items.iter().map(|o| row(res, o)).collect::<Vec<_>>(),
    })
}

pub fn for_object(res: &Resource, obj: &Value) -> Value {
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(json!(""));
    for_list(
        res,
        std::slice::from_ref(obj),
        json!({"resourceVersion": rv}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_rows_as_upstream() {
        let find = |p| crate::api::resources::find("rbac.authorization.k8s.io", "v1", p);
        let rb = json!({"metadata": {"name": "b", "namespace": "ns", "creationTimestamp": "2020-01-01T00:00:00Z"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "b"}, {"kind": "Group", "name": "g"}, {"kind": "ServiceAccount", "name": "s", "namespace": "ns"}]});
        let t = for_object(find("rolebindings").expect("rolebindings"), &rb);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(
            (cells[3].as_str(), cells[4].as_str(), cells[5].as_str()),
            (Some("a, b"), Some("g"), Some("ns/s"))
        );
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2020-01-01T00:00:00Z"}});
        let t = for_object(find("clusterroles").expect("clusterroles"), &role);
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(t["rows"][0]["cells"][1], "2020-01-01T00:00:00Z");
    }

    #[test]
    fn human_duration_matches_upstream() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (20 * 86400, "20d"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn deployment_row_has_ready_and_wide_columns() {
        let res = crate::api::resources::find("apps", "v1", "deployments").expect("deployments");
        let d = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "n", "image": "nginx"}]}}}, "status": {"readyReplicas": 2}});
        let t = for_object(res, &d);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(
            (cells[0].as_str(), cells[1].as_str()),
            (Some("web"), Some("2/3"))
        );
        assert_eq!(cells[7], "app=web");
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(8));
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
    }
}
