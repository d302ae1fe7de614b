//! `GET /skiff/v1/prometheus-sd`: scrape targets in Prometheus' HTTP service discovery
//! format, so one `http_sd_configs` entry pointed at any API server finds every node's
//! metrics endpoint and every running pod annotated `prometheus.io/scrape: "true"`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;
use tracing::debug;

use super::path::Target;
use super::request::list::{list_objects, ListRead, Listed};
use super::request::{Ctx, Query};
use super::resources;
use super::state::ApiState;
use super::status::ApiError;
use crate::node::registration::METRICS_PORT_ANNOTATION;
use crate::store::Consistency;

const SCRAPE: &str = "prometheus.io/scrape";
const PORT: &str = "prometheus.io/port";
const PATH: &str = "prometheus.io/path";
const DEFAULT_PATH: &str = "/metrics";
/// Prometheus takes the URL path of a target from this label.
const METRICS_PATH_LABEL: &str = "__metrics_path__";

/// One entry of the HTTP SD list.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Annotation keys contain `/`, so they are looked up in the map, not by JSON pointer.
fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

fn host_port(ip: &str, port: u16) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

fn port_number(s: &str) -> Option<u16> {
    s.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

fn group(target: String, labels: Vec<(&str, &str)>) -> TargetGroup {
    TargetGroup {
        targets: vec![target],
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A node's metrics endpoint: its InternalIP and the port its agent advertises.
fn node_group(node: &Value) -> Option<TargetGroup> {
    let name = str_at(node, "/metadata/name")?;
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        })
        .and_then(|a| str_at(a, "/address"));
    let port = annotation(node, METRICS_PORT_ANNOTATION).and_then(port_number);
    let (Some(ip), Some(port)) = (ip, port) else {
        debug!(
            node = name,
            "no InternalIP or metrics port: not a scrape target"
        );
        return None;
    };
    // Node metrics ports are HTTPS (certificates of the cluster CA).
    let labels = vec![
        ("job", "skiff-nodes"),
        ("node", name),
        (METRICS_PATH_LABEL, DEFAULT_PATH),
        ("__scheme__", "https"),
    ];
    Some(group(host_port(ip, port), labels))
}

/// A declared container port: (container, port name, number, protocol).
type Declared<'a> = (&'a str, Option<&'a str>, u16, &'a str);

fn declared_ports(pod: &Value) -> Vec<Declared<'_>> {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    let mut out = Vec::new();
    for c in containers.into_iter().flatten() {
        let name = str_at(c, "/name").unwrap_or_default();
        let ports = c.get("ports").and_then(Value::as_array);
        for p in ports.into_iter().flatten() {
            let number = p
                .get("containerPort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0);
            if let Some(number) = number {
                let protocol = str_at(p, "/protocol").unwrap_or("TCP");
                out.push((name, str_at(p, "/name"), number, protocol));
            }
        }
    }
    out
}

/// The port to scrape and the container serving it: `prometheus.io/port` (a number, or the
/// name of a declared port), else the first declared TCP port (HTTP needs TCP).
fn scrape_port(pod: &Value) -> Option<(u16, Option<&str>)> {
    let declared = declared_ports(pod);
    let Some(wanted) = annotation(pod, PORT) else {
        return declared
            .iter()
            .find(|d| d.3 == "TCP")
            .map(|d| (d.2, Some(d.0)));
    };
    let port = port_number(wanted).or_else(|| {
        let wanted = wanted.trim();
        declared.iter().find(|d| d.1 == Some(wanted)).map(|d| d.2)
    })?;
    // A port the pod does not declare is still served by one of its containers; the first
    // is the one kubectl picks by default, so it is the best guess.
    let container = declared
        .iter()
        .find(|d| d.2 == port)
        .map(|d| d.0)
        .or_else(|| str_at(pod, "/spec/containers/0/name"));
    Some((port, container))
}

/// A running pod that asks to be scraped and has an address to scrape.
fn pod_group(pod: &Value) -> Option<TargetGroup> {
    if annotation(pod, SCRAPE) != Some("true") {
        return None;
    }
    let name = str_at(pod, "/metadata/name")?;
    let namespace = str_at(pod, "/metadata/namespace")?;
    if str_at(pod, "/status/phase") != Some("Running") {
        return None;
    }
    let ip = str_at(pod, "/status/podIP")?;
    let Some((port, container)) = scrape_port(pod) else {
        debug!(
            namespace,
            pod = name,
            "annotated for scraping but no usable port"
        );
        return None;
    };
    let path = annotation(pod, PATH)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_PATH);
    let mut labels = vec![
        ("job", "skiff-pods"),
        ("namespace", namespace),
        ("pod", name),
        (METRICS_PATH_LABEL, path),
    ];
    // Absent, not empty: Prometheus treats an empty label as no label anyway.
    let optional = [
        ("node", str_at(pod, "/spec/nodeName")),
        ("container", container.filter(|c| !c.is_empty())),
        ("app", str_at(pod, "/metadata/labels/app")),
    ];
    labels.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    Some(group(host_port(ip, port), labels))
}

/// The target groups for these nodes and pods: nodes first, each in the given order.
pub fn target_groups(nodes: &[Value], pods: &[Value]) -> Vec<TargetGroup> {
    let nodes = nodes.iter().filter_map(node_group);
    nodes.chain(pods.iter().filter_map(pod_group)).collect()
}

