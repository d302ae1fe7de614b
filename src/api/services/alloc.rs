//! The ClusterIP and NodePort pools: which values exist, which are reserved, and picking a
//! free one as kube-apiserver does (a random start in the upper, dynamic band, then the lower
//! band kept for values users ask for).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rand::Rng;
use thiserror::Error;

/// One key per allocated ClusterIP / NodePort, created in the same store transaction as the
/// Service that holds it (must not exist) and deleted with it.
pub const IP_PREFIX: &str = "/registry/allocations/serviceips/";
pub const PORT_PREFIX: &str = "/registry/allocations/nodeports/";

pub fn ip_key(ip: Ipv4Addr) -> String {
    format!("{IP_PREFIX}{ip}")
}

pub fn port_key(port: u16) -> String {
    format!("{PORT_PREFIX}{port}")
}

/// Why a value could not be allocated; the texts are upstream's allocator errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocError {
    #[error("provided IP is already allocated")]
    IpAllocated,
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: String, range: Ipv4Net },
    #[error("provided port is already allocated")]
    PortAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is {0}")]
    PortNotInRange(PortRange),
    #[error("range is full")]
    Full,
}

/// Inclusive NodePort range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A contiguous range of values `first..=last` with a lower band of `band` values that
/// dynamic allocation uses only when the rest is full (upstream's static subrange).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pool {
    first: u32,
    last: u32,
    band: u32,
}

impl Pool {
    /// `min`/`max`/`step`: upstream's band size rule (`size / step` clamped to min..=max; no
    /// band for ranges smaller than `min`).
    fn new(first: u32, last: u32, full_size: u64, min: u64, max: u64, step: u64) -> Self {
        let band = if full_size < min {
            0
        } else {
            (full_size / step).clamp(min, max)
        };
        let size = u64::from(last - first) + 1;
        Pool {
            first,
            last,
            band: band.min(size) as u32,
        }
    }

    fn contains(&self, v: u32) -> bool {
        (self.first..=self.last).contains(&v)
    }

