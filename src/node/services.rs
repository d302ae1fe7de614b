//! What the per-node service components (service proxy, cluster DNS, ingress) are started
//! with: they run next to the node agent on every node.

use std::net::Ipv4Addr;

/// Handed to `proxy::start`, `dns::start` and `ingress::start`.
pub struct ServiceContext<'a> {
    /// Client of this node's API server.
    pub client: kube::Client,
    pub node_name: String,
    /// The node's address (InternalIP, the underlay address in the lab).
    pub node_ip: Ipv4Addr,
    /// The whole configuration (`services`, `proxy`, `dns`, `ingress`, `node`).
    pub cfg: &'a crate::config::Config,
    /// Where components register their metrics.
    pub registry: &'a prometheus::Registry,
}
