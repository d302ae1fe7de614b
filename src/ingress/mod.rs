//! The ingress controller: networking.k8s.io/v1 Ingresses of class `skiff`, served by an HTTP
//! reverse proxy on every node.
//!
//! `controller` (the `IngressController` actor: watches, rebuilds, status), `class` (which
//! Ingresses are ours), `routes` (the table from the API objects, a pure function), `table`
//! (host and path matching), `proxy` (the HTTP/1.1 server and upstream client), `status`
//! (load-balancer addresses and the single writer), `metrics`.

pub mod class;
mod controller;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod status;
pub mod table;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::info;

pub use controller::IngressController;
use metrics::IngressMetrics;
use proxy::Proxy;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    /// Run the ingress proxy on this node.
    pub enabled: bool,
    /// Port of the HTTP proxy, on every address of the node.
    pub http_port: u16,
    /// The IngressClass this controller serves.
    pub class: String,
    /// How long connecting to a backend endpoint may take before the request fails (502).
    pub connect_timeout_ms: u64,
    /// How long a backend may take to send its response head (then 504).
    pub response_timeout_seconds: u64,
    /// Largest request body passed on (413 beyond); 0: no limit. Bodies are streamed, never
    /// held whole.
    pub max_body_bytes: u64,
    /// Changes arriving within this window are applied in one rebuild.
    pub sync_delay_ms: u64,
    /// The load-balancer status is checked (and repaired) at least this often.
    pub resync_seconds: u64,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            http_port: 80,
            class: "skiff".into(),
            connect_timeout_ms: 2000,
            response_timeout_seconds: 60,
            max_body_bytes: 64 << 20,
            sync_delay_ms: 10,
            resync_seconds: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("the ingress controller is disabled (ingress.enabled = false)")]
    Disabled,
    #[error("ingress: listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ingress metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Starts the node's ingress controller on `0.0.0.0:ingress.http_port` (every address of the
/// node). Must run inside an actix system.
pub async fn start(
    ctx: &crate::node::services::ServiceContext<'_>,
) -> Result<actix::Addr<IngressController>, IngressError> {
    let cfg = &ctx.cfg.ingress;
    if !cfg.enabled {
        return Err(IngressError::Disabled);
    }
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.http_port));
    let (addr, _) = start_with(
        ctx.client.clone(),
        cfg.clone(),
        &ctx.node_name,
        listen,
        ctx.registry,
    )
    .await?;
    Ok(addr)
}

/// Starts an ingress controller listening on `listen` (port 0: any free port) and returns it
/// with the address it is bound to. `node_name` takes part in choosing the status writer.
/// Must run inside an actix system.
pub async fn start_with(
    client: kube::Client,
    cfg: IngressConfig,
    node_name: &str,
    listen: SocketAddr,
    registry: &prometheus::Registry,
) -> Result<(actix::Addr<IngressController>, SocketAddr), IngressError> {
    use actix::Actor;
    let metrics = IngressMetrics::register(registry)?;
    let bind_err = |source| IngressError::Listen {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let (routes_tx, routes_rx) = watch::channel::<Option<Arc<table::RouteTable>>>(None);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    Proxy::new(routes_rx, &cfg, metrics.clone()).serve(listener, shutdown_rx);
    info!(%bound, class = %cfg.class, "ingress controller listening");
    let actor = IngressController::new(
        client,
        cfg,
        node_name.to_string(),
        metrics,
        routes_tx,
        shutdown_tx,
    );
    Ok((actor.start(), bound))
}
