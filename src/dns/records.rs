//! The cluster zone as an index built from Services, EndpointSlices and Pods (`lookup`
//! answers questions from it). Pure: no I/O, so it is tested on plain objects.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{Name, RData, Record};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Port {
    pub(super) name: String,
    pub(super) protocol: String,
    pub(super) port: u16,
}

/// A ready endpoint address.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) ip: IpAddr,
    pub(super) hostname: String,
    /// The ports of its slice.
    pub(super) ports: Arc<Vec<Port>>,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    /// The CNAME target of an ExternalName service.
    External(String),
}

#[derive(Debug, Clone)]
pub(super) struct Svc {
    pub(super) kind: Kind,
    pub(super) ports: Vec<Port>,
    pub(super) publish_not_ready: bool,
    pub(super) endpoints: Vec<Endpoint>,
}

/// The cluster's records at one moment; rebuilt when the watched objects change.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Lower case, no leading or trailing dot; empty: no cluster zone at all.
    pub(super) domain: String,
    pub(super) ttl: u32,
    pub(super) serial: u32,
    /// (namespace, name).
    pub(super) services: HashMap<(String, String), Svc>,
    /// (namespace, subdomain, hostname) of running pods with an IP.
    pub(super) pod_hosts: HashMap<(String, String, String), Vec<IpAddr>>,
    /// Namespaces of pod addresses (the asker's search path, for autopath).
    pub(super) pod_namespaces: HashMap<IpAddr, String>,
    /// PTR targets of ClusterIPs and ready endpoint addresses (FQDNs without the final dot).
    pub(super) reverse: HashMap<IpAddr, Vec<String>>,
}

/// `name` as an absolute DNS name, if it is one (object names are validated by the API
/// server, but this is data from the network: never trust it to parse).
pub(super) fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// CoreDNS's `endpointHostname`: the address with dots (or colons) as dashes.
fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn ports_of<'a>(
    items: impl Iterator<Item = (Option<&'a String>, Option<&'a String>, Option<i32>)>,
) -> Vec<Port> {
    items
        .filter_map(|(name, proto, port)| {
            Some(Port {
                name: name.map(|n| n.to_ascii_lowercase()).unwrap_or_default(),
                protocol: proto.map_or_else(|| "tcp".into(), |p| p.to_ascii_lowercase()),
                port: u16::try_from(port?).ok()?,
            })
        })
        .collect()
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    ips
}

fn service_entry(svc: &Service) -> Option<((String, String), Svc)> {
    let name = svc.metadata.name.as_deref()?.to_ascii_lowercase();
    let ns = svc.metadata.namespace.as_deref()?.to_ascii_lowercase();
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        Kind::External(
            spec.external_name
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_ascii_lowercase(),
        )
    } else if spec.cluster_ip.as_deref() == Some("None") {
        Kind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                spec.cluster_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        Kind::ClusterIp(ips)
    };
    let ports = ports_of(
        spec.ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_ref(), p.protocol.as_ref(), Some(p.port))),
    );
    let entry = Svc {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses == Some(true),
        endpoints: Vec::new(),
    };
    Some(((ns, name), entry))
}

impl Snapshot {
    /// An empty zone (before the first lists arrive).
    pub fn empty(domain: &str, ttl: u32) -> Snapshot {
        Snapshot {
            domain: normalize_domain(domain),
            ttl,
            ..Snapshot::default()
        }
    }