/// Every object of a core/v1 kind, through the same list path as `GET /api/v1/<plural>`.
async fn list_all(
    state: &ApiState,
    req: &HttpRequest,
    plural: &str,
) -> Result<Vec<Value>, ApiError> {
    let res = resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
    let ctx = Ctx {
        state,
        req,
        // This endpoint's query is not list options: it must not select or page.
        q: Query::parse(""),
        t: Target {
            res,
            namespace: None,
            name: None,
            sub: None,
        },
    };
    // Linearizable, so a target created through any replica is listed by every replica.
    let page = list_objects(&ctx, &ListRead::current(Consistency::Linearizable)).await?;
    page.items.iter().map(Listed::object).collect()
}

async fn discover(state: &ApiState, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let nodes = list_all(state, req, "nodes").await?;
    let pods = list_all(state, req, "pods").await?;
    let body = serde_json::to_vec(&target_groups(&nodes, &pods))
        .map_err(|e| ApiError::Internal(format!("encoding targets: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

pub async fn serve(req: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    let started = Instant::now();
    let response = match discover(&state, &req).await {
        Ok(r) => r,
        Err(e) => e.error_response(),
    };
    let code = response.status().as_u16();
    state.metrics.observe("get", "prometheus-sd", code, started);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, port: Option<&str>) -> Value {
        let annotations = port.map(|p| json!({ METRICS_PORT_ANNOTATION: p }));
        json!({
            "metadata": {"name": name, "annotations": annotations},
            "status": {"addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip},
            ]},
        })
    }

    fn pod(name: &str, annotations: Value, phase: &str, ip: Option<&str>) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "web", "labels": {"app": "shop"}, "annotations": annotations},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "sidecar", "ports": [{"containerPort": 53, "protocol": "UDP"}]},
                {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]},
            ]},
            "status": {"phase": phase, "podIP": ip},
        })
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn nodes_with_an_address_and_a_metrics_port_are_targets() {
        let nodes = [
            node("n1", "10.0.0.1", Some("9101")),
            node("n2", "fd00::2", Some("9102")),
            node("old", "10.0.0.3", None),
            node("bad", "10.0.0.4", Some("http")),
            json!({"metadata": {"name": "bare", "annotations": {METRICS_PORT_ANNOTATION: "9101"}}}),
        ];
        let groups = target_groups(&nodes, &[]);
        assert_eq!(
            groups,
            vec![
                TargetGroup {
                    targets: vec!["10.0.0.1:9101".into()],
                    labels: labels(&[
                        ("job", "skiff-nodes"),
                        ("node", "n1"),
                        ("__metrics_path__", "/metrics"),
                        ("__scheme__", "https")
                    ]),
                },
                TargetGroup {
                    targets: vec!["[fd00::2]:9102".into()],
                    labels: labels(&[
                        ("job", "skiff-nodes"),
                        ("node", "n2"),
                        ("__metrics_path__", "/metrics"),
                        ("__scheme__", "https")
                    ]),
                },
            ]
        );
    }

    #[test]
    fn annotated_running_pods_with_an_ip_are_targets() {
        let scrape = json!({SCRAPE: "true"});
        let pods = [
            // Port from the annotation, declared by `app`; path from the annotation.
            pod(
                "a",
                json!({SCRAPE: "true", PORT: "8080", PATH: "/stats"}),
                "Running",
                Some("10.1.0.5"),
            ),
            // No port annotation: the first declared TCP port.
            pod("b", scrape.clone(), "Running", Some("10.1.0.6")),
            // A named port; an undeclared number is served by the first container.
            pod(
                "c",
                json!({SCRAPE: "true", PORT: "http"}),
                "Running",
                Some("10.1.0.7"),
            ),
            pod(
                "d",
                json!({SCRAPE: "true", PORT: "9999"}),
                "Running",
                Some("10.1.0.8"),
            ),
            // Not targets: not annotated, not "true", not running, no IP, no port.
            pod("e", json!({}), "Running", Some("10.1.0.9")),
            pod("f", json!({SCRAPE: "false"}), "Running", Some("10.1.0.9")),
            pod("g", scrape.clone(), "Pending", Some("10.1.0.9")),
            pod("h", scrape.clone(), "Running", None),
            pod(
                "i",
                json!({SCRAPE: "true", PORT: "nope"}),
                "Running",
                Some("10.1.0.9"),
            ),
            json!({"metadata": {"name": "j", "namespace": "web", "annotations": scrape},
                   "spec": {"containers": [{"name": "c"}]},
                   "status": {"phase": "Running", "podIP": "10.1.0.9"}}),
        ];
        let groups = target_groups(&[], &pods);
        let summary: Vec<(&str, &str, &str, &str)> = groups
            .iter()
            .map(|g| {
                (
                    g.labels["pod"].as_str(),
                    g.targets[0].as_str(),
                    g.labels["container"].as_str(),
                    g.labels["__metrics_path__"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a", "10.1.0.5:8080", "app", "/stats"),
                ("b", "10.1.0.6:8080", "app", "/metrics"),
                ("c", "10.1.0.7:8080", "app", "/metrics"),
                ("d", "10.1.0.8:9999", "sidecar", "/metrics"),
            ]
        );
        assert_eq!(
            groups[0].labels,
            labels(&[
                ("job", "skiff-pods"),
                ("namespace", "web"),
                ("pod", "a"),
                ("node", "n1"),
                ("container", "app"),
                ("app", "shop"),
                ("__metrics_path__", "/stats"),
            ])
        );
    }

    #[test]
    fn serializes_as_http_sd() {
        let groups = target_groups(&[node("n1", "10.0.0.1", Some("9101"))], &[]);
        assert_eq!(
            serde_json::to_value(&groups).expect("json"),
            json!([{"targets": ["10.0.0.1:9101"], "labels": {"job": "skiff-nodes", "node": "n1", "__metrics_path__": "/metrics", "__scheme__": "https"}}])
        );
    }
}
