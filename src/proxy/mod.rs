//! `ServiceProxy`: kube-proxy's job on every node. Services and EndpointSlices are rendered
//! into one nftables table that is replaced atomically.

mod actor;
mod announce;
mod metrics;
pub mod model;
pub mod render;

pub use actor::{Applied, ServiceProxy};
pub use metrics::ProxyMetrics;

use actix::{Actor, Addr};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::node::services::ServiceContext;

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("nftables: {0}")]
    Nft(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("config: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Run the service proxy on this node.
    pub enabled: bool,
    /// Changes arriving within this window are applied in one sync.
    pub min_sync_ms: u64,
    /// Every rule is rewritten at least this often.
    pub full_sync_seconds: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_sync_ms: 10,
            full_sync_seconds: 3600,
        }
    }
}

/// Starts the proxy of this node (inside a running actix system).
pub fn start(ctx: &ServiceContext<'_>) -> Result<Addr<ServiceProxy>, ProxyError> {
    let cfg = ctx.cfg;
    let err = |e: crate::config::ConfigError| ProxyError::Config(e.to_string());
    let dns = cfg
        .dns
        .enabled
        .then(|| cfg.dns_service_ip().map(|ip| (ip, cfg.dns.port)))
        .transpose()
        .map_err(err)?;
    let lb_pool = cfg.load_balancer_pool().map_err(err)?;
    let node = model::NodeView {
        name: ctx.node_name.clone(),
        ip: ctx.node_ip,
        dns,
        external_ips: cfg.api.allow_service_external_ips,
        lb_pool: lb_pool.clone(),
        reserved_ports: vec![
            53,
            cfg.peer_listen_addr.port(),
            cfg.api_addr.port(),
            cfg.http_listen_addr.port(),
            cfg.node.listen_addr.port(),
            cfg.dns.port,
        ],
    };
    let metrics = ProxyMetrics::register(ctx.registry)
        .map_err(|e| ProxyError::Config(format!("metrics: {e}")))?;
    Ok(ServiceProxy::new(
        ctx.client.clone(),
        cfg.proxy.clone(),
        node,
        Some(cfg.cluster_cidr().map_err(err)?),
        lb_pool,
        metrics,
    )
    .start())
}