    /// A free value: scanning from a random start through the dynamic band, then the static
    /// one, wrapping around within each.
    fn pick(&self, free: impl Fn(u32) -> bool, rng: &mut impl Rng) -> Option<u32> {
        let split = self.first + self.band;
        let mut bands = vec![(split, self.last)];
        if self.band > 0 {
            bands.push((self.first, split - 1));
        }
        for (lo, hi) in bands {
            if lo > hi {
                continue;
            }
            let size = u64::from(hi - lo) + 1;
            let start = rng.gen_range(0..size);
            let found = (0..size)
                .map(|i| lo + ((start + i) % size) as u32)
                .find(|&v| free(v));
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

/// The service network of a cluster: ClusterIPs from the CIDR (without its network and
/// broadcast addresses), the first address for `default/kubernetes`, the DNS address for
/// `kube-system/kube-dns`, and the NodePort range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub cidr: Ipv4Net,
    pub dns_ip: Ipv4Addr,
    pub ports: PortRange,
    ips: Pool,
    port_pool: Pool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetworkError {
    #[error("service CIDR {0} is too small (at most /30)")]
    TooSmall(Ipv4Net),
    #[error("DNS service IP {ip} is not a usable address of {cidr}")]
    DnsOutside { ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("NodePort range {0} is empty")]
    NoPorts(PortRange),
}

impl ServiceNetwork {
    pub fn new(cidr: Ipv4Net, dns_ip: Ipv4Addr, ports: PortRange) -> Result<Self, NetworkError> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() > 30 {
            return Err(NetworkError::TooSmall(cidr));
        }
        let network = u32::from(cidr.network());
        let broadcast = u32::from(cidr.broadcast());
        let full = 1u64 << (32 - cidr.prefix_len());
        let ips = Pool::new(network + 1, broadcast - 1, full, 16, 256, 16);
        if !ips.contains(u32::from(dns_ip)) {
            return Err(NetworkError::DnsOutside { ip: dns_ip, cidr });
        }
        if ports.first == 0 || ports.first > ports.last {
            return Err(NetworkError::NoPorts(ports));
        }
        let (a, b) = (u32::from(ports.first), u32::from(ports.last));
        let port_pool = Pool::new(a, b, u64::from(b - a) + 1, 16, 128, 32);
        Ok(ServiceNetwork {
            cidr,
            dns_ip,
            ports,
            ips,
            port_pool,
        })
    }

    /// The `kubernetes` Service's address: the first usable one.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.ips.first)
    }

    /// The Service (namespace, name) an address is set aside for, if any.
    pub fn reserved_for(&self, ip: Ipv4Addr) -> Option<(&'static str, &'static str)> {
        if ip == self.kubernetes_ip() {
            Some(("default", "kubernetes"))
        } else if ip == self.dns_ip {
            Some(("kube-system", "kube-dns"))
        } else {
            None
        }
    }

    /// Whether `owner` (namespace, name) may hold `ip`, before looking at who holds it.
    pub fn check_ip(&self, ip: &str, owner: (&str, &str)) -> Result<Ipv4Addr, AllocError> {
        let out = || AllocError::IpNotInRange {
            ip: ip.to_string(),
            range: self.cidr,
        };
        let addr: Ipv4Addr = ip.parse().map_err(|_| out())?;
        if !self.ips.contains(u32::from(addr)) {
            return Err(out());
        }
        match self.reserved_for(addr) {
            Some(r) if r != owner => Err(AllocError::IpAllocated),
            _ => Ok(addr),
        }
    }

    pub fn check_port(&self, port: i64) -> Result<u16, AllocError> {
        u16::try_from(port)
            .ok()
            .filter(|p| self.port_pool.contains(u32::from(*p)))
            .ok_or(AllocError::PortNotInRange(self.ports))
    }

    /// A free, unreserved ClusterIP.
    pub fn pick_ip(&self, taken: &HashSet<Ipv4Addr>) -> Result<Ipv4Addr, AllocError> {
        let free = |v: u32| {
            let ip = Ipv4Addr::from(v);
            self.reserved_for(ip).is_none() && !taken.contains(&ip)
        };
        let mut rng = rand::thread_rng();
        self.ips
            .pick(free, &mut rng)
            .map(Ipv4Addr::from)
            .ok_or(AllocError::Full)
    }

    /// A free NodePort.
    pub fn pick_port(&self, taken: &HashSet<u16>) -> Result<u16, AllocError> {
        let mut rng = rand::thread_rng();
        self.port_pool
            .pick(|v| !taken.contains(&(v as u16)), &mut rng)
            .map(|v| v as u16)
            .ok_or(AllocError::Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(cidr: &str, dns: &str, ports: (u16, u16)) -> ServiceNetwork {
        let ports = PortRange {
            first: ports.0,
            last: ports.1,
        };
        ServiceNetwork::new(cidr.parse().expect("cidr"), dns.parse().expect("ip"), ports)
            .expect("network")
    }

    fn default_net() -> ServiceNetwork {
        net("10.96.0.0/16", "10.96.0.10", (30000, 32767))
    }

    #[test]
    fn range_excludes_network_and_broadcast_and_names_the_cidr() {
        let n = default_net();
        assert_eq!(n.kubernetes_ip(), Ipv4Addr::new(10, 96, 0, 1));
        let anyone = ("ns", "svc");
        assert_eq!(
            n.check_ip("10.96.255.254", anyone),
            Ok(Ipv4Addr::new(10, 96, 255, 254))
        );
        for bad in ["10.96.0.0", "10.96.255.255", "10.97.0.1", "fd00::1"] {
            let e = n.check_ip(bad, anyone).expect_err(bad);
            assert_eq!(
                e.to_string(),
                format!("the provided IP ({bad}) is not in the valid range. The range of valid IPs is 10.96.0.0/16")
            );
        }
    }

    #[test]
    fn reserved_addresses_belong_to_kubernetes_and_kube_dns_only() {
        let n = default_net();
        assert_eq!(
            n.check_ip("10.96.0.1", ("default", "other")),
            Err(AllocError::IpAllocated)
        );
        assert!(n.check_ip("10.96.0.1", ("default", "kubernetes")).is_ok());
        assert_eq!(
            n.check_ip("10.96.0.10", ("default", "kube-dns")),
            Err(AllocError::IpAllocated)
        );
        assert!(n
            .check_ip("10.96.0.10", ("kube-system", "kube-dns"))
            .is_ok());
        let small = net("10.0.0.0/29", "10.0.0.2", (30000, 30001));
        let mut taken = HashSet::new();
        for _ in 0..4 {
            let ip = small.pick_ip(&taken).expect("free address");
            assert!(small.reserved_for(ip).is_none(), "{ip} is reserved");
            assert!(taken.insert(ip), "{ip} twice");
        }
        let got: Vec<u8> = {
            let mut v: Vec<u8> = taken.iter().map(|ip| ip.octets()[3]).collect();
            v.sort();
            v
        };
        assert_eq!(got, [3, 4, 5, 6]);
    }

    #[test]
    fn dynamic_allocation_prefers_the_upper_band() {
        let n = default_net();
        let taken = HashSet::new();
        for _ in 0..200 {
            let ip = n.pick_ip(&taken).expect("ip");
            assert!(
                u32::from(ip) >= u32::from(Ipv4Addr::new(10, 96, 1, 1)),
                "{ip}"
            );
            let p = n.pick_port(&HashSet::new()).expect("port");
            assert!((30086..=32767).contains(&p), "{p}");
        }
        // With the upper band full, the lower one is used.
        let ports = net("10.96.0.0/16", "10.96.0.10", (30000, 30099));
        let upper: HashSet<u16> = (30016..=30099).collect();
        let p = ports.pick_port(&upper).expect("lower band");
        assert!((30000..30016).contains(&p), "{p}");
    }

    #[test]
    fn exhaustion_is_a_clear_error() {
        let n = net("10.0.0.0/30", "10.0.0.2", (30000, 30002));
        assert_eq!(n.pick_ip(&HashSet::new()), Err(AllocError::Full));
        assert_eq!(AllocError::Full.to_string(), "range is full");
        let taken: HashSet<u16> = (30000..=30002).collect();
        assert_eq!(n.pick_port(&taken), Err(AllocError::Full));
        let mut some = HashSet::new();
        some.insert(30001);
        let p = n.pick_port(&some).expect("one left");
        assert!(p == 30000 || p == 30002);
    }

    #[test]
    fn ports_outside_the_range_are_refused_with_the_range() {
        let n = default_net();
        assert_eq!(n.check_port(30080), Ok(30080));
        for bad in [29999, 32768, -1, 70000] {
            assert_eq!(
                n.check_port(bad).map_err(|e| e.to_string()),
                Err("provided port is not in the valid range. The range of valid ports is 30000-32767".to_string())
            );
        }
    }

    #[test]
    fn bad_networks_are_refused() {
        let ports = PortRange {
            first: 30000,
            last: 32767,
        };
        let dns: Ipv4Addr = "10.96.0.10".parse().expect("ip");
        assert!(ServiceNetwork::new("10.96.0.0/31".parse().expect("cidr"), dns, ports).is_err());
        assert!(ServiceNetwork::new("10.97.0.0/16".parse().expect("cidr"), dns, ports).is_err());
        let none = PortRange { first: 5, last: 4 };
        assert!(ServiceNetwork::new("10.96.0.0/16".parse().expect("cidr"), dns, none).is_err());
    }
}
