//! The Node object of this agent (capacity read from the host, addresses, nodeInfo,
//! daemonEndpoints, images, conditions) and its Lease in `kube-node-lease`, the heartbeat the node lifecycle
//! controller watches.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ContainerImage, Node, NodeAddress, NodeCondition, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use super::image::ImageRecord;
use super::NodeError;

/// Node annotation with the port of the node's metrics endpoint (`http_listen_addr`);
/// `/skiff/v1/prometheus-sd` pairs it with the node's InternalIP. An annotation, not a
/// status field, so upstream clients and older servers simply ignore it.
pub const METRICS_PORT_ANNOTATION: &str = "skiff.io/metrics-port";

/// What the agent reports about its host.
#[derive(Clone, Debug)]
pub struct HostInfo {
    pub name: String,
    pub address: String,
    pub port: u16,
    /// Port of the health and metrics endpoint (`http_listen_addr`).
    pub metrics_port: u16,
    pub cpus: u32,
    pub memory_kib: u64,
    pub max_pods: u32,
    pub runtime_version: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn memory_kib() -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The first non-loopback IPv4 address of this network namespace outside the pod network
/// (the bridge `skip`), else 127.0.0.1.
pub fn first_address(skip: &str) -> String {
    nix::ifaddrs::getifaddrs()
        .ok()
        .and_then(|mut addrs| {
            addrs.find_map(|a| {
                if a.interface_name == skip || a.interface_name.starts_with("veth") {
                    return None;
                }
                let ip = a.address?.as_sockaddr_in()?.ip();
                (!ip.is_loopback()).then(|| ip.to_string())
            })
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn os_image() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn kubelet_version() -> String {
    format!(
        "v{}.{}.0+skiff.{}",
        crate::api::KUBE_MAJOR,
        crate::api::KUBE_MINOR,
        env!("CARGO_PKG_VERSION")
    )
}

fn capacity(h: &HostInfo) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(h.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", h.memory_kib)),
        ),
        ("pods".to_string(), Quantity(h.max_pods.to_string())),
    ])
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The status the agent owns. `network_ready`: the pod network (bridge, pod CIDR) is set up.
fn status(h: &HostInfo, network_ready: bool, previous: Option<&Node>) -> serde_json::Value {
    let now = Time(jiff::Timestamp::now());
    let (ready_reason, ready_msg) = if network_ready {
        ("KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:node has no pod CIDR",
        )
    };
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            &now,
        ),
        condition(
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            &now,
        ),
        condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            &now,
        ),
        condition("Ready", network_ready, ready_reason, ready_msg, &now),
    ];
    // Keep transition times of conditions whose status did not change.
    let old = previous
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref());
    for c in &mut conditions {
        if let Some(o) = old.and_then(|o| o.iter().find(|o| o.type_ == c.type_)) {
            if o.status == c.status {
                c.last_transition_time = o.last_transition_time.clone();
            }
        }
    }
    let machine_id = read("/etc/machine-id");
    let info = NodeSystemInfo {
        architecture: arch().into(),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: h.runtime_version.clone(),
        kernel_version: read("/proc/sys/kernel/osrelease"),
        kube_proxy_version: kubelet_version(),
        kubelet_version: kubelet_version(),
        machine_id: machine_id.clone(),
        operating_system: "linux".into(),
        os_image: os_image(),
        system_uuid: machine_id,
        ..Default::default()
    };
    json!({
        "capacity": capacity(h),
        "allocatable": capacity(h),
        "conditions": conditions,
        "addresses": [
            NodeAddress { type_: "InternalIP".into(), address: h.address.clone() },
            NodeAddress { type_: "Hostname".into(), address: h.name.clone() },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": h.port } },
        "nodeInfo": info,
    })
}

/// Creates the Node if missing (taking `pod_cidr` when it has none yet) and returns it.
pub async fn register(client: &Client, h: &HostInfo, pod_cidr: &str) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let existing = api.get_opt(&h.name).await?;
    let node = match existing {
        Some(n) => n,
        None => {
            let mut node: Node = serde_json::from_value(json!({
                "metadata": {
                    "name": h.name,
                    "labels": {
                        "kubernetes.io/hostname": h.name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": arch(),
                        "beta.kubernetes.io/os": "linux",
                        "beta.kubernetes.io/arch": arch(),
                    },
                    "annotations": { METRICS_PORT_ANNOTATION: h.metrics_port.to_string() },
                },
                "spec": {},
            }))?;
            if !pod_cidr.is_empty() {
                node.spec.get_or_insert_with(Default::default).pod_cidr = Some(pod_cidr.into());
                node.spec.get_or_insert_with(Default::default).pod_cidrs =
                    Some(vec![pod_cidr.into()]);
            }
            api.create(&PostParams::default(), &node).await?
        }
    };
    match catch_up(&node, h, pod_cidr) {
        Some(patch) => Ok(api
            .patch(&h.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?),
        None => Ok(node),
    }
}

