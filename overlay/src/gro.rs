//! The receive side of the user-space datapath's offloads: UDP GRO hands over a peer's GSO
//! batch in one read, and consecutive TCP segments of a flow are joined back into one
//! super-frame written to the TAP with a GSO virtio-net header, so the kernel forwards one
//! packet instead of ~45 (what GRO does for a NIC).

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use crate::offload::{add, fold, F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN};

/// Receives a datagram, or with UDP GRO a batch of equal-sized datagrams (the last may be
/// shorter) sent as one; returns the bytes received and the size of one datagram.
pub fn recv_batch(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, usize)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: the iovec and control buffer outlive the call; cmsgs are walked with CMSG_*
    // inside the length the kernel reported.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let mut seg = n;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let mut v = [0u8; 4];
                std::ptr::copy_nonoverlapping(libc::CMSG_DATA(c), v.as_mut_ptr(), 4);
                seg = (i32::from_ne_bytes(v) as usize).clamp(1, n.max(1));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok((n, seg))
    }
}

/// Lets the socket receive GSO batches whole (see `recv_batch`).
pub fn enable_gro(sock: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Joins consecutive TCPv4 segments of one flow back into a super-frame (the receive-side
/// twin of `offload::segment_tcp4`).
pub struct Coalescer {
    /// virtio-net header room, then the frame being built.
    frame: Vec<u8>,
    hlen: usize,
    mss: usize,
    next_seq: u32,
    count: usize,
}

const ETH: usize = 14;

/// (header length, payload length, seq, flags) of a plain TCPv4 frame that may be merged.
fn tcp4(f: &[u8]) -> Option<(usize, usize, u32, u8)> {
    if f.len() < ETH + 40 || f[12..14] != [0x08, 0x00] || f[ETH] >> 4 != 4 {
        return None;
    }
    let ihl = (f[ETH] as usize & 0x0f) * 4;
    let total = u16::from_be_bytes([f[ETH + 2], f[ETH + 3]]) as usize;
    let frag = u16::from_be_bytes([f[ETH + 6], f[ETH + 7]]) & 0x3fff;
    if f[ETH + 9] != 6 || frag != 0 || ihl != 20 || ETH + total > f.len() {
        return None;
    }
    let l4 = ETH + ihl;
    let doff = (f[l4 + 12] as usize >> 4) * 4;
    let flags = f[l4 + 13];
    // Only ACK, with PSH allowed: anything else goes through alone.
    if doff < 20 || ihl + doff > total || flags & !0x18 != 0 || flags & 0x10 == 0 {
        return None;
    }
    let seq = u32::from_be_bytes(f[l4 + 4..l4 + 8].try_into().ok()?);
    Some((l4 + doff, ETH + total - (l4 + doff), seq, flags))
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            frame: Vec::with_capacity(VNET_HDR_LEN + 65536),
            hlen: 0,
            mss: 0,
            next_seq: 0,
            count: 0,
        }
    }
}

impl Coalescer {
    /// Takes the frame into the current super-frame if it continues it; `false`: the caller
    /// flushes and sends it another way.
    pub fn add(&mut self, f: &[u8]) -> bool {
        let Some((hlen, len, seq, flags)) = tcp4(f) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        if self.count == 0 {
            self.frame.clear();
            self.frame.resize(VNET_HDR_LEN, 0);
            self.frame.extend_from_slice(&f[..hlen + len]);
            (self.hlen, self.mss, self.next_seq, self.count) =
                (hlen, len, seq.wrapping_add(len as u32), 1);
            return true;
        }
        let h = &self.frame[VNET_HDR_LEN..VNET_HDR_LEN + self.hlen];
        let l4 = ETH + 20;
        // Same addresses, ports, ack and window; the next bytes of the stream; the previous
        // segment full-sized (only the last may be short) and not pushed; room left.
        let same = hlen == self.hlen
            && f[..ETH] == h[..ETH]
            && f[ETH + 12..ETH + 20] == h[ETH + 12..ETH + 20]
            && f[l4..l4 + 4] == h[l4..l4 + 4]
            && f[l4 + 8..l4 + 12] == h[l4 + 8..l4 + 12]
            && f[l4 + 14..l4 + 16] == h[l4 + 14..l4 + 16]
            && f[l4 + 20..hlen] == h[l4 + 20..hlen];
        let prev_flags = h[l4 + 13];
        let last_full = (self.frame.len() - VNET_HDR_LEN - self.hlen) == self.count * self.mss;
        if !same
            || seq != self.next_seq
            || len > self.mss
            || !last_full
            || prev_flags & 0x08 != 0
            || self.frame.len() + len > VNET_HDR_LEN + 65_000
        {
            return false;
        }
        self.frame.extend_from_slice(&f[hlen..hlen + len]);
        self.frame[VNET_HDR_LEN + l4 + 13] |= flags & 0x08;
        self.next_seq = seq.wrapping_add(len as u32);
        self.count += 1;
        true
    }

