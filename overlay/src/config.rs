//! `[overlay]`: which datapath carries pod traffic between nodes, and its parameters.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// Kernel VXLAN device (flannel's default).
    Vxlan,
    /// Plain routes via the other nodes' underlay addresses (one L2 segment).
    HostGw,
    /// The VXLAN wire format in user space over a TAP device and a UDP socket.
    VxlanUser,
}

impl BackendKind {
    /// The name published in the node annotation (and flannel's `backend-type`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Vxlan => "vxlan",
            BackendKind::HostGw => "host-gw",
            BackendKind::VxlanUser => "vxlan-user",
        }
    }

    /// The kind a published name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        [
            BackendKind::Vxlan,
            BackendKind::HostGw,
            BackendKind::VxlanUser,
        ]
        .into_iter()
        .find(|b| b.as_str() == name)
    }

    /// VXLAN on the wire (the kernel and user-space backends talk to each other).
    pub fn encapsulates(self) -> bool {
        self != BackendKind::HostGw
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OverlayConfig {
    /// Run the overlay agent next to the node agent.
    pub enabled: bool,
    pub backend: BackendKind,
    /// All pod subnets; empty: `controllers.cluster_cidr`.
    pub cluster_cidr: String,
    /// The underlay interface; empty: the one holding `node.address`, else the default
    /// route's, else the first up interface with an IPv4 address.
    pub interface: String,
    /// Name of the VXLAN (or TAP) device.
    pub device: String,
    pub vni: u32,
    /// VXLAN UDP port (8472: the Linux default, as flannel).
    pub port: u16,
    /// Underlay MTU; 0: the interface's. Pods get this minus the encapsulation overhead.
    pub mtu: u32,
    /// Masquerade pod traffic leaving the cluster CIDR (nftables).
    pub masquerade: bool,
    /// Full resync of the datapath at least this often.
    pub resync_seconds: u64,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            enabled: true,
            backend: BackendKind::Vxlan,
            cluster_cidr: String::new(),
            interface: String::new(),
            device: "skiff.1".into(),
            vni: 1,
            port: 8472,
            mtu: 0,
            masquerade: true,
            resync_seconds: 30,
        }
    }
}

/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const VXLAN_OVERHEAD: u32 = 50;
