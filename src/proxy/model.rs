//! What the proxy programs, derived from Services and EndpointSlices: one `PortRule` per
//! service port, with its ready endpoints.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

/// Upstream's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn parse(p: Option<&str>) -> Option<Proto> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The endpoint runs on this node (for externalTrafficPolicy Local).
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortRule {
    /// `ns/name/proto/port-name`, for chain names and logs.
    pub id: String,
    /// Short stable hash of `id`, the part of chain names that makes them unique.
    pub hash: String,
    pub proto: Proto,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// LoadBalancer ingress IPs and externalIPs: reached like the NodePort (external chain).
    pub external_ips: Vec<Ipv4Addr>,
    pub endpoints: Vec<Endpoint>,
    /// ClientIP session affinity timeout.
    pub affinity: Option<u32>,
    /// externalTrafficPolicy Local: external traffic only to endpoints on this node.
    pub external_local: bool,
}

/// This node, as far as the rules depend on it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The cluster DNS service IP and the node-local DNS server's port: the DNS service's
    /// traffic goes to this node's own server.
    pub dns: Option<(Ipv4Addr, u16)>,
    /// Whether Services' `externalIPs` are honoured (`api.allow_service_external_ips`).
    pub external_ips: bool,
    /// LoadBalancer ingress addresses are taken only from here (the configured pool).
    pub lb_pool: Vec<Ipv4Addr>,
    /// This node's own ports (Raft peers, API, node agent, metrics, DNS): never captured on
    /// an external IP, which may be any address, a node's own included.
    pub reserved_ports: Vec<u16>,
}

fn hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ready endpoints per (service name, port name) of one namespace's slices.
fn endpoints(
    slices: &[Arc<EndpointSlice>],
    node: &str,
) -> BTreeMap<(String, String, String), Vec<Endpoint>> {
    let mut out: BTreeMap<(String, String, String), Vec<Endpoint>> = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let (Some(ns), Some(svc)) = (
            s.metadata.namespace.clone(),
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned(),
        ) else {
            continue;
        };
        for p in s.ports.iter().flatten() {
            let Some(port) = p.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let key = (ns.clone(), svc.clone(), p.name.clone().unwrap_or_default());
            let list = out.entry(key).or_default();
            for e in &s.endpoints {
                // Upstream: a missing `ready` means ready.
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                let local = e.node_name.as_deref() == Some(node);
                for a in &e.addresses {
                    if let Ok(ip) = a.parse() {
                        list.push(Endpoint { ip, port, local });
                    }
                }
            }
        }
    }
    for list in out.values_mut() {
        list.sort();
        list.dedup();
    }
    out
}

