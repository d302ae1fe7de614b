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
}

async fn default_route_oif(h: &Handle) -> Option<u32> {
    device::route_to(h, Ipv4Addr::new(1, 1, 1, 1))
        .await
        .ok()
        .and_then(|(_, oif)| oif)
}
