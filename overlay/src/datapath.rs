//! The backend chosen in the configuration, behind one level-triggered `sync`: given the
//! node set, make the kernel (and the user-space FDB) hold exactly what it implies.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use crate::config::{BackendKind, OverlayConfig};
use crate::device::{self, Route};
use crate::lease::{Peer, VxlanData};
use crate::metrics::OverlayMetrics;
use crate::underlay::Underlay;
use crate::user_vxlan::UserVxlan;
use crate::vxlan::KernelVxlan;
use crate::{host_gw, masq, OverlayError};

pub enum Backend {
    Vxlan(KernelVxlan),
    HostGw,
    User(UserVxlan),
}

pub struct Datapath {
    pub kind: BackendKind,
    backend: Backend,
    h: Handle,
    underlay: Underlay,
    vni: u32,
    cluster: Ipv4Net,
    masquerade: bool,
    /// The nftables table last written, so an unchanged one is not rewritten on every event.
    masq_applied: std::sync::Mutex<Option<String>>,
}

impl Datapath {
    /// Sets up the backend's device. `mac`: the VTEP MAC this node published before, kept
    /// so peers need no update after a restart.
    pub async fn create(
        cfg: &OverlayConfig,
        cluster: Ipv4Net,
        underlay: Underlay,
        mac: Option<[u8; 6]>,
        metrics: OverlayMetrics,
    ) -> Result<Self, OverlayError> {
        // Forwarding between the underlay, the overlay device and the pod bridge.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        let h = device::connect()?;
        let mac = mac.unwrap_or_else(crate::lease::random_mac);
        let mtu = underlay.pod_mtu(cfg.backend);
        let backend = match cfg.backend {
            BackendKind::Vxlan => {
                Backend::Vxlan(KernelVxlan::create(cfg, &underlay, mtu, mac).await?)
            }
            BackendKind::VxlanUser => {
                Backend::User(UserVxlan::create(cfg, &underlay, mtu, mac, metrics).await?)
            }
            BackendKind::HostGw => {
                // A VXLAN device of an earlier configuration would still catch traffic.
                if let Some(old) = device::link(&h, &cfg.device).await? {
                    device::delete_link(&h, old.index).await?;
                }
                Backend::HostGw
            }
        };
        Ok(Datapath {
            kind: cfg.backend,
            backend,
            h,
            underlay,
            vni: cfg.vni,
            cluster,
            masquerade: cfg.masquerade,
            masq_applied: Default::default(),
        })
    }

    pub fn public_ip(&self) -> Ipv4Addr {
        self.underlay.ip
    }

    /// What this node publishes for the VXLAN backends.
    pub fn vxlan_data(&self) -> Option<VxlanData> {
        let mac = match &self.backend {
            Backend::Vxlan(k) => k.mac(),
            Backend::User(u) => u.mac(),
            Backend::HostGw => return None,
        };
        Some(VxlanData {
            vni: self.vni,
            vtep_mac: mac,
        })
    }

    /// Peers this backend can reach: VXLAN speaks to both VXLAN backends with the same VNI,
    /// host-gw only to host-gw nodes (as flannel, which skips other backend types).
    fn reachable<'a>(&self, own: Ipv4Net, peers: &'a [Peer]) -> Vec<&'a Peer> {
        peers
            .iter()
            .filter(|p| p.subnet != own && self.cluster.contains(&p.subnet))
            .filter(|p| match self.kind {
                BackendKind::HostGw => p.backend == BackendKind::HostGw,
                _ => p.backend.encapsulates() && p.vxlan.is_some_and(|v| v.vni == self.vni),
            })
            .collect()
    }

    /// One reconcile; returns how many peers are programmed. `full`: also rewrite the
    /// masquerade table when it looks unchanged (someone may have flushed it).
    pub async fn sync(
        &self,
        own: Ipv4Net,
        peers: &[Peer],
        full: bool,
    ) -> Result<usize, OverlayError> {
        let peers = self.reachable(own, peers);
        let mut failure = None;
        let routes = match &self.backend {
            Backend::Vxlan(k) => {
                k.set_subnet(own).await?;
                k.sync(&peers).await?
            }
            Backend::User(u) => {
                u.set_subnet(own).await?;
                u.sync(&peers).await?
            }
            Backend::HostGw => {
                let (routes, err) = host_gw::routes(&self.h, &self.underlay, &peers).await;
                failure = err;
                routes
            }
        };
        reconcile_routes(&self.h, &routes).await?;
        if self.masquerade {
            let rules = masq::ruleset(self.cluster, own);
            let mut last = self
                .masq_applied
                .lock()
                .map_err(|_| OverlayError::Nft("lock poisoned".into()))?;
            if full || last.as_deref() != Some(rules.as_str()) {
                *last = None;
                masq::apply(&rules)?;
                *last = Some(rules);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(routes.len()),
        }
    }
}

/// Exactly `want` among the overlay's routes. Wanted routes are replaced in place (never
/// deleted first, so traffic does not stall); only destinations no longer wanted go.
async fn reconcile_routes(h: &Handle, want: &[Route]) -> Result<(), OverlayError> {
    let have = device::own_routes(h).await?;
    for r in want.iter().filter(|r| !have.contains(r)) {
        tracing::info!(dst = %r.dst, gateway = ?r.gateway, "adding route");
        device::route_replace(h, r).await?;
    }
    for r in have.iter().filter(|r| !want.iter().any(|w| w.dst == r.dst)) {
        tracing::info!(dst = %r.dst, "removing route");
        device::route_del(h, r).await?;
    }
    Ok(())
}
