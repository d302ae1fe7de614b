//! The netlink side of every backend (flannel's `device.go`): links, addresses, permanent
//! neighbours, FDB entries and routes, each add a replace so a repeat is harmless.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::OverlayError;

/// Routes the overlay installs carry this protocol number, so a resync can tell them from
/// routes it does not own (the kernel keeps it; `ip route` shows `proto 252`).
pub const RTPROT_SKIFF: u8 = 252;

fn nl(what: &str, e: rtnetlink::Error) -> OverlayError {
    OverlayError::Netlink(format!("{what}: {e}"))
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

pub fn connect() -> Result<Handle, OverlayError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| OverlayError::Netlink(e.to_string()))?;
    tokio::spawn(conn);
    Ok(handle)
}

#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// Largest IPv4 GSO packet the device takes (`gso_ipv4_max_size`, kernel 6.3+; 0 when
    /// the kernel does not report it).
    pub gso_ipv4_max: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub vxlan: Option<VxlanParams>,
}

/// What decides whether an existing VXLAN device can be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub underlay: Option<u32>,
    pub port: Option<u16>,
    pub learning: bool,
}

fn parse_link(m: LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mtu: 0,
        gso_ipv4_max: 0,
        mac: None,
        up: m
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up),
        vxlan: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(mtu) => l.mtu = mtu,
            LinkAttribute::GsoIpv4MaxSize(size) => l.gso_ipv4_max = size,
            LinkAttribute::Address(a) => l.mac = a.try_into().ok(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Data(InfoData::Vxlan(v)) = i {
                        let mut p = VxlanParams {
                            vni: 0,
                            local: None,
                            underlay: None,
                            port: None,
                            learning: true,
                        };
                        for x in v {
                            match x {
                                InfoVxlan::Id(id) => p.vni = id,
                                InfoVxlan::Local(ip) => p.local = Some(ip),
                                InfoVxlan::Link(i) => p.underlay = Some(i),
                                InfoVxlan::Port(port) => p.port = Some(port),
                                InfoVxlan::Learning(on) => p.learning = on,
                                _ => {}
                            }
                        }
                        l.vxlan = Some(p);
                    }
                }
            }
            _ => {}
        }
    }
    l
}

pub async fn links(h: &Handle) -> Result<Vec<Link>, OverlayError> {
    let msgs: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("list links", e))?;
    Ok(msgs.into_iter().map(parse_link).collect())
}

pub async fn link(h: &Handle, name: &str) -> Result<Option<Link>, OverlayError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m.map(parse_link)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl("get link", e)),
    }
}

pub async fn delete_link(h: &Handle, index: u32) -> Result<(), OverlayError> {
    h.link()
        .del(index)
        .execute()
        .await
        .map_err(|e| nl("delete link", e))
}

pub struct VxlanSpec<'a> {
    pub name: &'a str,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    pub underlay: u32,
    pub mtu: u32,
}

/// Creates the VXLAN device, or keeps an existing one with the same parameters (and MAC:
/// the VTEP MAC peers know stays stable across restarts); a different one is replaced.
pub async fn ensure_vxlan(
    h: &Handle,
    s: &VxlanSpec<'_>,
    mac: [u8; 6],
) -> Result<Link, OverlayError> {
    if let Some(l) = link(h, s.name).await? {
        let want = VxlanParams {
            vni: s.vni,
            local: Some(s.local),
            underlay: Some(s.underlay),
            port: Some(s.port),
            learning: false,
        };
        if l.vxlan == Some(want) {
            set_up(h, l.index, s.mtu, None).await?;
            return Ok(l);
        }
        tracing::info!(device = s.name, "replacing a device with other parameters");
        delete_link(h, l.index).await?;
    }
    let msg = LinkVxlan::new(s.name, s.vni)
        .dev(s.underlay)
        .local(s.local)
        .port(s.port)
        .learning(false)
        .mtu(s.mtu)
        .address(mac.to_vec())
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| nl("add vxlan device", e))?;
    let l = link(h, s.name)
        .await?
        .ok_or_else(|| OverlayError::Netlink(format!("{} vanished", s.name)))?;
    set_up(h, l.index, s.mtu, None).await?;
    Ok(l)
}

