//! Offloads for the user-space datapath. The TAP is opened with a virtio-net header and TSO
//! enabled, so the kernel hands over whole TCP super-frames (up to 64 KiB) with their checksum
//! left to us; we cut them into MSS-sized frames here and send those as one UDP GSO batch, so a
//! 64 KiB write costs two system calls instead of ~45 of each kind.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket};

/// `struct virtio_net_hdr` (legacy, native endian): flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset.
pub const VNET_HDR_LEN: usize = 10;
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// The checksum was checked (we complete it ourselves before writing).
pub const F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
pub(crate) const GSO_TCPV4: u8 = 1;

const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;

/// Lets the kernel give the TAP's reader partial checksums and TCPv4 super-frames.
pub fn enable(tap: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value; the fd is a TAP opened with IFF_VNET_HDR.
    let r = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let h = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        Some(VnetHdr {
            flags: h[0],
            gso_type: h[1] & 0x7f,
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// A header for a frame we write: no offload, checksum already valid.
    pub fn write_plain(b: &mut [u8]) {
        b[..VNET_HDR_LEN].fill(0);
        b[0] = F_DATA_VALID;
    }
}

/// Ones' complement sum of `data`, added to `sum`.
pub(crate) fn add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    sum
}

pub(crate) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Finishes a checksum the kernel left partial: the field holds the pseudo-header sum, the
/// sum runs from `start` to the end of the frame.
pub fn finish_partial(frame: &mut [u8], start: usize, offset: usize) {
    let at = start + offset;
    if at + 2 > frame.len() || start > frame.len() {
        return;
    }
    let sum = fold(add(0, &frame[start..]));
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Cuts a TCPv4 super-frame (Ethernet + IPv4 + TCP + payload) into frames of at most `mss`
/// payload bytes, each with its own IP length, id and checksum and TCP sequence number,
/// flags and checksum, as the NIC would. Each frame is written behind `room` bytes (for the
/// VXLAN header) into `out`; returns the size of one full segment (room included).
pub fn segment_tcp4(frame: &[u8], mss: usize, room: usize, out: &mut Vec<u8>) -> Option<usize> {
    let l3 = 14;
    let ihl = (*frame.get(l3)? as usize & 0x0f) * 4;
    let l4 = l3 + ihl;
    let doff = (*frame.get(l4 + 12)? as usize >> 4) * 4;
    let hlen = l4 + doff;
    if mss == 0 || ihl < 20 || doff < 20 || frame.len() < hlen {
        return None;
    }
    let payload = &frame[hlen..];
    let ip_id = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);
    let seq = u32::from_be_bytes(frame[l4 + 4..l4 + 8].try_into().ok()?);
    let flags = frame[l4 + 13];
    let count = payload.len().div_ceil(mss).max(1);
    out.clear();
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let base = out.len();
        out.resize(base + room, 0);
        out.extend_from_slice(&frame[..hlen]);
        out.extend_from_slice(chunk);
        let seg = &mut out[base + room..];
        {
            let mut ip = MutableIpv4Packet::new(&mut seg[l3..])?;
            ip.set_total_length((ihl + doff + chunk.len()) as u16);
            ip.set_identification(ip_id.wrapping_add(i as u16));
            ip.set_checksum(0);
            let sum = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(sum);
        }
        let (src, dst) = {
            let ip = pnet_packet::ipv4::Ipv4Packet::new(&seg[l3..])?;
            (ip.get_source(), ip.get_destination())
        };
        let mut t = MutableTcpPacket::new(&mut seg[l4..])?;
        t.set_sequence(seq.wrapping_add((i * mss) as u32));
        // FIN and PSH only on the last segment, CWR only on the first.
        let mut f = flags;
        if i + 1 < count {
            f &= !(0x01 | 0x08);
        }
        if i > 0 {
            f &= !0x80;
        }
        t.set_flags(f);
        t.set_checksum(0);
        let sum = tcp::ipv4_checksum(&t.to_immutable(), &src, &dst);
        t.set_checksum(sum);
    }
    Some(room + hlen + mss)
}

/// Sends `buf` as UDP datagrams of `seg` bytes each (the last may be shorter) with one
/// system call (UDP GSO), splitting where a datagram batch would exceed 64 KiB.
pub fn send_segments(sock: &UdpSocket, buf: &[u8], seg: usize, to: SocketAddrV4) -> io::Result<()> {
    if buf.len() <= seg {
        sock.send_to(buf, to)?;
        return Ok(());
    }
    // The kernel takes at most 64 segments and 64 KiB of payload per call.
    let per_call = (65_000 / seg).clamp(1, 64) * seg;
    for part in buf.chunks(per_call) {
        send_gso(sock, part, seg as u16, to)?;
    }
    Ok(())
}

