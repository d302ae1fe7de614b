//! The VXLAN wire format (RFC 7348) with pnet: an 8-byte header (flags with the I bit, a
//! 24-bit VNI) in front of the inner Ethernet frame, carried in UDP.

use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::vxlan::{MutableVxlanPacket, VxlanPacket};

pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
const FLAG_VNI: u8 = 0x08;

/// Why a datagram or frame was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Too short, or the I flag is missing.
    Malformed,
    /// Another VXLAN network.
    OtherVni,
    /// The inner frame is not addressed to this VTEP.
    NotForUs,
    /// No peer owns the destination MAC.
    NoPeer,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::OtherVni => "other_vni",
            Drop::NotForUs => "not_for_us",
            Drop::NoPeer => "no_peer",
        }
    }
}

/// Writes the VXLAN header into `buf[..8]`; the inner frame must already follow it.
pub fn encapsulate(buf: &mut [u8], vni: u32) -> Result<(), Drop> {
    let mut h = MutableVxlanPacket::new(buf).ok_or(Drop::Malformed)?;
    h.set_flags(FLAG_VNI);
    h.set_reserved1(0);
    h.set_vni(vni & 0x00ff_ffff);
    h.set_reserved2(0);
    Ok(())
}

/// The inner frame of a VXLAN datagram, if it belongs to `vni` and is addressed to `mac`.
pub fn decapsulate(datagram: &mut [u8], vni: u32, mac: [u8; 6]) -> Result<&mut [u8], Drop> {
    let h = VxlanPacket::new(datagram).ok_or(Drop::Malformed)?;
    if h.get_flags() & FLAG_VNI == 0 {
        return Err(Drop::Malformed);
    }
    if h.get_vni() != vni & 0x00ff_ffff {
        return Err(Drop::OtherVni);
    }
    let inner = &mut datagram[HEADER_LEN..];
    let eth = EthernetPacket::new(inner).ok_or(Drop::Malformed)?;
    if eth.get_destination().octets() != mac {
        return Err(Drop::NotForUs);
    }
    Ok(inner)
}

/// Recomputes the TCP or UDP checksum of an unfragmented inner IPv4 packet. A sender on the
/// same kernel (a veth "wire") leaves inner checksums to offload, so they arrive
/// unfinished; the outer UDP checksum already covered these bytes, so nothing is hidden.
pub fn complete_checksum(frame: &mut [u8]) {
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::{tcp, udp};
    let Some(eth) = EthernetPacket::new(frame) else {
        return;
    };
    if eth.get_ethertype() != pnet_packet::ethernet::EtherTypes::Ipv4 {
        return;
    }
    let l3 = &mut frame[14..];
    let Some(ip) = Ipv4Packet::new(l3) else {
        return;
    };
    let (hl, total) = (
        ip.get_header_length() as usize * 4,
        ip.get_total_length() as usize,
    );
    let fragment = ip.get_fragment_offset() != 0 || ip.get_flags() & 0b001 != 0;
    if fragment || hl < 20 || total > l3.len() || total < hl {
        return;
    }
    let (src, dst, proto) = (
        ip.get_source(),
        ip.get_destination(),
        ip.get_next_level_protocol(),
    );
    let l4 = &mut l3[hl..total];
    if proto == IpNextHeaderProtocols::Tcp {
        if let Some(mut t) = tcp::MutableTcpPacket::new(l4) {
            let sum = tcp::ipv4_checksum(&t.to_immutable(), &src, &dst);
            t.set_checksum(sum);
        }
    } else if proto == IpNextHeaderProtocols::Udp {
        if let Some(mut u) = udp::MutableUdpPacket::new(l4) {
            // 0: the sender chose no checksum.
            if u.get_checksum() != 0 {
                let sum = udp::ipv4_checksum(&u.to_immutable(), &src, &dst);
                u.set_checksum(sum);
            }
        }
    }
}