/// The merge patch bringing a registered Node up to date with this agent: the pod CIDR
/// when it has none yet, and the metrics port (a node registered by an older agent, or an
/// agent restarted with another `http_listen_addr`). `None`: nothing to change.
fn catch_up(node: &Node, h: &HostInfo, pod_cidr: &str) -> Option<serde_json::Value> {
    let mut patch = serde_json::Map::new();
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some();
    if !has_cidr && !pod_cidr.is_empty() {
        patch.insert(
            "spec".into(),
            json!({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}),
        );
    }
    let port = h.metrics_port.to_string();
    let advertised = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(METRICS_PORT_ANNOTATION));
    if advertised != Some(&port) {
        patch.insert(
            "metadata".into(),
            json!({"annotations": { METRICS_PORT_ANNOTATION: port }}),
        );
    }
    (!patch.is_empty()).then_some(serde_json::Value::Object(patch))
}

/// Writes the node's status; returns the Node as stored.
pub async fn update_status(
    client: &Client,
    h: &HostInfo,
    network_ready: bool,
    images: &[ImageRecord],
) -> Result<Node, NodeError> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(&h.name).await?;
    let mut status = status(h, network_ready, Some(&current));
    status["images"] = json!(node_images(images));
    let patch = json!({ "status": status });
    Ok(api
        .patch_status(&h.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

/// Upstream's `nodeStatusMaxImages`: the node reports its largest images only.
const MAX_IMAGES: usize = 50;

/// The images on the node, largest first, each by digest and by tag (`status.images`).
fn node_images(images: &[ImageRecord]) -> Vec<ContainerImage> {
    let mut by_digest: BTreeMap<&str, (Vec<String>, u64)> = BTreeMap::new();
    for i in images {
        let repo = i.reference.split_once('@').map_or_else(
            || {
                let last = i.reference.rfind('/').map_or(0, |p| p + 1);
                match i.reference[last..].rfind(':') {
                    Some(c) => &i.reference[..last + c],
                    None => i.reference.as_str(),
                }
            },
            |(r, _)| r,
        );
        let e = by_digest.entry(&i.digest).or_default();
        for name in [format!("{repo}@{}", i.digest), i.reference.clone()] {
            if !e.0.contains(&name) {
                e.0.push(name);
            }
        }
        e.1 = e.1.max(i.size);
    }
    let mut out: Vec<ContainerImage> = by_digest
        .into_values()
        .map(|(names, size)| ContainerImage {
            names: Some(names),
            size_bytes: Some(size as i64),
        })
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    out.truncate(MAX_IMAGES);
    out
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(client: &Client, name: &str, duration: i32) -> Result<(), NodeError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(jiff::Timestamp::now());
    let spec = json!({
        "holderIdentity": name,
        "leaseDurationSeconds": duration,
        "renewTime": now,
    });
    match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": { "name": name, "namespace": "kube-node-lease" },
                "spec": spec,
            }))?;
            api.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            name: "n1".into(),
            address: "10.0.0.5".into(),
            port: 10250,
            metrics_port: 9101,
            cpus: 2,
            memory_kib: 1024,
            max_pods: 110,
            runtime_version: "runc://1.1".into(),
        }
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn images_are_reported_by_digest_and_tag_largest_first() {
        let record = |reference: &str, digest: &str, size: u64| ImageRecord {
            reference: reference.into(),
            digest: digest.into(),
            layers: vec![],
            size,
            config: Default::default(),
        };
        let images = node_images(&[
            record("docker.io/library/busybox:1.36", "sha256:aa", 10),
            record("docker.io/library/busybox:latest", "sha256:aa", 10),
            record("10.90.0.1:5000/app:v2", "sha256:bb", 99),
        ]);
        let names: Vec<Vec<String>> = images
            .iter()
            .map(|i| i.names.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                vec![
                    "10.90.0.1:5000/app@sha256:bb".to_string(),
                    "10.90.0.1:5000/app:v2".into()
                ],
                vec![
                    "docker.io/library/busybox@sha256:aa".to_string(),
                    "docker.io/library/busybox:1.36".into(),
                    "docker.io/library/busybox:latest".into()
                ],
            ]
        );
        assert_eq!(images[0].size_bytes, Some(99));
    }

    #[test]
    fn catch_up_adds_the_metrics_port_and_pod_cidr_only_when_missing() {
        let bare = node(json!({"metadata": {"name": "n1"}}));
        assert_eq!(
            catch_up(&bare, &host(), "10.244.1.0/24"),
            Some(json!({
                "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
                "metadata": {"annotations": {"skiff.io/metrics-port": "9101"}},
            }))
        );
        let stale = node(json!({
            "metadata": {"name": "n1", "annotations": {"skiff.io/metrics-port": "9102"}},
            "spec": {"podCIDR": "10.244.1.0/24"},
        }));
        assert_eq!(
            catch_up(&stale, &host(), "10.244.1.0/24"),
            Some(json!({"metadata": {"annotations": {"skiff.io/metrics-port": "9101"}}}))
        );
        let current = node(json!({
            "metadata": {"name": "n1", "annotations": {"skiff.io/metrics-port": "9101"}},
        }));
        assert_eq!(catch_up(&current, &host(), ""), None);
    }
}