/// MTU (and MAC, if given), up.
pub async fn set_up(
    h: &Handle,
    index: u32,
    mtu: u32,
    mac: Option<[u8; 6]>,
) -> Result<(), OverlayError> {
    let mut b = LinkUnspec::new_with_index(index).mtu(mtu).up();
    if let Some(mac) = mac {
        b = b.address(mac.to_vec());
    }
    h.link()
        .set(b.build())
        .execute()
        .await
        .map_err(|e| nl("set link", e))
}

async fn link_addresses(
    h: &Handle,
    index: u32,
) -> Result<Vec<netlink_packet_route::address::AddressMessage>, OverlayError> {
    h.address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("list addresses", e))
}

/// `ip/32` is the only IPv4 address of the device (flannel puts the subnet's `.0` there: the
/// source of host-to-remote-pod traffic, and no broadcast route).
pub async fn ensure_only_addr(h: &Handle, index: u32, ip: Ipv4Addr) -> Result<(), OverlayError> {
    let addrs = link_addresses(h, index).await?;
    let mut have = false;
    for a in addrs {
        let this = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
            _ => None,
        });
        match this {
            Some(v4) if v4 == ip && a.header.prefix_len == 32 => have = true,
            Some(_) => h
                .address()
                .del(a)
                .execute()
                .await
                .map_err(|e| nl("remove address", e))?,
            None => {}
        }
    }
    if !have {
        h.address()
            .add(index, IpAddr::V4(ip), 32)
            .execute()
            .await
            .map_err(|e| nl("add address", e))?;
    }
    Ok(())
}

/// Adds `ip/prefix` to the device (an existing one is fine).
pub async fn add_addr(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), OverlayError> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        r => r.map_err(|e| nl("add address", e)),
    }
}

/// Removes `ip/prefix` from the device, if it is there.
pub async fn del_addr(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), OverlayError> {
    let addrs = link_addresses(h, index).await?;
    for a in addrs {
        let this = a
            .attributes
            .iter()
            .any(|x| matches!(x, AddressAttribute::Address(IpAddr::V4(v4)) if *v4 == ip));
        if this && a.header.prefix_len == prefix {
            h.address()
                .del(a)
                .execute()
                .await
                .map_err(|e| nl("remove address", e))?;
        }
    }
    Ok(())
}

/// IPv4 addresses with their interface index and prefix length.
pub async fn addresses(h: &Handle) -> Result<Vec<(u32, Ipv4Addr, u8)>, OverlayError> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("list addresses", e))?;
    Ok(msgs
        .into_iter()
        .filter_map(|a| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(IpAddr::V4(v4)) => {
                    Some((a.header.index, *v4, a.header.prefix_len))
                }
                _ => None,
            })
        })
        .collect())
}

/// Permanent ARP entries on the device: (IP, MAC).
pub async fn neighbours(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, [u8; 6])>, OverlayError> {
    let msgs = dump_neigh(h, AddressFamily::Inet).await?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| Some((destination(&m)?, lladdr(&m)?)))
        .collect())
}

/// Static FDB entries of the VXLAN device: (MAC, remote underlay IP).
pub async fn fdb(h: &Handle, index: u32) -> Result<Vec<([u8; 6], Ipv4Addr)>, OverlayError> {
    let msgs = dump_neigh(h, AddressFamily::Bridge).await?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.ifindex == index)
        .filter_map(|m| Some((lladdr(&m)?, destination(&m)?)))
        .collect())
}

fn destination(m: &NeighbourMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        // In an AF_BRIDGE message the remote address comes back as raw bytes.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

fn lladdr(m: &NeighbourMessage) -> Option<[u8; 6]> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => l.as_slice().try_into().ok(),
        _ => None,
    })
}

