//! Answering one question from a `Snapshot` of the cluster zone: the name forms of
//! kubernetes/dns docs/specification.md as CoreDNS's `kubernetes` plugin serves them.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use super::records::{fqdn, Kind, Port, Snapshot};

/// What one question resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Records of the name; `additionals` are the addresses of SRV targets.
    Found {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists, with no record of the asked type (NOERROR, SOA in authority).
    NoData,
    /// The name does not exist in the cluster zone (NXDOMAIN, SOA in authority).
    NxDomain,
    /// Not a cluster name (or a reverse name of no cluster address): ask upstream.
    Forward,
}

impl Snapshot {
    /// Whether `name` (lower case, no final dot) is the cluster domain or below it.
    fn relative<'n>(&self, name: &'n str) -> Option<&'n str> {
        if self.domain.is_empty() {
            return None;
        }
        if name == self.domain {
            return Some("");
        }
        name.strip_suffix(self.domain.as_str())?.strip_suffix('.')
    }

    /// Answers `qname`/`qtype` (any case) from the zone.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let lower = qname.to_lowercase().to_ascii();
        let lower = lower.trim_end_matches('.');
        if let Some(ip) = parse_reverse(lower) {
            return self.reverse_lookup(qname, ip, qtype);
        }
        let Some(rest) = self.relative(lower) else {
            return Lookup::Forward;
        };
        let labels: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('.').collect()
        };
        match labels.as_slice() {
            [] => self.apex(qname, qtype),
            ["svc" | "pod"] | [_, "svc" | "pod"] => Lookup::NoData,
            [name, ns, "svc"] => self.service(qname, ns, name, qtype),
            [host, name, ns, "svc"] => self.endpoint(qname, ns, name, host, qtype),
            [port, proto, name, ns, "svc"] => {
                match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                    (Some(port), Some(proto)) => self.srv(qname, ns, name, port, proto, qtype),
                    _ => Lookup::NxDomain,
                }
            }
            [ip, _, "pod"] => self.pod(qname, ip, qtype),
            _ => Lookup::NxDomain,
        }
    }

    /// `lookup`, and for a name outside the cluster domain the asker's search path applied
    /// here (CoreDNS's autopath): `NAME.<its namespace>.svc.<domain>` (when `src` is a pod's
    /// address), `NAME.svc.<domain>`, `NAME.<domain>`; the first that exists answers as a
    /// CNAME to it. Stub resolvers that send a dotted name as it is and give up on an error
    /// (busybox's nslookup with `web.default` or `web-0.web`) still find cluster names;
    /// everything else goes upstream.
    pub fn lookup_from(&self, qname: &Name, qtype: RecordType, src: Option<IpAddr>) -> Lookup {
        let direct = self.lookup(qname, qtype);
        let lower = qname.to_lowercase().to_ascii();
        let lower = lower.trim_end_matches('.');
        if direct != Lookup::Forward || self.domain.is_empty() || parse_reverse(lower).is_some() {
            return direct;
        }
        let ns = src.and_then(|ip| self.pod_namespaces.get(&ip));
        let suffixes = ns
            .map(|ns| format!("{ns}.svc.{}", self.domain))
            .into_iter()
            .chain([format!("svc.{}", self.domain), self.domain.clone()]);
        for suffix in suffixes {
            let Some(target) = fqdn(&format!("{lower}.{suffix}")) else {
                continue;
            };
            if matches!(
                self.lookup(&target, qtype),
                Lookup::Found { .. } | Lookup::NoData
            ) {
                return Lookup::Found {
                    answers: vec![self.record(qname.clone(), RData::CNAME(CNAME(target)))],
                    additionals: Vec::new(),
                };
            }
        }
        Lookup::Forward
    }

    fn record(&self, name: Name, data: RData) -> Record {
        Record::from_rdata(name, self.ttl, data)
    }

    /// Address records of `owner` from `ips`, of the family asked for.
    fn addresses(&self, owner: &Name, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
        let any = qtype == RecordType::ANY;
        let mut out = Vec::new();
        for ip in ips {
            match ip {
                IpAddr::V4(v4) if any || qtype == RecordType::A => {
                    out.push(self.record(owner.clone(), RData::A(A(*v4))))
                }
                IpAddr::V6(v6) if any || qtype == RecordType::AAAA => {
                    out.push(self.record(owner.clone(), RData::AAAA(AAAA(*v6))))
                }
                _ => {}
            }
        }
        out
    }

    fn found_or_nodata(answers: Vec<Record>) -> Lookup {
        if answers.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Found {
                answers,
                additionals: Vec::new(),
            }
        }
    }

    fn apex(&self, qname: &Name, qtype: RecordType) -> Lookup {
        match qtype {
            RecordType::SOA => Self::found_or_nodata(self.soa().into_iter().collect()),
            RecordType::NS => {
                let ns = fqdn(&format!("ns.dns.{}", self.domain));
                let rec = ns.map(|ns| self.record(qname.clone(), RData::NS(NS(ns))));
                Self::found_or_nodata(rec.into_iter().collect())
            }
            _ => Lookup::NoData,
        }
    }

    fn service(&self, qname: &Name, ns: &str, name: &str, qtype: RecordType) -> Lookup {
        let Some(svc) = self.services.get(&(ns.to_string(), name.to_string())) else {
            return Lookup::NxDomain;
        };
        match &svc.kind {
            // A CNAME stands for the name whatever the type asked (RFC 1034 3.6.2).
            Kind::External(target) => match fqdn(target) {
                Some(target) => Lookup::Found {
                    answers: vec![self.record(qname.clone(), RData::CNAME(CNAME(target)))],
                    additionals: Vec::new(),
                },
                None => Lookup::NoData,
            },
            Kind::ClusterIp(ips) => Self::found_or_nodata(self.addresses(qname, ips, qtype)),
            // The specification: a headless service without ready endpoints does not exist.
            Kind::Headless if svc.endpoints.is_empty() => Lookup::NxDomain,
            Kind::Headless => {
                let mut ips: Vec<IpAddr> = svc.endpoints.iter().map(|e| e.ip).collect();
                ips.sort();
                ips.dedup();
                Self::found_or_nodata(self.addresses(qname, &ips, qtype))
            }
        }
    }

    fn endpoint(
        &self,
        qname: &Name,
        ns: &str,
        name: &str,
        host: &str,
        qtype: RecordType,
    ) -> Lookup {
        // Pods' hostname.subdomain names too need the Service named by the subdomain, as
        // upstream (documented: "a headless Service ... with the same name as the subdomain").
        let key = (ns.to_string(), name.to_string());
        let Some(svc) = self.services.get(&key) else {
            return Lookup::NxDomain;
        };
        if matches!(svc.kind, Kind::External(_)) {
            return Lookup::NxDomain;
        }
        let mut ips: Vec<IpAddr> = svc
            .endpoints
            .iter()
            .filter(|e| e.hostname == host)
            .map(|e| e.ip)
            .collect();
        let pod_key = (key.0, key.1, host.to_string());
        ips.extend(self.pod_hosts.get(&pod_key).into_iter().flatten());
        if ips.is_empty() {
            return Lookup::NxDomain;
        }
        ips.sort();
        ips.dedup();
        Self::found_or_nodata(self.addresses(qname, &ips, qtype))
    }

    fn srv(
        &self,
        qname: &Name,
        ns: &str,
        name: &str,
        port: &str,
        proto: &str,
        qtype: RecordType,
    ) -> Lookup {
        let Some(svc) = self.services.get(&(ns.to_string(), name.to_string())) else {
            return Lookup::NxDomain;
        };
        let matches = |p: &Port| !p.name.is_empty() && p.name == port && p.protocol == proto;
        let svc_fqdn = format!("{name}.{ns}.svc.{}", self.domain);
        // (target, port, addresses of the target)
        let mut targets: Vec<(String, u16, Vec<IpAddr>)> = Vec::new();
        match &svc.kind {
            Kind::External(_) => return Lookup::NxDomain,
            Kind::ClusterIp(ips) => {
                for p in svc.ports.iter().filter(|p| matches(p)) {
                    targets.push((svc_fqdn.clone(), p.port, ips.clone()));
                }
            }
            Kind::Headless => {
                for ep in &svc.endpoints {
                    for p in ep.ports.iter().filter(|p| matches(p)) {
                        let target = format!("{}.{svc_fqdn}", ep.hostname);
                        match targets.iter_mut().find(|t| t.0 == target && t.1 == p.port) {
                            Some(t) => t.2.push(ep.ip),
                            None => targets.push((target, p.port, vec![ep.ip])),
                        }
                    }
                }
            }
        }
        if targets.is_empty() {
            return Lookup::NxDomain;
        }
        if qtype != RecordType::SRV && qtype != RecordType::ANY {
            return Lookup::NoData;
        }
        // CoreDNS: one priority, the weight split evenly (at least 1).
        let weight = u16::try_from(100 / targets.len()).unwrap_or(1).max(1);
        let (mut answers, mut additionals) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        for (target, port, ips) in &targets {
            let Some(target) = fqdn(target) else { continue };
            answers.push(self.record(
                qname.clone(),
                RData::SRV(SRV::new(0, weight, *port, target.clone())),
            ));
            if seen.insert(target.clone()) {
                additionals.extend(self.addresses(&target, ips, RecordType::ANY));
            }
        }
        Lookup::Found {
            answers,
            additionals,
        }
    }

    /// `a-b-c-d.<ns>.pod.<domain>`: any well-formed address (`pods insecure`, kubeadm's mode).
    fn pod(&self, qname: &Name, ip: &str, qtype: RecordType) -> Lookup {
        let v4 = ip.replace('-', ".").parse::<Ipv4Addr>().map(IpAddr::V4);
        let parsed = v4.or_else(|_| ip.replace('-', ":").parse::<Ipv6Addr>().map(IpAddr::V6));
        match parsed {
            Ok(ip) => Self::found_or_nodata(self.addresses(qname, &[ip], qtype)),
            Err(_) => Lookup::NxDomain,
        }
    }

    fn reverse_lookup(&self, qname: &Name, ip: IpAddr, qtype: RecordType) -> Lookup {
        // Reverse names of no cluster address go upstream (`fallthrough in-addr.arpa ip6.arpa`).
        let Some(targets) = self.reverse.get(&ip) else {
            return Lookup::Forward;
        };
        if qtype != RecordType::PTR && qtype != RecordType::ANY {
            return Lookup::NoData;
        }
        let answers = targets
            .iter()
            .filter_map(|t| fqdn(t))
            .map(|t| self.record(qname.clone(), RData::PTR(PTR(t))))
            .collect();
        Self::found_or_nodata(answers)
    }
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa`, 32 nibbles `.ip6.arpa`).
fn parse_reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rest
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        let [d, c, b, a] = octets.as_slice() else {
            return None;
        };
        return Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // Reversed: the last nibble is the high half of the first byte.
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}
