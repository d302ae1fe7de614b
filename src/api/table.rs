//! `Table` responses (meta.k8s.io/v1) for `kubectl get`: the kind's columns and cells come
//! from its strategy; the helpers here are what those printers share.

use serde_json::{json, Value};

use super::resources::Resource;

/// A `columnDefinitions` entry.
pub struct Col {
    pub name: &'static str,
    pub ty: &'static str,
    /// Shown only with `-o wide`.
    pub wide: bool,
}

pub fn name_col() -> Col {
    col("Name", "string")
}

pub fn age_col() -> Col {
    col("Age", "string")
}

pub fn name_cell(o: &Value) -> Value {
    json!(s(o, "/metadata/name"))
}

pub fn age_cell(o: &Value) -> Value {
    json!(age(o))
}

pub const fn col(name: &'static str, ty: &'static str) -> Col {
    Col {
        name,
        ty,
        wide: false,
    }
}

pub const fn wide(name: &'static str) -> Col {
    Col {
        name,
        ty: "string",
        wide: true,
    }
}

/// A binding's subjects as upstream's `SubjectsStrings`: users, groups, service accounts
/// (`namespace/name`), each joined by ", ".
pub fn subjects(o: &Value) -> [String; 3] {
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

pub fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

pub fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn or_none(v: String) -> String {
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

pub fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

pub fn age(obj: &Value) -> String {
    age_of(s(obj, "/metadata/creationTimestamp"))
}

/// READY as `ready/desired` replicas.
pub fn ready_of(o: &Value) -> String {
    format!(
        "{}/{}",
        i(o, "/status/readyReplicas"),
        i(o, "/spec/replicas")
    )
}

/// A workload's row: NAME, its own columns, AGE, then the wide CONTAINERS, IMAGES (and
/// SELECTOR) columns of its pod template.
pub fn workload(o: &Value, name: Value, own: Vec<Value>, with_selector: bool) -> Vec<Value> {
    let (c, im) = containers_images(o, "/spec/template/spec");
    let mut row = vec![name];
    row.extend(own);
    row.extend([json!(age(o)), json!(c), json!(im)]);
    if with_selector {
        row.push(json!(selector(o)));
    }
    row
}

pub fn containers_images(obj: &Value, spec: &str) -> (String, String) {
    let cs = arr(obj, &format!("{spec}/containers"));
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

pub fn selector(obj: &Value) -> String {
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

pub fn map_selector(obj: &Value, ptr: &str) -> String {
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

pub fn pod_cells(o: &Value) -> Vec<Value> {
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
pub fn access_modes(o: &Value, path: &str) -> String {
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

pub fn service_ports(o: &Value) -> String {
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

fn column_definitions(res: &Resource) -> Vec<Value> {
    res.strategy
        .columns()
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
        "cells": res.strategy.cells(obj),
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
    })
}

pub fn for_list(res: &Resource, items: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(res),
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
