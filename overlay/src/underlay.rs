//! The underlay: the host interface (and its address and MTU) that carries traffic between
//! nodes, found the way flannel finds `--iface`'s default.

use std::net::Ipv4Addr;

use rtnetlink::Handle;

use crate::config::{BackendKind, OverlayConfig, VXLAN_OVERHEAD};
use crate::device;
use crate::OverlayError;

#[derive(Debug, Clone)]
pub struct Underlay {
    pub name: String,
    pub index: u32,
    pub ip: Ipv4Addr,
    pub mtu: u32,
    /// The underlay's `gso_ipv4_max_size` (0: not reported).
    pub gso_ipv4_max: u32,
}

impl Underlay {
    /// `address`: the node's address, if configured; `skip`: devices that are never the
    /// underlay (the pod bridge).
    pub async fn detect(
        cfg: &OverlayConfig,
        address: &str,
        skip: &[&str],
    ) -> Result<Underlay, OverlayError> {
        let h = device::connect()?;
        let links = device::links(&h).await?;
        let addrs = device::addresses(&h).await?;
        let by_index = |i: u32| links.iter().find(|l| l.index == i);
        let pick = |index: u32, ip: Option<Ipv4Addr>| -> Option<Underlay> {
            let l = by_index(index)?;
            let ip = ip.or_else(|| addrs.iter().find(|a| a.0 == index).map(|a| a.1))?;
            Some(Underlay {
                name: l.name.clone(),
                index,
                ip,
                mtu: if cfg.mtu > 0 { cfg.mtu } else { l.mtu },
                gso_ipv4_max: l.gso_ipv4_max,
            })
        };
        let found = if !cfg.interface.is_empty() {
            let l = links
                .iter()
                .find(|l| l.name == cfg.interface)
                .ok_or_else(|| {
                    OverlayError::Config(format!(
                        "underlay interface {:?} does not exist",
                        cfg.interface
                    ))
                })?;
            pick(l.index, None)
        } else if let Ok(ip) = address.parse::<Ipv4Addr>() {
            addrs
                .iter()
                .find(|a| a.1 == ip)
                .and_then(|a| pick(a.0, Some(ip)))
        } else {
            default_route_oif(&h)
                .await
                .and_then(|i| pick(i, None))
                .or_else(|| {
                    links
                        .iter()
                        .filter(|l| l.up && l.name != "lo" && !skip.contains(&l.name.as_str()))
                        .filter(|l| l.name != cfg.device)
                        .find_map(|l| pick(l.index, None))
                })
        };
        found.ok_or_else(|| {
            OverlayError::Config(format!(
                "no underlay interface with an IPv4 address (node address {address:?}; set overlay.interface)"
            ))
        })
    }

    /// The MTU pods get: the underlay's, less the encapsulation overhead.
    pub fn pod_mtu(&self, backend: BackendKind) -> u32 {
        if backend.encapsulates() {
            self.mtu.saturating_sub(VXLAN_OVERHEAD)
        } else {
            self.mtu
        }
    }

    /// The GSO/GRO size limit pods' devices get: the underlay's when it allows BIG TCP
    /// (packets above 64 KiB), so fewer, larger packets cross the extra hops a pod's traffic
    /// takes (veth, bridge, routing). Only when pod packets leave unencapsulated: a UDP
    /// tunnel's length fields stop at 64 KiB, and a larger packet would be cut into
    /// MTU-sized segments in software before the VXLAN device.
    pub fn pod_gso_max(&self, backend: BackendKind) -> Option<u32> {
        (!backend.encapsulates() && self.gso_ipv4_max > LEGACY_GSO_MAX).then_some(self.gso_ipv4_max)
    }
}

/// The kernel's default (and, before 6.3, only) GSO size limit.
const LEGACY_GSO_MAX: u32 = 65536;

async fn default_route_oif(h: &Handle) -> Option<u32> {
    device::route_to(h, Ipv4Addr::new(1, 1, 1, 1))
        .await
        .ok()
        .and_then(|(_, oif)| oif)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn underlay(gso_ipv4_max: u32) -> Underlay {
        Underlay {
            name: "eth0".into(),
            index: 2,
            ip: Ipv4Addr::new(10, 90, 0, 11),
            mtu: 1500,
            gso_ipv4_max,
        }
    }

    #[test]
    fn pods_follow_big_tcp_only_when_their_packets_are_not_encapsulated() {
        let big = underlay(196_608);
        assert_eq!(big.pod_gso_max(BackendKind::HostGw), Some(196_608));
        assert_eq!(big.pod_gso_max(BackendKind::Vxlan), None);
        assert_eq!(big.pod_gso_max(BackendKind::VxlanUser), None);
        // Default 64 KiB, or a kernel that does not report it: pods keep the default.
        assert_eq!(underlay(65_536).pod_gso_max(BackendKind::HostGw), None);
        assert_eq!(underlay(0).pod_gso_max(BackendKind::HostGw), None);
        assert_eq!(big.pod_mtu(BackendKind::Vxlan), 1450);
    }
}