/// Destination MAC of an Ethernet frame.
pub fn destination(frame: &[u8]) -> Option<[u8; 6]> {
    EthernetPacket::new(frame).map(|e| e.get_destination().octets())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::ipv4::MutableIpv4Packet;
    use pnet_packet::{MutablePacket, Packet};

    const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

    /// Inner IPv4 (source, destination) of a VXLAN payload.
    fn inner_ipv4(datagram: &[u8]) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
        let v = VxlanPacket::new(datagram)?;
        let eth = EthernetPacket::new(v.payload())?;
        let ip = pnet_packet::ipv4::Ipv4Packet::new(eth.payload())?;
        Some((ip.get_source(), ip.get_destination()))
    }

    fn frame(dst: [u8; 6]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + 14 + 20];
        buf[HEADER_LEN..HEADER_LEN + 6].copy_from_slice(&dst);
        buf[HEADER_LEN + 6..HEADER_LEN + 12].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        {
            let mut eth = MutableEthernetPacket::new(&mut buf[HEADER_LEN..]).unwrap();
            eth.set_ethertype(EtherTypes::Ipv4);
            let mut ip = MutableIpv4Packet::new(eth.payload_mut()).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_source([10, 244, 1, 5].into());
            ip.set_destination([10, 244, 2, 7].into());
        }
        buf
    }

    #[test]
    fn encapsulated_frames_decapsulate_for_their_vtep_only() {
        let mut buf = frame(PEER);
        encapsulate(&mut buf, 1).unwrap();
        assert_eq!(&buf[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        let copy = buf.clone();
        let inner = decapsulate(&mut buf, 1, PEER).expect("ours");
        assert_eq!(destination(inner), Some(PEER));
        assert_eq!(&*inner, &copy[HEADER_LEN..]);
        assert_eq!(
            inner_ipv4(&buf),
            Some(([10, 244, 1, 5].into(), [10, 244, 2, 7].into()))
        );
        assert_eq!(decapsulate(&mut buf, 2, PEER), Err(Drop::OtherVni));
        assert_eq!(
            decapsulate(&mut buf, 1, [2, 0, 0, 0, 0, 0x33]),
            Err(Drop::NotForUs)
        );
    }

    #[test]
    fn malformed_datagrams_are_dropped() {
        assert_eq!(
            decapsulate(&mut [0x08, 0, 0], 1, PEER),
            Err(Drop::Malformed)
        );
        let mut buf = frame(PEER);
        encapsulate(&mut buf, 1).unwrap();
        buf[0] = 0; // no I flag
        assert_eq!(decapsulate(&mut buf, 1, PEER), Err(Drop::Malformed));
        assert_eq!(decapsulate(&mut buf[..12], 1, PEER), Err(Drop::Malformed));
    }

    #[test]
    fn an_unfinished_tcp_checksum_is_completed() {
        use pnet_packet::ip::IpNextHeaderProtocols;
        use pnet_packet::tcp::{ipv4_checksum, MutableTcpPacket, TcpPacket};
        let mut f = vec![0u8; 14 + 20 + 20 + 5];
        {
            let mut eth = MutableEthernetPacket::new(&mut f).unwrap();
            eth.set_ethertype(EtherTypes::Ipv4);
            let mut ip = MutableIpv4Packet::new(eth.payload_mut()).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(45);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
            ip.set_source([10, 244, 1, 5].into());
            ip.set_destination([10, 244, 2, 7].into());
            let mut tcp = MutableTcpPacket::new(ip.payload_mut()).unwrap();
            tcp.set_data_offset(5);
            tcp.set_payload(b"hello");
            tcp.set_checksum(0x1234); // what offload leaves: not the real sum
        }
        complete_checksum(&mut f);
        let tcp = TcpPacket::new(&f[34..]).unwrap();
        let want = ipv4_checksum(&tcp, &[10, 244, 1, 5].into(), &[10, 244, 2, 7].into());
        assert_eq!(tcp.get_checksum(), want);
        assert_ne!(want, 0x1234);
    }
}