    /// The pending super-frame with its virtio-net header, ready to write; empties the
    /// coalescer. A single segment goes out plain with its checksum finished.
    pub fn take(&mut self) -> Option<&[u8]> {
        if self.count == 0 {
            return None;
        }
        let count = std::mem::take(&mut self.count);
        let f = &mut self.frame[VNET_HDR_LEN..];
        let total = f.len() - ETH;
        f[ETH + 2..ETH + 4].copy_from_slice(&(total as u16).to_be_bytes());
        f[ETH + 10..ETH + 12].fill(0);
        let ip_sum = fold(add(0, &f[ETH..ETH + 20]));
        f[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let l4 = ETH + 20;
        let tcp_len = f.len() - l4;
        // The pseudo-header sum, as the kernel leaves it for a partial checksum.
        let mut pseudo = add(0, &f[ETH + 12..ETH + 20]);
        pseudo = add(pseudo, &[0, 6]);
        pseudo = add(pseudo, &(tcp_len as u16).to_be_bytes());
        f[l4 + 16..l4 + 18].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
        let h = &mut self.frame[..VNET_HDR_LEN];
        h.fill(0);
        h[0] = F_NEEDS_CSUM;
        if count > 1 {
            h[1] = GSO_TCPV4;
            h[2..4].copy_from_slice(&(self.hlen as u16).to_ne_bytes());
            h[4..6].copy_from_slice(&(self.mss as u16).to_ne_bytes());
        }
        h[6..8].copy_from_slice(&(l4 as u16).to_ne_bytes());
        h[8..10].copy_from_slice(&16u16.to_ne_bytes());
        Some(&self.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::tests::super_frame;
    use crate::offload::{segment_tcp4, VnetHdr};
    use pnet_packet::ipv4;
    use pnet_packet::tcp::TcpPacket;

    #[test]
    fn segments_of_a_flow_are_joined_back_into_one_gso_frame() {
        let mut f = super_frame(3000);
        f[34 + 13] = 0x18; // ACK|PSH: a FIN ends the stream and is never joined
        let mut out = Vec::new();
        let seg = segment_tcp4(&f, 1400, 8, &mut out).unwrap();
        let mut c = Coalescer::default();
        for s in out.chunks(seg) {
            assert!(c.add(&s[8..]));
        }
        // A segment that does not continue the stream is refused.
        assert!(!c.add(&out[8..seg]));
        let joined = c.take().unwrap().to_vec();
        let h = VnetHdr::parse(&joined).unwrap();
        assert_eq!(
            (h.flags, h.gso_type, h.gso_size),
            (F_NEEDS_CSUM, GSO_TCPV4, 1400)
        );
        assert_eq!((h.csum_start, h.csum_offset), (34, 16));
        let frame = &joined[VNET_HDR_LEN..];
        assert_eq!(frame.len(), f.len());
        assert_eq!(&frame[54..], &f[54..], "payload in order");
        let ip = pnet_packet::ipv4::Ipv4Packet::new(&frame[14..]).unwrap();
        assert_eq!(ip.get_total_length() as usize, f.len() - 14);
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
        let t = TcpPacket::new(&frame[34..]).unwrap();
        assert_eq!(t.get_sequence(), 1000);
        assert_eq!(t.get_flags() & 0x08, 0x08, "PSH of the last segment kept");
        assert!(c.take().is_none());
    }
}