async fn dump_neigh(
    h: &Handle,
    family: AddressFamily,
) -> Result<Vec<NeighbourMessage>, OverlayError> {
    let mut req = h.neighbours().get();
    req.message_mut().header.family = family;
    req.execute()
        .try_collect()
        .await
        .map_err(|e| nl("list neighbours", e))
}

pub async fn neighbour_replace(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> Result<(), OverlayError> {
    h.neighbours()
        .add(index, IpAddr::V4(ip))
        .link_layer_address(&mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(|e| nl("add neighbour", e))
}

pub async fn neighbour_del(h: &Handle, index: u32, ip: Ipv4Addr) -> Result<(), OverlayError> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = index;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    ignore_missing(h.neighbours().del(m).execute().await, "delete neighbour")
}

pub async fn fdb_replace(
    h: &Handle,
    index: u32,
    mac: [u8; 6],
    dst: Ipv4Addr,
) -> Result<(), OverlayError> {
    h.neighbours()
        .add_bridge(index, &mac)
        .destination(IpAddr::V4(dst))
        .flags(NeighbourFlags::Own)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(|e| nl("add fdb entry", e))
}

pub async fn fdb_del(
    h: &Handle,
    index: u32,
    mac: [u8; 6],
    dst: Ipv4Addr,
) -> Result<(), OverlayError> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    ignore_missing(h.neighbours().del(m).execute().await, "delete fdb entry")
}

fn ignore_missing(r: Result<(), rtnetlink::Error>, what: &str) -> Result<(), OverlayError> {
    match r {
        Err(e) if !matches!(errno(&e), Some(libc::ENOENT) | Some(libc::ESRCH)) => Err(nl(what, e)),
        _ => Ok(()),
    }
}

/// A route of the main table, as the overlay compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub onlink: bool,
}

impl Route {
    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.dst.network(), self.dst.prefix_len())
            .protocol(RouteProtocol::Other(RTPROT_SKIFF))
            .scope(RouteScope::Universe);
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if self.onlink {
            b = b.onlink();
        }
        b.build()
    }
}

/// The overlay's own routes (by protocol number) in the main table.
pub async fn own_routes(h: &Handle) -> Result<Vec<Route>, OverlayError> {
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| nl("list routes", e))?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.protocol == RouteProtocol::Other(RTPROT_SKIFF))
        .filter_map(|m| {
            let mut dst = None;
            let mut gateway = None;
            let mut oif = None;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            Some(Route {
                dst: Ipv4Net::new(dst?, m.header.destination_prefix_length).ok()?,
                gateway,
                oif,
                onlink: m.header.flags.contains(RouteFlags::Onlink),
            })
        })
        .collect())
}

pub async fn route_replace(h: &Handle, r: &Route) -> Result<(), OverlayError> {
    h.route()
        .add(r.message())
        .replace()
        .execute()
        .await
        .map_err(|e| nl(&format!("add route to {}", r.dst), e))
}

pub async fn route_del(h: &Handle, r: &Route) -> Result<(), OverlayError> {
    ignore_missing(h.route().del(r.message()).execute().await, "delete route")
}

/// The route the kernel would use towards `ip`: (gateway, output interface).
pub async fn route_to(
    h: &Handle,
    ip: Ipv4Addr,
) -> Result<(Option<Ipv4Addr>, Option<u32>), OverlayError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .build();
    let m = h
        .route()
        .get(msg)
        .execute()
        .try_next()
        .await
        .map_err(|e| nl(&format!("route to {ip}"), e))?
        .ok_or_else(|| OverlayError::Netlink(format!("no route to {ip}")))?;
    let mut gw = None;
    let mut oif = None;
    for a in m.attributes {
        match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gw = Some(g),
            RouteAttribute::Oif(i) => oif = Some(i),
            _ => {}
        }
    }
    Ok((gw, oif))
}
