//! `ClusterDns`: the cluster's DNS server on every node (hickory-server), answering for the
//! cluster domain from Services, EndpointSlices and Pods and forwarding other names.
//!
//! Pods reach it at `services.dns_service_ip` (the service proxy leads that address to this
//! node's listener, `node_ip:dns.port`); `resolv` writes their resolv.conf.

mod actor;
pub mod forward;
pub mod lookup;
pub mod metrics;
pub mod records;
pub mod resolv;
mod server;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use hickory_server::Server;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{info, warn};

pub use actor::{ClusterDns, LocalAddr, Synced};

use forward::Forwarder;
use metrics::DnsMetrics;
use records::Snapshot;
use server::{QueryHandler, Shared};

/// A TCP connection that sends no question for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Binding port 0: attempts to find a port free for both UDP and TCP.
const BIND_ATTEMPTS: usize = 8;

#[derive(Debug, Error)]
pub enum DnsError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("no upstream resolver")]
    NoUpstream,
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream {0}: {1}")]
    Upstream(SocketAddr, std::io::Error),
    #[error("DNS message: {0}")]
    Message(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Run the node-local cluster DNS server (pods reach it at `services.dns_service_ip`).
    pub enabled: bool,
    /// Port it listens on (UDP and TCP), on the node's address.
    pub port: u16,
    /// TTL of cluster records, seconds.
    pub ttl: u32,
    /// Upstream resolvers for other names; empty: the node's /etc/resolv.conf.
    pub upstream: Vec<String>,
    /// How long a forwarded query may take.
    pub upstream_timeout_ms: u64,
    /// Networks (CIDRs) whose clients are answered besides the pod network, loopback and
    /// this node's address (the node network, say); anyone else gets REFUSED.
    pub allowed_clients: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 53,
            ttl: 30,
            upstream: Vec::new(),
            upstream_timeout_ms: 2000,
            allowed_clients: Vec::new(),
        }
    }
}

/// What the server runs with, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsOptions {
    /// The cluster domain (`services.cluster_domain`).
    pub domain: String,
    pub ttl: u32,
    pub upstream: Vec<SocketAddr>,
    pub upstream_timeout: Duration,
    /// Who is answered; anyone else gets REFUSED (an open resolver on a node's address
    /// would answer the whole network and amplify attacks).
    pub clients: Vec<ipnet::IpNet>,
}

impl DnsOptions {
    /// From `dns` and `services`: the configured upstreams, else the node's resolv.conf less
    /// this server itself (`listen`, and the DNS service address that leads back to it).
    pub fn from_config(cfg: &crate::config::Config, listen: SocketAddr) -> Result<Self, DnsError> {
        let service_ip = cfg
            .dns_service_ip()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        let exclude = [listen, SocketAddr::new(IpAddr::V4(service_ip), 53)];
        let host = resolv::ResolvConf::host();
        let upstream = forward::upstreams(&cfg.dns.upstream, &host, &exclude)?;
        if upstream.is_empty() {
            warn!("cluster DNS: no upstream resolver (dns.upstream, /etc/resolv.conf): other names answer SERVFAIL");
        }
        let invalid = |e: String| DnsError::Config(e);
        let loopback = ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8)
            .map_err(|e| invalid(e.to_string()))?;
        let mut clients: Vec<ipnet::IpNet> = vec![
            cfg.cluster_cidr()
                .map_err(|e| invalid(e.to_string()))?
                .into(),
            loopback.trunc().into(),
            ipnet::IpNet::from(listen.ip()),
        ];
        for c in &cfg.dns.allowed_clients {
            let net = c
                .parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| invalid(format!("dns.allowed_clients: {c:?} is not a CIDR")))?;
            clients.push(net);
        }
        Ok(DnsOptions {
            domain: cfg.services.cluster_domain.clone(),
            ttl: cfg.dns.ttl,
            upstream,
            upstream_timeout: Duration::from_millis(cfg.dns.upstream_timeout_ms.max(1)),
            clients,
        })
    }
}

/// Starts the node's cluster DNS on `node_ip:dns.port` (UDP and TCP), inside a running actix
/// system.
pub async fn start(
    ctx: &crate::node::services::ServiceContext<'_>,
) -> Result<Addr<ClusterDns>, DnsError> {
    let listen = SocketAddr::new(IpAddr::V4(ctx.node_ip), ctx.cfg.dns.port);
    let opts = DnsOptions::from_config(ctx.cfg, listen)?;
    let (addr, _) = serve(ctx.client.clone(), opts, listen, ctx.registry).await?;
    Ok(addr)
}

/// Starts a `ClusterDns` answering on `listen` (port 0: any free port) from the API behind
/// `client`; returns the actor and the address it listens on.
pub async fn serve(
    client: kube::Client,
    opts: DnsOptions,
    listen: SocketAddr,
    registry: &prometheus::Registry,
) -> Result<(Addr<ClusterDns>, SocketAddr), DnsError> {
    // Bound first: a start that fails on its address can be retried with the same registry.
    let (udp, tcp, local) = bind(listen).await?;
    let metrics = DnsMetrics::register(registry)?;
    let forwarder = Forwarder::new(opts.upstream.clone(), opts.upstream_timeout);
    let shared = Arc::new(Shared::new(
        Snapshot::empty(&opts.domain, opts.ttl),
        forwarder,
        metrics,
        opts.clients.clone(),
    ));
    let mut server = Server::new(QueryHandler(shared.clone()));
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
    info!(%local, upstream = ?opts.upstream, "cluster DNS listening");
    let actor = ClusterDns::new(
        client,
        records::normalize_domain(&opts.domain),
        opts.ttl,
        shared,
        server,
        local,
    );
    Ok((actor.start(), local))
}

/// One UDP socket and one TCP listener on the same address.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), DnsError> {
    let err = |addr, source| DnsError::Bind { addr, source };
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp = UdpSocket::bind(listen).await.map_err(|e| err(listen, e))?;
        let local = udp.local_addr().map_err(|e| err(listen, e))?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, tcp, local)),
            // Port 0 gave a UDP port whose TCP twin is taken: try another.
            Err(e) if listen.port() == 0 => last = Some(err(local, e)),
            Err(e) => return Err(err(local, e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        err(
            listen,
            std::io::Error::other("no port free for UDP and TCP"),
        )
    }))
}