    /// Indexes the objects. `serial` is the SOA serial of this version of the zone.
    pub fn build(
        domain: &str,
        ttl: u32,
        serial: u32,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        pods: &[Arc<Pod>],
    ) -> Snapshot {
        let mut snap = Snapshot {
            serial,
            ..Snapshot::empty(domain, ttl)
        };
        snap.services = services.iter().filter_map(|s| service_entry(s)).collect();
        // Pods that name a subdomain: their hostname answers under the Service of that name
        // (StatefulSets), and endpoints pointing at them take that hostname, as upstream's
        // endpoint controller would have written it.
        let mut named_pods: HashMap<(String, String), (String, String)> = HashMap::new();
        for pod in pods {
            let meta = &pod.metadata;
            let (Some(name), Some(ns)) = (meta.name.as_deref(), meta.namespace.as_deref()) else {
                continue;
            };
            for ip in pod_ips(pod) {
                snap.pod_namespaces.insert(ip, ns.to_ascii_lowercase());
            }
            let spec = pod.spec.as_ref();
            let host = spec
                .and_then(|s| s.hostname.as_deref())
                .filter(|h| !h.is_empty());
            let sub = spec
                .and_then(|s| s.subdomain.as_deref())
                .filter(|s| !s.is_empty());
            let (Some(host), Some(sub)) = (host, sub) else {
                continue;
            };
            let (ns, host, sub) = (
                ns.to_ascii_lowercase(),
                host.to_ascii_lowercase(),
                sub.to_ascii_lowercase(),
            );
            named_pods.insert((ns.clone(), name.to_string()), (host.clone(), sub.clone()));
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && meta.deletion_timestamp.is_none() {
                let ips = pod_ips(pod);
                if !ips.is_empty() {
                    snap.pod_hosts
                        .entry((ns, sub, host))
                        .or_default()
                        .extend(ips);
                }
            }
        }
        for slice in slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else {
                continue;
            };
            let ns = ns.to_ascii_lowercase();
            let Some(svc_name) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(|n| n.to_ascii_lowercase())
            else {
                continue;
            };
            let Some(svc) = snap.services.get_mut(&(ns.clone(), svc_name.clone())) else {
                continue;
            };
            let ports = Arc::new(ports_of(
                slice
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.as_ref(), p.protocol.as_ref(), p.port)),
            ));
            for ep in &slice.endpoints {
                // discovery.k8s.io/v1: an unknown (nil) ready condition is to be read as ready.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !svc.publish_not_ready {
                    continue;
                }
                let from_pod = ep
                    .target_ref
                    .as_ref()
                    .filter(|t| t.kind.as_deref() == Some("Pod"))
                    .and_then(|t| named_pods.get(&(ns.clone(), t.name.clone()?)))
                    .filter(|(_, sub)| *sub == svc_name)
                    .map(|(host, _)| host.clone());
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let hostname = ep
                        .hostname
                        .as_deref()
                        .map(str::to_ascii_lowercase)
                        .or_else(|| from_pod.clone())
                        .unwrap_or_else(|| dashed(&ip));
                    svc.endpoints.push(Endpoint {
                        ip,
                        hostname,
                        ports: ports.clone(),
                    });
                }
            }
        }
        // The same address can sit in two slices while they are rewritten.
        for svc in snap.services.values_mut() {
            let mut seen = HashSet::new();
            svc.endpoints
                .retain(|e| seen.insert((e.ip, e.hostname.clone())));
        }
        for ips in snap.pod_hosts.values_mut() {
            ips.sort();
            ips.dedup();
        }
        snap.index_reverse();
        snap
    }

    fn index_reverse(&mut self) {
        let domain = self.domain.clone();
        let mut reverse: HashMap<IpAddr, Vec<String>> = HashMap::new();
        for ((ns, name), svc) in &self.services {
            if let Kind::ClusterIp(ips) = &svc.kind {
                for ip in ips {
                    reverse
                        .entry(*ip)
                        .or_default()
                        .push(format!("{name}.{ns}.svc.{domain}"));
                }
            }
            for ep in &svc.endpoints {
                reverse
                    .entry(ep.ip)
                    .or_default()
                    .push(format!("{}.{name}.{ns}.svc.{domain}", ep.hostname));
            }
        }
        for targets in reverse.values_mut() {
            targets.sort();
            targets.dedup();
        }
        self.reverse = reverse;
    }

    /// The zone's SOA record (authority of negative answers), as the notes' CoreDNS values.
    pub fn soa(&self) -> Option<Record> {
        if self.domain.is_empty() {
            return None;
        }
        let apex = fqdn(&self.domain)?;
        let soa = SOA::new(
            fqdn(&format!("ns.dns.{}", self.domain))?,
            fqdn(&format!("hostmaster.{}", self.domain))?,
            self.serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        Some(Record::from_rdata(apex, self.ttl, RData::SOA(soa)))
    }
}

/// The cluster domain as compared: lower case, without leading or trailing dots.
pub fn normalize_domain(domain: &str) -> String {
    domain.trim_matches('.').to_ascii_lowercase()
}
