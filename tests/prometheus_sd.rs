//! `GET /skiff/v1/prometheus-sd` against three real `skiff server` processes: Nodes and Pods
//! created through the API on one replica come back as Prometheus HTTP SD target groups from
//! every replica.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use servers::Servers;

const SD_PATH: &str = "/skiff/v1/prometheus-sd";

fn cluster() -> &'static Servers {
    static CLUSTER: OnceLock<Servers> = OnceLock::new();
    // No controllers: nothing else writes the pods' status or deletes the unleased nodes.
    CLUSTER.get_or_init(|| Servers::start(3, "[controllers]\nenabled = false\n"))
}

/// (status code, Content-Type, body) of a request to replica `i`, as the admin.
fn http(i: usize, method: &str, path: &str) -> (u16, String, String) {
    let c = cluster();
    let addr = format!("127.0.0.1:{}", c.nodes[i].api);
    let (code, head, body) =
        servers::tls::request(&addr, method, path, Some(&c.admin_token())).expect("response");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, content_type, body)
}

/// The SD list as served by replica `i`.
fn targets(i: usize, query: &str) -> Vec<Value> {
    let (code, content_type, body) = http(i, "GET", &format!("{SD_PATH}{query}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(content_type, "application/json");
    serde_json::from_str::<Value>(&body)
        .expect("JSON")
        .as_array()
        .cloned()
        .expect("a list of target groups")
}

fn groups_where(groups: &[Value], label: &str, value: &str) -> Vec<Value> {
    groups
        .iter()
        .filter(|g| g["labels"][label] == value)
        .cloned()
        .collect()
}

async fn node(client: &Client, name: &str, ip: &str, metrics_port: Option<u16>) {
    let annotations = metrics_port.map(|p| json!({"skiff.io/metrics-port": p.to_string()}));
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {},
        "status": {"addresses": [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ]},
    }))
    .expect("node");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
}

/// Creates a pod on `sd-n1` and, given a phase, writes its status through `pods/status`.
async fn pod(api: &Api<Pod>, name: &str, annotations: Value, status: Option<Value>) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "shop"}, "annotations": annotations},
        "spec": {"nodeName": "sd-n1", "containers": [
            {"name": "app", "image": "busybox:1.36", "ports": [{"containerPort": 9000}]},
            {"name": "exporter", "image": "busybox:1.36", "ports": [{"containerPort": 8080}]},
        ]},
    }))
    .expect("pod");
    api.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    if let Some(status) = status {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("pod status");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_listed_at_their_internal_ip_and_metrics_port() {
    let client = cluster().client(0);
    node(&client, "sd-n1", "10.90.1.1", Some(9101)).await;
    node(&client, "sd-n2", "10.90.1.2", Some(9202)).await;
    // Registered without the annotation (an older agent): its metrics port is unknown.
    node(&client, "sd-old", "10.90.1.3", None).await;
    for i in 0..3 {
        let groups = groups_where(&targets(i, ""), "job", "skiff-nodes");
        let ours: Vec<&Value> = groups
            .iter()
            .filter(|g| {
                g["labels"]["node"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("sd-"))
            })
            .collect();
        assert_eq!(
            ours,
            vec![
                &json!({"targets": ["10.90.1.1:9101"], "labels": {"job": "skiff-nodes", "node": "sd-n1", "__metrics_path__": "/metrics", "__scheme__": "https"}}),
                &json!({"targets": ["10.90.1.2:9202"], "labels": {"job": "skiff-nodes", "node": "sd-n2", "__metrics_path__": "/metrics", "__scheme__": "https"}}),
            ],
            "replica {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_running_pods_are_listed_until_deleted() {
    let client = cluster().client(1);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "sd"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let api: Api<Pod> = Api::namespaced(client, "sd");
    let scrape = json!({"prometheus.io/scrape": "true"});
    let running = |ip: &str| Some(json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}));
    let annotated = json!({"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/stats"});
    pod(&api, "exported", annotated, running("10.244.1.5")).await;
    pod(&api, "first-port", scrape.clone(), running("10.244.1.6")).await;
    pod(&api, "plain", json!({}), running("10.244.1.7")).await;
    let pending = json!({"phase": "Pending", "podIP": "10.244.1.8"});
    pod(&api, "pending", scrape.clone(), Some(pending)).await;
    pod(
        &api,
        "no-ip",
        scrape.clone(),
        Some(json!({"phase": "Running"})),
    )
    .await;
    pod(&api, "new", scrape, None).await;

    let exported = json!({"targets": ["10.244.1.5:8080"], "labels": {
        "job": "skiff-pods", "namespace": "sd", "pod": "exported", "node": "sd-n1",
        "container": "exporter", "app": "shop", "__metrics_path__": "/stats"}});
    let first_port = json!({"targets": ["10.244.1.6:9000"], "labels": {
        "job": "skiff-pods", "namespace": "sd", "pod": "first-port", "node": "sd-n1",
        "container": "app", "app": "shop", "__metrics_path__": "/metrics"}});
    for i in 0..3 {
        // Unknown parameters, and list options that mean nothing here, are ignored.
        let groups = targets(i, "?labelSelector=app%3Dnone&limit=1&whatever=1");
        assert_eq!(
            groups_where(&groups, "namespace", "sd"),
            vec![exported.clone(), first_port.clone()],
            "replica {i}"
        );
    }

    api.delete("exported", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    for i in 0..3 {
        let groups = targets(i, "");
        assert_eq!(
            groups_where(&groups, "namespace", "sd"),
            vec![first_port.clone()],
            "replica {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_answer_a_status() {
    let (code, content_type, body) = http(2, "POST", SD_PATH);
    assert_eq!(code, 404);
    assert_eq!(content_type, "application/json");
    let status: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some(404))
    );
}