fn send_gso(sock: &UdpSocket, buf: &[u8], seg: u16, to: SocketAddrV4) -> io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one cmsghdr carrying a u16, aligned as the kernel expects.
    let mut control = [0u64; 4];
    // SAFETY: every pointer refers to a local that outlives the sendmsg call; CMSG_* are
    // used on a control buffer large enough for CMSG_SPACE(2).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&addr as *const libc::sockaddr_in).cast_mut().cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(2) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::copy_nonoverlapping(seg.to_ne_bytes().as_ptr(), libc::CMSG_DATA(c), 2);
        if libc::sendmsg(sock.as_raw_fd(), &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What one read from the TAP turns into.
pub enum Frames {
    /// One frame, ready (checksum finished if it was partial).
    One,
    /// Segments in the scratch buffer, each `seg` bytes apart.
    Segmented(usize),
}

/// Prepares a frame read with its virtio-net header: finishes a partial checksum, or cuts
/// a TCPv4 super-frame into `scratch` (behind `room` bytes each).
pub fn prepare(
    hdr: VnetHdr,
    frame: &mut [u8],
    room: usize,
    scratch: &mut Vec<u8>,
) -> Option<Frames> {
    match hdr.gso_type {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM != 0 {
                finish_partial(frame, hdr.csum_start as usize, hdr.csum_offset as usize);
            }
            Some(Frames::One)
        }
        GSO_TCPV4 => {
            segment_tcp4(frame, hdr.gso_size as usize, room, scratch).map(Frames::Segmented)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pnet_packet::tcp::TcpPacket;
    use pnet_packet::{MutablePacket, Packet};

    /// Ethernet + IPv4 + TCP (PSH|ACK|FIN) with `n` payload bytes.
    pub(crate) fn super_frame(n: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + n];
        f[12] = 0x08;
        {
            let mut ip = MutableIpv4Packet::new(&mut f[14..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((40 + n) as u16);
            ip.set_identification(100);
            ip.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocols::Tcp);
            ip.set_source([10, 244, 1, 5].into());
            ip.set_destination([10, 244, 2, 7].into());
        }
        let mut t = MutableTcpPacket::new(&mut f[34..]).unwrap();
        t.set_data_offset(5);
        t.set_sequence(1000);
        t.set_flags(0x10 | 0x08 | 0x01);
        for (i, b) in t.payload_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
        f
    }

    #[test]
    fn a_super_frame_is_cut_into_valid_mss_segments() {
        let f = super_frame(3000);
        let mut out = Vec::new();
        let seg = segment_tcp4(&f, 1400, 8, &mut out).unwrap();
        assert_eq!(seg, 8 + 54 + 1400);
        let segs: Vec<&[u8]> = out.chunks(seg).collect();
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let frame = &s[8..];
            let ip = pnet_packet::ipv4::Ipv4Packet::new(&frame[14..]).unwrap();
            assert_eq!(ip.get_identification(), 100 + i as u16);
            assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
            let t = TcpPacket::new(&frame[34..]).unwrap();
            assert_eq!(t.get_sequence(), 1000 + (i * 1400) as u32);
            assert_eq!(
                t.get_checksum(),
                tcp::ipv4_checksum(&t, &ip.get_source(), &ip.get_destination())
            );
            let last = i == 2;
            assert_eq!(t.get_flags() & 0x09 != 0, last, "FIN/PSH only on the last");
            payload.extend_from_slice(t.payload());
        }
        assert_eq!(payload, &f[54..]);
    }

    #[test]
    fn a_partial_checksum_is_finished() {
        let mut f = super_frame(11);
        let (src, dst) = ([10, 244, 1, 5].into(), [10, 244, 2, 7].into());
        let want = tcp::ipv4_checksum(&TcpPacket::new(&f[34..]).unwrap(), &src, &dst);
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let pseudo = fold(add(
            add(add(0, &[10, 244, 1, 5, 10, 244, 2, 7]), &[0, 6]),
            &((20 + 11) as u16).to_be_bytes(),
        ));
        f[34 + 16..34 + 18].copy_from_slice(&(!pseudo).to_be_bytes());
        finish_partial(&mut f, 34, 16);
        assert_eq!(u16::from_be_bytes([f[50], f[51]]), want);
    }
}