/// Every service port with a virtual IP, sorted by id.
pub fn build(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node: &NodeView,
) -> Vec<PortRule> {
    let eps = endpoints(slices, &node.name);
    let mut out = Vec::new();
    for svc in services {
        let (Some(ns), Some(name), Some(spec)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
            svc.spec.as_ref(),
        ) else {
            continue;
        };
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless, ExternalName, or not yet allocated
        };
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref()?.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
                .max(1) as u32
        });
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter(|_| node.external_ips)
            .filter_map(|ip| ip.parse().ok())
            .collect();
        // Whoever may write a Service's status could name any address: only the pool's count.
        let lb_ips: Vec<Ipv4Addr> = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref()?.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter(|_| spec.type_.as_deref() == Some("LoadBalancer"))
            .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok())
            .filter(|ip| node.lb_pool.contains(ip))
            .collect();
        let dns = node.dns.filter(|(ip, _)| *ip == cluster_ip);
        for p in spec.ports.iter().flatten() {
            let (Some(proto), Ok(port)) =
                (Proto::parse(p.protocol.as_deref()), u16::try_from(p.port))
            else {
                continue;
            };
            let pname = p.name.clone().unwrap_or_default();
            let id = format!(
                "{ns}/{name}/{}/{}",
                proto.nft(),
                if pname.is_empty() {
                    p.port.to_string()
                } else {
                    pname.clone()
                }
            );
            let endpoints = match dns {
                // The cluster DNS runs on every node: its service goes to this node's server.
                Some((_, dns_port)) => vec![Endpoint {
                    ip: node.ip,
                    port: dns_port,
                    local: true,
                }],
                None => eps
                    .get(&(ns.to_string(), name.to_string(), pname))
                    .cloned()
                    .unwrap_or_default(),
            };
            out.push(PortRule {
                hash: hash(&id),
                id,
                proto,
                cluster_ip,
                port,
                node_port: p
                    .node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0),
                external_ips: lb_ips
                    .iter()
                    .chain(
                        external_ips
                            .iter()
                            .filter(|_| !node.reserved_ports.contains(&port)),
                    )
                    .copied()
                    .collect(),
                endpoints,
                affinity,
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).expect("service"))
    }

    fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).expect("slice"))
    }

    fn node() -> NodeView {
        NodeView {
            name: "n1".into(),
            ip: "10.90.0.11".parse().unwrap(),
            dns: Some(("10.96.0.10".parse().unwrap(), 53)),
            external_ips: false,
            lb_pool: vec!["10.90.0.200".parse().unwrap()],
            reserved_ports: vec![53, 2380, 6443, 9101, 10250],
        }
    }

    #[test]
    fn ready_endpoints_of_the_named_port_and_local_ones_marked() {
        let services = vec![svc(json!({
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "type": "NodePort", "externalTrafficPolicy": "Local",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080}]},
        }))];
        let slices = vec![slice(json!({
            "metadata": {"name": "echo-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.244.1.2"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.2"], "nodeName": "n2"},
                {"addresses": ["10.244.3.2"], "nodeName": "n3", "conditions": {"ready": false}},
            ],
        }))];
        let rules = build(&services, &slices, &node());
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.id, "default/echo/tcp/http");
        assert_eq!(r.node_port, Some(30080));
        assert!(r.external_local);
        assert_eq!(
            r.endpoints,
            vec![
                Endpoint {
                    ip: "10.244.1.2".parse().unwrap(),
                    port: 8080,
                    local: true
                },
                Endpoint {
                    ip: "10.244.2.2".parse().unwrap(),
                    port: 8080,
                    local: false
                },
            ]
        );
    }

    #[test]
    fn headless_and_unallocated_services_have_no_rules_and_dns_goes_to_this_node() {
        let services = vec![
            svc(
                json!({"metadata": {"name": "h", "namespace": "a"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            ),
            svc(
                json!({"metadata": {"name": "x", "namespace": "a"}, "spec": {"ports": [{"port": 80}]}}),
            ),
            svc(
                json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                       "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            ),
        ];
        let rules = build(&services, &[], &node());
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].proto, Proto::Udp);
        assert_eq!(
            rules[0].endpoints[0].ip,
            "10.90.0.11".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn load_balancer_ips_and_affinity() {
        let services = vec![svc(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.30", "type": "LoadBalancer", "sessionAffinity": "ClientIP",
                     "ports": [{"port": 80, "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.90.0.200"}]}},
        }))];
        let rules = build(&services, &[], &node());
        assert_eq!(
            rules[0].external_ips,
            vec!["10.90.0.200".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(rules[0].affinity, Some(10800));
        assert!(rules[0].endpoints.is_empty());
    }

    #[test]
    fn only_pool_addresses_and_allowed_external_ips_are_captured() {
        let services = vec![svc(json!({
            "metadata": {"name": "grab", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.31", "type": "LoadBalancer",
                     "externalIPs": ["10.90.0.11"],
                     "ports": [{"name": "api", "port": 6443}, {"name": "web", "port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.90.0.200"}, {"ip": "10.90.0.12"}]}},
        }))];
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let rules = build(&services, &[], &node());
        // A status naming another node's address is ignored; externalIPs are off.
        assert_eq!(rules[0].external_ips, vec![ip("10.90.0.200")]);
        assert_eq!(rules[1].external_ips, vec![ip("10.90.0.200")]);
        let allowed = NodeView {
            external_ips: true,
            ..node()
        };
        let rules = build(&services, &[], &allowed);
        assert_eq!(rules[0].id, "default/grab/tcp/api");
        assert_eq!(
            rules[0].external_ips,
            vec![ip("10.90.0.200")],
            "6443 is reserved"
        );
        assert_eq!(
            rules[1].external_ips,
            vec![ip("10.90.0.200"), ip("10.90.0.11")]
        );
    }
}
