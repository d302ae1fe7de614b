//! Pod IPs from the node's pod subnet. Allocations live in one JSON file, rewritten
//! atomically before an address is used, so a restarted agent never hands out a live one.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SandboxError;

/// An IPv4 subnet `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Self, SandboxError> {
        let bad = || SandboxError::Config(format!("pod CIDR {s:?} is not an IPv4 a.b.c.d/len"));
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    subnet: String,
    /// IP -> pod UID.
    allocated: BTreeMap<Ipv4Addr, String>,
}

pub struct Ipam {
    path: PathBuf,
    subnet: Subnet,
    state: State,
}

impl Ipam {
    /// Loads the allocations; those outside `subnet` (a changed pod CIDR) are dropped.
    pub fn open(path: PathBuf, subnet: Subnet) -> Result<Self, SandboxError> {
        let mut state: State = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| SandboxError::Config(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e.into()),
        };
        state.allocated.retain(|ip, _| subnet.contains(*ip));
        state.subnet = subnet.to_string();
        Ok(Ipam {
            path,
            subnet,
            state,
        })
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The pod's address: the one it already has, else the lowest free one.
    pub fn allocate(&mut self, uid: &str) -> Result<Ipv4Addr, SandboxError> {
        if let Some((ip, _)) = self.state.allocated.iter().find(|(_, u)| *u == uid) {
            return Ok(*ip);
        }
        let base = u32::from(self.subnet.network);
        // Skip the network address, the gateway and the broadcast address.
        let free = (2..self.subnet.size() - 1)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|ip| !self.state.allocated.contains_key(ip))
            .ok_or_else(|| SandboxError::Exhausted(self.subnet.to_string()))?;
        self.state.allocated.insert(free, uid.to_string());
        self.save()?;
        Ok(free)
    }

    pub fn release(&mut self, uid: &str) -> Result<(), SandboxError> {
        let before = self.state.allocated.len();
        self.state.allocated.retain(|_, u| u != uid);
        if self.state.allocated.len() != before {
            self.save()?;
        }
        Ok(())
    }

    /// UIDs holding an address.
    pub fn holders(&self) -> Vec<String> {
        self.state.allocated.values().cloned().collect()
    }

    fn save(&self) -> Result<(), SandboxError> {
        let tmp = self.path.with_extension("tmp");
        let bytes =
            serde_json::to_vec(&self.state).map_err(|e| SandboxError::Config(e.to_string()))?;
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_survive_a_restart_and_are_reused_after_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipam.json");
        let subnet = Subnet::parse("10.244.1.7/24").expect("subnet");
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        let mut a = Ipam::open(path.clone(), subnet).expect("open");
        let first = a.allocate("p1").expect("p1");
        let second = a.allocate("p2").expect("p2");
        assert_eq!(first, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(second, Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(a.allocate("p1").expect("again"), first);
        drop(a);
        let mut b = Ipam::open(path, subnet).expect("reopen");
        assert_eq!(b.allocate("p3").expect("p3"), Ipv4Addr::new(10, 244, 1, 4));
        b.release("p1").expect("release");
        assert_eq!(b.allocate("p4").expect("p4"), first);
    }

    #[test]
    fn a_full_subnet_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let subnet = Subnet::parse("10.0.0.0/30").expect("subnet");
        let mut a = Ipam::open(dir.path().join("ipam.json"), subnet).expect("open");
        assert!(a.allocate("p1").is_ok());
        assert!(matches!(a.allocate("p2"), Err(SandboxError::Exhausted(_))));
        assert!(Subnet::parse("10.0.0.0").is_err());
    }
}
