//! Skiff's overlay, flannel's design in Rust: every node owns a pod subnet (`spec.podCIDR`,
//! allocated by the control plane), publishes how to reach it (backend type, VTEP MAC,
//! underlay IP) as node annotations, and the `OverlayAgent` on every node programs the
//! datapath towards every other node: kernel VXLAN, host-gw routes, or a user-space VXLAN
//! datapath (TAP + UDP, the wire format built and parsed with pnet).

pub mod agent;
pub mod config;
mod datapath;
pub mod device;
mod gro;
mod host_gw;
pub mod lease;
pub mod masq;
pub mod metrics;
pub mod offload;
mod tap;
pub mod underlay;
pub mod user_vxlan;
mod vxlan;
pub mod wire;

pub use agent::OverlayAgent;
pub use config::{BackendKind, OverlayConfig};
pub use ipnet::Ipv4Net;
pub use lease::Peer;
pub use underlay::Underlay;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum OverlayError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("overlay configuration: {0}")]
    Config(String),
    #[error("host-gw: {0}")]
    NotOnLink(String),
    #[error("nftables: {0}")]
    Nft(String),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
