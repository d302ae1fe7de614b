//! The kernel VXLAN backend (flannel's `vxlan.go` + `vxlan_network.go`): one device, and per
//! remote node exactly one permanent neighbour (its `.0` -> its VTEP MAC), one FDB entry (its
//! VTEP MAC -> its underlay IP) and one route (its subnet via its `.0`, onlink).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use crate::config::OverlayConfig;
use crate::device::{self, Route, VxlanSpec};
use crate::lease::{format_mac, Peer};
use crate::underlay::Underlay;
use crate::OverlayError;
use tracing::info;

pub struct KernelVxlan {
    h: Handle,
    index: u32,
    mac: [u8; 6],
}

impl KernelVxlan {
    /// The device, kept if it exists with the same parameters (so its MAC, which peers
    /// hold, stays); else made with `mac`.
    pub async fn create(
        cfg: &OverlayConfig,
        u: &Underlay,
        mtu: u32,
        mac: [u8; 6],
    ) -> Result<Self, OverlayError> {
        let h = device::connect()?;
        let spec = VxlanSpec {
            name: &cfg.device,
            vni: cfg.vni,
            port: cfg.port,
            local: u.ip,
            underlay: u.index,
            mtu,
        };
        let link = device::ensure_vxlan(&h, &spec, mac).await?;
        Ok(KernelVxlan {
            h,
            index: link.index,
            mac: link.mac.unwrap_or(mac),
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub async fn set_subnet(&self, own: Ipv4Net) -> Result<(), OverlayError> {
        device::ensure_only_addr(&self.h, self.index, own.network()).await
    }

    /// Neighbours and FDB entries for exactly `peers`; returns the routes they need.
    pub async fn sync(&self, peers: &[&Peer]) -> Result<Vec<Route>, OverlayError> {
        sync_neighbours(&self.h, self.index, peers).await?;
        let want: BTreeSet<([u8; 6], Ipv4Addr)> = peers
            .iter()
            .filter_map(|p| Some((p.vxlan?.vtep_mac, p.public_ip)))
            .collect();
        let have: BTreeSet<_> = device::fdb(&self.h, self.index)
            .await?
            .into_iter()
            .collect();
        for (mac, dst) in have.difference(&want) {
            info!(mac = %format_mac(mac), %dst, "removing fdb entry");
            device::fdb_del(&self.h, self.index, *mac, *dst).await?;
        }
        for (mac, dst) in want.difference(&have) {
            info!(mac = %format_mac(mac), %dst, "adding fdb entry");
            device::fdb_replace(&self.h, self.index, *mac, *dst).await?;
        }
        Ok(routes_via(self.index, peers))
    }
}

/// Permanent neighbours on `index`: each peer's `.0` resolves to its VTEP MAC.
pub async fn sync_neighbours(h: &Handle, index: u32, peers: &[&Peer]) -> Result<(), OverlayError> {
    let want: BTreeMap<Ipv4Addr, [u8; 6]> = peers
        .iter()
        .filter_map(|p| Some((p.vtep_ip(), p.vxlan?.vtep_mac)))
        .collect();
    let have: BTreeMap<Ipv4Addr, [u8; 6]> =
        device::neighbours(h, index).await?.into_iter().collect();
    for ip in have.keys().filter(|ip| !want.contains_key(ip)) {
        info!(%ip, "removing neighbour");
        device::neighbour_del(h, index, *ip).await?;
    }
    for (ip, mac) in &want {
        if have.get(ip) != Some(mac) {
            info!(%ip, mac = %format_mac(mac), "adding neighbour");
            device::neighbour_replace(h, index, *ip, *mac).await?;
        }
    }
    Ok(())
}

/// Each peer's subnet via its `.0`, onlink, out of `index`.
pub fn routes_via(index: u32, peers: &[&Peer]) -> Vec<Route> {
    peers
        .iter()
        .map(|p| Route {
            dst: p.subnet,
            gateway: Some(p.vtep_ip()),
            oif: Some(index),
            onlink: true,
        })
        .collect()
}
