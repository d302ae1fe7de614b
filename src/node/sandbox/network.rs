//! The CNI part of a pod sandbox: the node bridge holding the pod subnet's first address, and
//! per pod a veth pair whose inside end is `eth0` with the pod IP and a default route via the
//! bridge. All of it over rtnetlink.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use futures_util::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{
    new_connection, Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::{netns, PodLink, SandboxError};

fn nl(what: &str, e: rtnetlink::Error) -> SandboxError {
    SandboxError::Netlink(format!("{what}: {e}"))
}

fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

fn connect() -> Result<Handle, SandboxError> {
    let (conn, handle, _) = new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Applies a link change (up, rename, move, attach to a bridge).
async fn set_link(h: &Handle, msg: LinkMessage, what: &str) -> Result<(), SandboxError> {
    h.link().set(msg).execute().await.map_err(|e| nl(what, e))
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, SandboxError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl("get link", e)),
    }
}

async fn add_addr(h: &Handle, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), SandboxError> {
    match h
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
    {
        Err(e) if !exists(&e) => Err(nl("add address", e)),
        _ => Ok(()),
    }
}

/// `b` with the GSO/GRO size limits of `link` (the kernel's defaults stay when it has none).
fn sized(b: LinkMessageBuilder<LinkUnspec>, link: PodLink) -> LinkMessage {
    match link.gso_max {
        Some(size) => b
            .append_extra_attribute(LinkAttribute::GsoIpv4MaxSize(size))
            .append_extra_attribute(LinkAttribute::GroIpv4MaxSize(size))
            .build(),
        None => b.build(),
    }
}

/// Creates (or keeps) the bridge with `gateway/prefix` on it, up (its GSO size follows with
/// its first port, in `attach`).
pub async fn ensure_bridge(
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    mtu: u32,
) -> Result<(), SandboxError> {
    let h = connect()?;
    let index = match link_index(&h, name).await? {
        Some(i) => i,
        None => {
            match h
                .link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute()
                .await
            {
                Err(e) if !exists(&e) => return Err(nl("add bridge", e)),
                _ => {}
            }
            link_index(&h, name)
                .await?
                .ok_or_else(|| SandboxError::Netlink(format!("bridge {name} vanished")))?
        }
    };
    add_addr(&h, index, gateway, prefix).await?;
    set_link(
        &h,
        LinkUnspec::new_with_index(index).up().build(),
        "bridge up",
    )
    .await
}

/// The host end's name: unique per pod, within the 15-byte interface name limit.
pub fn host_veth(uid: &str) -> String {
    let short: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(11)
        .collect();
    format!("veth{short}")
}

pub struct PodNet<'a> {
    pub uid: &'a str,
    pub netns: &'a Path,
    pub bridge: &'a str,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub link: PodLink,
}

/// Wires the pod's namespace to the bridge. Idempotent: a pod whose `eth0` is already
/// configured is left as it is.
pub async fn attach(p: &PodNet<'_>) -> Result<(), SandboxError> {
    let host = host_veth(p.uid);
    let peer = format!("{}p", &host[..host.len().min(14)]);
    let h = connect()?;
    if link_index(&h, &host).await?.is_none() {
        let ns = std::fs::File::open(p.netns)?;
        h.link()
            .add(LinkVeth::new(&host, &peer).mtu(p.link.mtu).build())
            .execute()
            .await
            .map_err(|e| nl("add veth", e))?;
        let peer_index = link_index(&h, &peer)
            .await?
            .ok_or_else(|| SandboxError::Netlink("veth peer vanished".into()))?;
        use std::os::fd::AsRawFd;
        set_link(
            &h,
            LinkUnspec::new_with_index(peer_index)
                .setns_by_fd(ns.as_raw_fd())
                .build(),
            "move veth into pod",
        )
        .await?;
    }
    let bridge = link_index(&h, p.bridge)
        .await?
        .ok_or_else(|| SandboxError::Netlink(format!("no bridge {}", p.bridge)))?;
    let index = link_index(&h, &host)
        .await?
        .ok_or_else(|| SandboxError::Netlink("veth vanished".into()))?;
    set_link(
        &h,
        sized(
            LinkUnspec::new_with_index(index).controller(bridge).up(),
            p.link,
        ),
        "veth onto bridge",
    )
    .await?;
    if p.link.gso_max.is_some() {
        // A bridge takes a size above 64 KiB only once it has a port that does.
        set_link(
            &h,
            sized(LinkUnspec::new_with_index(bridge), p.link),
            "bridge GSO size",
        )
        .await?;
    }
    // Hairpin (the CNI bridge plugin's hairpinMode, as flannel configures it): a pod reaching
    // itself through a Service VIP gets the DNATed packet back out of the port it came in.
    // Port attributes go in RTM_NEWLINK (`set_port`); RTM_SETLINK ignores them silently.
    h.link()
        .set_port(rtnetlink::LinkBridgePort::new(index).hairpin(true).build())
        .execute()
        .await
        .map_err(|e| nl("hairpin on the bridge port", e))?;
    let (ip, prefix, gw, link) = (p.ip, p.prefix, p.gateway, p.link);
    let path = p.netns.to_path_buf();
    // The namespace switch needs a thread of its own; keep the agent's thread free meanwhile.
    tokio::task::spawn_blocking(move || {
        netns::run_in(&path, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(inside(peer, ip, prefix, gw, link))
        })
    })
    .await
    .map_err(|e| SandboxError::Sys(format!("netns task: {e}")))?
}

/// Inside the pod: `lo` up, the peer renamed `eth0` with the pod's link sizes (a veth's are
/// set per end; the pod's TCP sizes its packets by them), address, default route.
async fn inside(
    peer: String,
    ip: Ipv4Addr,
    prefix: u8,
    gw: Ipv4Addr,
    link: PodLink,
) -> Result<(), SandboxError> {
    let h = connect()?;
    if let Some(lo) = link_index(&h, "lo").await? {
        set_link(&h, LinkUnspec::new_with_index(lo).up().build(), "lo up").await?;
    }
    let eth0 = match link_index(&h, "eth0").await? {
        Some(i) => i,
        None => {
            let i = link_index(&h, &peer)
                .await?
                .ok_or_else(|| SandboxError::Netlink("veth peer missing in pod".into()))?;
            set_link(
                &h,
                LinkUnspec::new_with_index(i)
                    .name("eth0".to_string())
                    .build(),
                "rename eth0",
            )
            .await?;
            i
        }
    };
    add_addr(&h, eth0, ip, prefix).await?;
    set_link(
        &h,
        sized(LinkUnspec::new_with_index(eth0).mtu(link.mtu).up(), link),
        "eth0 up",
    )
    .await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
    match h.route().add(route).execute().await {
        Err(e) if !exists(&e) => Err(nl("default route", e)),
        _ => Ok(()),
    }
}

/// Removes the host end (the pair goes with it); missing is fine.
pub async fn detach(uid: &str) -> Result<(), SandboxError> {
    let h = connect()?;
    if let Some(i) = link_index(&h, &host_veth(uid)).await? {
        match h.link().del(i).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => {}
            Err(e) => return Err(nl("delete veth", e)),
            Ok(()) => {}
        }
    }
    Ok(())
}
