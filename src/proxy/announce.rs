//! LoadBalancer addresses on the underlay: exactly one Ready node holds each address (as a
//! /32 on its underlay interface, so its kernel answers ARP for it) and announces it with a
//! gratuitous ARP, so neighbours learn the new owner at once when it moves.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use rtnetlink::Handle;
use tracing::info;

use super::ProxyError;

/// The node that answers for `ip`: the same choice on every node, from the sorted names of
/// the Ready nodes; it moves only when that set changes.
pub fn owner(ip: Ipv4Addr, ready: &[String]) -> Option<&str> {
    if ready.is_empty() {
        return None;
    }
    Some(ready[u32::from(ip) as usize % ready.len()].as_str())
}

pub struct Announcer {
    handle: Handle,
    index: u32,
    mac: [u8; 6],
    pool: BTreeSet<Ipv4Addr>,
    /// Addresses of the pool this node holds; `None` until read from the kernel.
    held: Option<BTreeSet<Ipv4Addr>>,
}

fn nl(e: overlay::OverlayError) -> ProxyError {
    ProxyError::Netlink(e.to_string())
}

impl Announcer {
    /// On the interface that carries `node_ip`.
    pub async fn new(node_ip: Ipv4Addr, pool: Vec<Ipv4Addr>) -> Result<Announcer, ProxyError> {
        let handle = overlay::device::connect().map_err(nl)?;
        let index = overlay::device::addresses(&handle)
            .await
            .map_err(nl)?
            .into_iter()
            .find(|(_, ip, _)| *ip == node_ip)
            .map(|(i, _, _)| i)
            .ok_or_else(|| ProxyError::Netlink(format!("no interface has {node_ip}")))?;
        let mac = overlay::device::links(&handle)
            .await
            .map_err(nl)?
            .into_iter()
            .find(|l| l.index == index)
            .and_then(|l| l.mac)
            .unwrap_or_default();
        Ok(Announcer {
            handle,
            index,
            mac,
            pool: pool.into_iter().collect(),
            held: None,
        })
    }

    /// Holds exactly `want` (addresses of the pool); returns how many.
    pub async fn reconcile(&mut self, want: &BTreeSet<Ipv4Addr>) -> Result<usize, ProxyError> {
        let held = match self.held.take() {
            Some(h) => h,
            // A restarted proxy finds what an earlier run left.
            None => overlay::device::addresses(&self.handle)
                .await
                .map_err(nl)?
                .into_iter()
                .filter(|(i, ip, p)| *i == self.index && *p == 32 && self.pool.contains(ip))
                .map(|(_, ip, _)| ip)
                .collect(),
        };
        let mut now = held.clone();
        let result = async {
            for ip in held.difference(want) {
                overlay::device::del_addr(&self.handle, self.index, *ip, 32)
                    .await
                    .map_err(nl)?;
                now.remove(ip);
                info!(%ip, "load balancer address released");
            }
            for ip in want.difference(&held) {
                overlay::device::add_addr(&self.handle, self.index, *ip, 32)
                    .await
                    .map_err(nl)?;
                now.insert(*ip);
                gratuitous_arp(self.index, self.mac, *ip)?;
                info!(%ip, "load balancer address announced");
            }
            Ok::<(), ProxyError>(())
        }
        .await;
        let n = now.len();
        self.held = Some(now);
        result.map(|_| n)
    }
}

/// A broadcast ARP request for `ip` from `ip` (RFC 5227's announcement).
fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut buf = [0u8; 42];
    let src = MacAddr::new(mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    if let Some(mut eth) = MutableEthernetPacket::new(&mut buf) {
        eth.set_destination(MacAddr::broadcast());
        eth.set_source(src);
        eth.set_ethertype(EtherTypes::Arp);
    }
    if let Some(mut arp) = MutableArpPacket::new(&mut buf[14..]) {
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperations::Request);
        arp.set_sender_hw_addr(src);
        arp.set_sender_proto_addr(ip);
        arp.set_target_hw_addr(MacAddr::zero());
        arp.set_target_proto_addr(ip);
    }
    buf
}

fn gratuitous_arp(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> Result<(), ProxyError> {
    let buf = frame(mac, ip);
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket calls on a descriptor owned here and closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
        if fd < 0 {
            return Err(ProxyError::Io(std::io::Error::last_os_error()));
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let rc = libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(ProxyError::Io(err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::Packet;

    #[test]
    fn every_node_picks_the_same_owner_and_only_ready_ones() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let ip: Ipv4Addr = "10.90.0.200".parse().unwrap();
        let a = owner(ip, &nodes).unwrap();
        assert!(nodes.iter().any(|n| n == a));
        let without: Vec<String> = nodes.iter().filter(|n| *n != a).cloned().collect();
        let b = owner(ip, &without).unwrap();
        assert_ne!(a, b, "a node that is not Ready gives the address up");
        assert_eq!(owner(ip, &[]), None);
    }

    #[test]
    fn the_announcement_is_a_broadcast_arp_request_for_itself() {
        let mac = [2, 0, 0, 0, 0, 1];
        let ip: Ipv4Addr = "10.90.0.200".parse().unwrap();
        let buf = frame(mac, ip);
        let eth = EthernetPacket::new(&buf).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::broadcast());
        assert_eq!(eth.get_ethertype(), EtherTypes::Arp);
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!(arp.get_sender_proto_addr(), ip);
        assert_eq!(arp.get_target_proto_addr(), ip);
        assert_eq!(arp.get_sender_hw_addr(), MacAddr::new(2, 0, 0, 0, 0, 1));
    }
}
