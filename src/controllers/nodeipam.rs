//! The node IPAM controller (kube-controller-manager's range allocator): every node gets a
//! pod subnet (`spec.podCIDR`) from the cluster CIDR, never one another node holds. A
//! subnet is free again once its node is gone: the set in use is read from the nodes
//! themselves, plus the assignments this term made that the cache has not shown yet.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::runtime::{ReconcileError, ReconcileResult, Reconciler};
use super::shared::{obj_ref, Shared};

pub struct NodeIpam {
    shared: Arc<Shared>,
    cluster: Ipv4Net,
    mask: u8,
    /// Node -> subnet given by this term, until the cache shows it on the node.
    pending: RefCell<BTreeMap<String, Ipv4Net>>,
}

/// Every subnet a node holds (podCIDR and podCIDRs).
fn held(node: &Node) -> Vec<Ipv4Net> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .filter_map(|c| c.parse::<Ipv4Net>().ok())
        .collect()
}

/// The first `/mask` of `cluster` that overlaps nothing in `used`.
pub fn first_free(cluster: Ipv4Net, mask: u8, used: &[Ipv4Net]) -> Option<Ipv4Net> {
    let overlaps = |a: &Ipv4Net, b: &Ipv4Net| a.contains(&b.network()) || b.contains(&a.network());
    cluster
        .subnets(mask)
        .ok()?
        .find(|s| !used.iter().any(|u| overlaps(s, u)))
}

impl NodeIpam {
    pub fn new(shared: Arc<Shared>, cluster: Ipv4Net, mask: u8) -> Rc<Self> {
        Rc::new(NodeIpam {
            shared,
            cluster,
            mask,
            pending: RefCell::new(BTreeMap::new()),
        })
    }

    pub fn sources(self: &Rc<Self>) -> Vec<futures_util::stream::LocalBoxStream<'static, String>> {
        vec![self
            .shared
            .nodes
            .changes()
            .map(|c| c.obj.name_any())
            .boxed_local()]
    }

    fn allocate(&self, name: &str) -> Option<Ipv4Net> {
        let mut pending = self.pending.borrow_mut();
        if let Some(c) = pending.get(name) {
            return Some(*c);
        }
        let mut used: Vec<Ipv4Net> = self
            .shared
            .nodes
            .store
            .state()
            .iter()
            .flat_map(|n| held(n))
            .collect();
        used.extend(pending.values().copied());
        let cidr = first_free(self.cluster, self.mask, &used)?;
        pending.insert(name.to_string(), cidr);
        Some(cidr)
    }
}

impl Reconciler for NodeIpam {
    fn name(&self) -> &'static str {
        "nodeipam"
    }

    fn keys(&self) -> Vec<String> {
        self.shared.node_names()
    }

    fn reconcile(self: Rc<Self>, key: String) -> LocalBoxFuture<'static, ReconcileResult> {
        Box::pin(async move {
            let node = self.shared.nodes.store.get(&obj_ref::<Node>(None, &key));
            let Some(node) = node.filter(|n| n.metadata.deletion_timestamp.is_none()) else {
                self.pending.borrow_mut().remove(&key);
                return Ok(None);
            };
            if !held(&node).is_empty() {
                self.pending.borrow_mut().remove(&key);
                return Ok(None);
            }
            let Some(cidr) = self.allocate(&key) else {
                let msg = format!("Node {key} status is now: CIDRNotAvailable");
                self.shared
                    .recorder
                    .record(node.as_ref(), true, "CIDRNotAvailable", msg);
                return Ok(Some(Duration::from_secs(30)));
            };
            // The resourceVersion makes this a compare-and-set: a node that got a subnet
            // meanwhile (its agent's own setting) is not overwritten.
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
            });
            let api: Api<Node> = Api::all(self.shared.client.clone());
            match api
                .patch(&key, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {
                    info!(node = %key, %cidr, "pod CIDR allocated");
                    Ok(None)
                }
                Err(e) => {
                    self.pending.borrow_mut().remove(&key);
                    Err(ReconcileError::Api(e))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn first_free_skips_every_overlap_and_ends_when_full() {
        let cluster = net("10.244.0.0/22");
        assert_eq!(first_free(cluster, 24, &[]), Some(net("10.244.0.0/24")));
        let used = [net("10.244.0.0/24"), net("10.244.1.128/25")];
        assert_eq!(first_free(cluster, 24, &used), Some(net("10.244.2.0/24")));
        // A wider subnet held by someone covers several /24s.
        assert_eq!(
            first_free(cluster, 24, &[net("10.244.0.0/23")]),
            Some(net("10.244.2.0/24"))
        );
        let all: Vec<Ipv4Net> = cluster.subnets(24).unwrap().collect();
        assert_eq!(first_free(cluster, 24, &all), None);
    }
}
