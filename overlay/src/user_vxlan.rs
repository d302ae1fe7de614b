//! The user-space VXLAN backend: the kernel routes pod traffic for remote subnets into a TAP
//! device (same routes and permanent neighbours as the kernel backend), and two threads move
//! frames: TAP -> VXLAN header (pnet) -> UDP to the peer's underlay IP, and UDP -> header
//! checked -> TAP. The FDB (VTEP MAC -> underlay IP) lives here instead of in the kernel.
//! Interoperable with the kernel backend: same port, VNI and inner addressing.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, RwLock};

use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tracing::{info, warn};

use crate::config::OverlayConfig;
use crate::device::{self, Route};
use crate::lease::Peer;
use crate::metrics::OverlayMetrics;
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
        let mut tc = tun::Configuration::default();
        tc.tun_name(&cfg.device).layer(tun::Layer::L2);
        let tap = tun::create(&tc)
            .map_err(|e| OverlayError::Config(format!("TAP device {}: {e}", cfg.device)))?;
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
            mtu: mtu as usize,
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
    tap: Arc<tun::Device>,
    sock: Arc<UdpSocket>,
    fdb: Fdb,
    vni: u32,
    port: u16,
    mac: [u8; 6],
    mtu: usize,
    metrics: OverlayMetrics,
}

impl Datapath {
    fn drop(&self, why: &str) {
        self.metrics.drops.with_label_values(&[why]).inc();
    }

    /// TAP -> UDP. The frame is read right behind room for the VXLAN header, so sending
    /// needs no copy.
    fn encap_loop(self) {
        let mut buf = vec![0u8; HEADER_LEN + self.mtu + 14 + 4];
        let (packets, bytes) = (
            self.metrics.packets.with_label_values(&["encap"]),
            self.metrics.bytes.with_label_values(&["encap"]),
        );
        loop {
            let n = match self.tap.recv(&mut buf[HEADER_LEN..]) {
                Ok(n) => n,
                Err(e) => {
                    warn!("TAP read: {e}; user-space VXLAN stops sending");
                    return;
                }
            };
            let frame = &buf[HEADER_LEN..HEADER_LEN + n];
            let Some(dst) = wire::destination(frame) else {
                self.drop(Drop::Malformed.as_str());
                continue;
            };
            let remote = self.fdb.read().ok().and_then(|f| f.get(&dst).copied());
            let Some(remote) = remote else {
                // Broadcasts (ARP) and unknown MACs: every peer is pre-programmed.
                self.drop(Drop::NoPeer.as_str());
                continue;
            };
            if wire::encapsulate(&mut buf[..HEADER_LEN + n], self.vni).is_err() {
                self.drop(Drop::Malformed.as_str());
                continue;
            }
            match self
                .sock
                .send_to(&buf[..HEADER_LEN + n], SocketAddrV4::new(remote, self.port))
            {
                Ok(_) => {
                    packets.inc();
                    bytes.inc_by(n as u64);
                }
                Err(_) => self.drop("io"),
            }
        }
    }

    /// UDP -> TAP.
    fn decap_loop(self) {
        let mut buf = vec![0u8; 65536];
        let (packets, bytes) = (
            self.metrics.packets.with_label_values(&["decap"]),
            self.metrics.bytes.with_label_values(&["decap"]),
        );
        loop {
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("VXLAN socket: {e}; user-space VXLAN stops receiving");
                    return;
                }
            };
            match wire::decapsulate(&mut buf[..n], self.vni, self.mac) {
                Ok(inner) => {
                    wire::complete_checksum(inner);
                    match self.tap.send(inner) {
                        Ok(_) => {
                            packets.inc();
                            bytes.inc_by(inner.len() as u64);
                        }
                        Err(_) => self.drop("io"),
                    }
                }
                Err(d) => self.drop(d.as_str()),
            }
        }
    }
}
