//! The user-space VXLAN backend: the kernel routes pod traffic for remote subnets into a TAP
//! device (same routes and permanent neighbours as the kernel backend), and two threads move
//! frames: TAP -> VXLAN header (pnet) -> UDP to the peer's underlay IP, and UDP -> header
//! checked -> TAP. The FDB (VTEP MAC -> underlay IP) lives here instead of in the kernel.
//! Interoperable with the kernel backend: same port, VNI and inner addressing.

use std::collections::HashMap;
use std::io::{IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tracing::{info, warn};

use crate::config::OverlayConfig;
use crate::device::{self, Route};
use crate::gro::{self, Coalescer};
use crate::lease::Peer;
use crate::metrics::OverlayMetrics;
use crate::offload::{self, Frames, VnetHdr, VNET_HDR_LEN};
use crate::underlay::Underlay;
use crate::wire::{self, Drop, HEADER_LEN};
use crate::OverlayError;

type Fdb = Arc<RwLock<HashMap<[u8; 6], Ipv4Addr>>>;

pub struct UserVxlan {
    h: Handle,
    index: u32,
    mac: [u8; 6],
    fdb: Fdb,
}

/// Socket buffers large enough for a burst of a TCP window.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

impl UserVxlan {
    /// The TAP device (a kernel VXLAN device of the same name from an earlier run goes),
    /// the UDP socket on the underlay address, and the two datapath threads.
    pub async fn create(
        cfg: &OverlayConfig,
        u: &Underlay,
        mtu: u32,
        mac: [u8; 6],
        metrics: OverlayMetrics,
    ) -> Result<Self, OverlayError> {
        let h = device::connect()?;
        if let Some(old) = device::link(&h, &cfg.device).await? {
            if old.vxlan.is_some() {
                device::delete_link(&h, old.index).await?;
            }
        }
        let tap = crate::tap::open(&cfg.device)
            .map_err(|e| OverlayError::Config(format!("TAP device {}: {e}", cfg.device)))?;
        offload::enable(&tap)?;
        let link = device::link(&h, &cfg.device)
            .await?
            .ok_or_else(|| OverlayError::Netlink(format!("{} vanished", cfg.device)))?;
        device::set_up(&h, link.index, mtu, Some(mac)).await?;
        let sock = UdpSocket::bind(SocketAddrV4::new(u.ip, cfg.port))?;
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // SAFETY: a valid socket and a c_int option value of the right size.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&SOCKET_BUFFER as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        gro::enable_gro(&sock)?;
        let fdb: Fdb = Arc::default();
        let tap = Arc::new(tap);
        let sock = Arc::new(sock);
        let dp = Datapath {
            tap,
            sock,
            fdb: fdb.clone(),
            vni: cfg.vni,
            port: cfg.port,
            mac,
            metrics,
        };
        let encap = dp.clone();
        std::thread::Builder::new()
            .name("vxlan-encap".into())
            .spawn(move || encap.encap_loop())?;
        std::thread::Builder::new()
            .name("vxlan-decap".into())
            .spawn(move || dp.decap_loop())?;
        info!(
            device = cfg.device,
            port = cfg.port,
            "user-space VXLAN datapath running"
        );
        Ok(UserVxlan {
            h,
            index: link.index,
            mac,
            fdb,
        })
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub async fn set_subnet(&self, own: Ipv4Net) -> Result<(), OverlayError> {
        device::ensure_only_addr(&self.h, self.index, own.network()).await
    }

    /// The in-process FDB and the kernel neighbours for exactly `peers`; returns the routes.
    pub async fn sync(&self, peers: &[&Peer]) -> Result<Vec<Route>, OverlayError> {
        let fdb: HashMap<[u8; 6], Ipv4Addr> = peers
            .iter()
            .filter_map(|p| Some((p.vxlan?.vtep_mac, p.public_ip)))
            .collect();
        if let Ok(mut g) = self.fdb.write() {
            *g = fdb;
        }
        crate::vxlan::sync_neighbours(&self.h, self.index, peers).await?;
        Ok(crate::vxlan::routes_via(self.index, peers))
    }
}

#[derive(Clone)]
struct Datapath {
    tap: Arc<std::fs::File>,
    sock: Arc<UdpSocket>,
    fdb: Fdb,
    vni: u32,
    port: u16,
    mac: [u8; 6],
    metrics: OverlayMetrics,
}

impl Datapath {
    fn count_drop(&self, why: &str) {
        self.metrics.drops.with_label_values(&[why]).inc();
    }

    /// TAP -> UDP. A read gives the virtio-net header and the frame; the VXLAN header is
    /// written over the end of the former, so a plain frame is sent without a copy; a TCP
    /// super-frame is cut into MSS frames and sent as one UDP GSO batch.
    fn encap_loop(self) {
        // The VXLAN header goes where the last 8 bytes of the virtio-net header were.
        const AT: usize = VNET_HDR_LEN - HEADER_LEN;
        let mut buf = vec![0u8; VNET_HDR_LEN + 65536];
        let mut scratch = Vec::with_capacity(96 * 1024);
        let (packets, bytes) = (
            self.metrics.packets.with_label_values(&["encap"]),
            self.metrics.bytes.with_label_values(&["encap"]),
        );
        loop {
            let n = match (&*self.tap).read(&mut buf) {
                Ok(n) if n > VNET_HDR_LEN => n,
                Ok(_) => continue,
                Err(e) => {
                    warn!("TAP read: {e}; user-space VXLAN stops sending");
                    return;
                }
            };
            let (Some(hdr), Some(dst)) = (
                VnetHdr::parse(&buf),
                wire::destination(&buf[VNET_HDR_LEN..n]),
            ) else {
                self.count_drop(Drop::Malformed.as_str());
                continue;
            };
            let remote = self.fdb.read().ok().and_then(|f| f.get(&dst).copied());
            let Some(remote) = remote else {
                // Broadcasts (ARP) and unknown MACs: every peer is pre-programmed.
                self.count_drop(Drop::NoPeer.as_str());
                continue;
            };
            let to = SocketAddrV4::new(remote, self.port);
            let frame_len = n - VNET_HDR_LEN;
            let sent =
                match offload::prepare(hdr, &mut buf[VNET_HDR_LEN..n], HEADER_LEN, &mut scratch) {
                    Some(Frames::One) => {
                        let out = &mut buf[AT..n];
                        wire::encapsulate(out, self.vni)
                            .ok()
                            .map(|_| (self.sock.send_to(out, to).map(|_| ()), 1))
                    }
                    Some(Frames::Segmented(seg)) => {
                        let mut count = 0;
                        for s in scratch.chunks_mut(seg) {
                            let _ = wire::encapsulate(s, self.vni);
                            count += 1;
                        }
                        Some((offload::send_segments(&self.sock, &scratch, seg, to), count))
                    }
                    None => None,
                };
            match sent {
                Some((Ok(()), count)) => {
                    packets.inc_by(count);
                    bytes.inc_by(frame_len as u64);
                }
                Some((Err(_), _)) => self.count_drop("io"),
                None => self.count_drop(Drop::Malformed.as_str()),
            }
        }
    }

    /// UDP -> TAP. Datagrams come one by one, or as a GRO batch from a user-space peer's
    /// GSO send; consecutive TCP segments of a flow are joined again and written as one
    /// GSO frame, anything else is written as it is.
    fn decap_loop(self) {
        let mut buf = vec![0u8; 65536];
        let mut joined = Coalescer::default();
        let (packets, bytes) = (
            self.metrics.packets.with_label_values(&["decap"]),
            self.metrics.bytes.with_label_values(&["decap"]),
        );
        let mut plain = [0u8; VNET_HDR_LEN];
        VnetHdr::write_plain(&mut plain);
        loop {
            let (n, seg) = match gro::recv_batch(&self.sock, &mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("VXLAN socket: {e}; user-space VXLAN stops receiving");
                    return;
                }
            };
            for d in buf[..n].chunks_mut(seg) {
                let inner = match wire::decapsulate(d, self.vni, self.mac) {
                    Ok(inner) => inner,
                    Err(why) => {
                        self.count_drop(why.as_str());
                        continue;
                    }
                };
                packets.inc();
                bytes.inc_by(inner.len() as u64);
                if joined.add(inner) {
                    continue;
                }
                self.flush(&mut joined);
                if joined.add(inner) {
                    continue;
                }
                wire::complete_checksum(inner);
                let out = [IoSlice::new(&plain), IoSlice::new(inner)];
                if (&*self.tap).write_vectored(&out).is_err() {
                    self.count_drop("io");
                }
            }
            self.flush(&mut joined);
        }
    }

    fn flush(&self, joined: &mut Coalescer) {
        if let Some(frame) = joined.take() {
            if (&*self.tap).write_all(frame).is_err() {
                self.count_drop("io");
            }
        }
    }
}
