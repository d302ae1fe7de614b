//! Pod sandboxes: one network namespace per pod (the article's infra container), wired to the
//! node bridge, with the pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.

mod etc;
pub mod ipam;
pub mod netns;
pub mod network;

use std::net::Ipv4Addr;
use std::sync::Mutex;

use thiserror::Error;

pub use etc::{hostname as etc_hostname, write_etc_files, EtcFiles};
pub use ipam::{Ipam, Subnet};

use super::layout::NodeDirs;

/// Size limits of the bridge and every pod veth (both ends), from the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLink {
    pub mtu: u32,
    /// `gso_ipv4_max_size` and `gro_ipv4_max_size` above the kernel's 64 KiB default (BIG
    /// TCP), when the underlay allows it; `None` keeps the default.
    pub gso_max: Option<u32>,
}

impl Default for PodLink {
    /// Without an overlay: Ethernet's MTU, default GSO sizes.
    fn default() -> Self {
        PodLink {
            mtu: 1500,
            gso_max: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("{0}")]
    Sys(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{0}")]
    Config(String),
    #[error("no free pod IP in {0}")]
    Exhausted(String),
    #[error("node has no pod CIDR yet")]
    NoPodCidr,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct Sandboxes {
    bridge: String,
    link: PodLink,
    dirs: NodeDirs,
    ipam: Mutex<Option<Ipam>>,
}

impl Sandboxes {
    pub fn new(bridge: String, dirs: NodeDirs, link: PodLink) -> Self {
        Sandboxes {
            bridge,
            link,
            dirs,
            ipam: Mutex::new(None),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Option<Ipam>>, SandboxError> {
        self.ipam
            .lock()
            .map_err(|_| SandboxError::Sys("ipam lock poisoned".into()))
    }

    /// The pod subnet, once the node has one.
    pub fn subnet(&self) -> Option<Subnet> {
        self.lock().ok()?.as_ref().map(Ipam::subnet)
    }

    /// Takes the node's pod CIDR: bridge up with the gateway address, allocations loaded.
    pub async fn set_pod_cidr(&self, cidr: &str) -> Result<Subnet, SandboxError> {
        let subnet = Subnet::parse(cidr)?;
        if self.subnet() == Some(subnet) {
            return Ok(subnet);
        }
        network::ensure_bridge(&self.bridge, subnet.gateway(), subnet.prefix, self.link.mtu)
            .await?;
        let ipam = Ipam::open(self.dirs.state.join("ipam.json"), subnet)?;
        *self.lock()? = Some(ipam);
        Ok(subnet)
    }

    /// Namespace, address and veth for the pod (idempotent); returns the pod IP.
    pub async fn setup(&self, uid: &str) -> Result<Ipv4Addr, SandboxError> {
        let path = NodeDirs::netns(uid);
        let (ip, subnet) = {
            let mut guard = self.lock()?;
            let ipam = guard.as_mut().ok_or(SandboxError::NoPodCidr)?;
            (ipam.allocate(uid)?, ipam.subnet())
        };
        let p = path.clone();
        tokio::task::spawn_blocking(move || netns::create(&p))
            .await
            .map_err(|e| SandboxError::Sys(e.to_string()))??;
        network::attach(&network::PodNet {
            uid,
            netns: &path,
            bridge: &self.bridge,
            ip,
            prefix: subnet.prefix,
            gateway: subnet.gateway(),
            link: self.link,
        })
        .await?;
        Ok(ip)
    }

    /// Removes everything `setup` made; each step tolerates a missing part.
    pub async fn teardown(&self, uid: &str) -> Result<(), SandboxError> {
        network::detach(uid).await?;
        netns::remove(&NodeDirs::netns(uid))?;
        if let Some(ipam) = self.lock()?.as_mut() {
            ipam.release(uid)?;
        }
        Ok(())
    }

    /// Pod UIDs holding an address (the netns directory is shared by every node on a host,
    /// so it is not a record of this node's pods).
    pub fn known(&self) -> Vec<String> {
        self.lock()
            .ok()
            .and_then(|g| g.as_ref().map(Ipam::holders))
            .unwrap_or_default()
    }
}
