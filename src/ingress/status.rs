//! `status.loadBalancer.ingress` of our Ingresses: the InternalIPs of every Ready node, sorted.
//!
//! One writer for the whole cluster, without a lease of its own: the node whose name sorts
//! first among the Ready nodes. Every node computes the same answer from the same Node
//! objects; while the answer changes hands (a node turning Ready or NotReady) two nodes may
//! both write, and since both write the same value from the same nodes, that is harmless.
//! A node that is not Ready (or not a Node at all) never writes.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether `node_name` is the status writer: the first name among the Ready nodes.
pub fn is_writer(node_name: &str, nodes: &[&Node]) -> bool {
    nodes
        .iter()
        .filter(|n| is_ready(n))
        .filter_map(|n| n.metadata.name.as_deref())
        .min()
        == Some(node_name)
}

/// The InternalIPs of the Ready nodes, sorted (as addresses), without duplicates.
pub fn node_addresses(nodes: &[&Node]) -> Vec<String> {
    let mut ips: Vec<IpAddr> = nodes
        .iter()
        .filter(|n| is_ready(n))
        .flat_map(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
        })
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips.iter().map(IpAddr::to_string).collect()
}

/// What the Ingress's status lists now, as (ip or hostname).
pub fn current(ing: &Ingress) -> Vec<String> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

/// Writes `addresses` as the Ingress's load-balancer status (merge patch of the status
/// subresource; the list is replaced whole).
pub async fn write(
    client: Client,
    namespace: &str,
    name: &str,
    addresses: &[String],
) -> Result<(), kube::Error> {
    let api: Api<Ingress> = Api::namespaced(client, namespace);
    let list: Vec<_> = addresses.iter().map(|ip| json!({ "ip": ip })).collect();
    let patch = json!({"status": {"loadBalancer": {"ingress": list}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}
