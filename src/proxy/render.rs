//! The whole service set as one nftables table (kube-proxy's nftables layout, simplified):
//! verdict maps from `address . protocol . port` to per-service chains, `numgen random` over
//! the ready endpoints, reject when there are none, masquerade where replies would otherwise
//! bypass this node. The text replaces the table in one `nft -f` transaction.

use std::fmt::Write;

use ipnet::Ipv4Net;

use super::model::{Endpoint, PortRule};

pub const TABLE: &str = "skiff-proxy";
/// kube-proxy's masquerade bit (1 << 14); the overlay's masquerade rules skip marked packets.
const MASQ_MARK: &str = "0x4000";

/// Counts of what a ruleset holds (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Counts {
    pub services: usize,
    pub endpoints: usize,
    pub rules: usize,
}

fn svc_chain(r: &PortRule) -> String {
    format!("svc-{}", r.hash)
}

fn ext_chain(r: &PortRule) -> String {
    format!("ext-{}", r.hash)
}

fn ep_chain(r: &PortRule, i: usize) -> String {
    format!("ep-{}-{i}", r.hash)
}

fn aff_set(r: &PortRule, i: usize) -> String {
    format!("aff-{}-{i}", r.hash)
}

/// `numgen random mod N vmap { 0 : goto A, ... }` over `eps` (indices into the rule's list).
fn spread(r: &PortRule, eps: &[usize]) -> String {
    if eps.len() == 1 {
        return format!("goto {}", ep_chain(r, eps[0]));
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(k, i)| format!("{k} : goto {}", ep_chain(r, *i)))
        .collect();
    format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    )
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("\t\telements = {{ {} }}\n", items.join(",\n\t\t\t"))
    }
}

/// Connections to a service without endpoints are rejected before routing (prerouting, which
/// takes `reject` since Linux 5.9), so clients see a refusal even where no route would carry
/// the service address.
///
/// The ruleset for `rules`; `cluster`: the pod CIDR (traffic from outside it to a ClusterIP is
/// masqueraded so replies come back through this node).
pub fn ruleset(rules: &[PortRule], cluster: Option<Ipv4Net>) -> (String, Counts) {
    let mut counts = Counts::default();
    let (mut service_ips, mut nodeports, mut no_ep_ips, mut no_ep_ports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut chains = String::new();
    for r in rules {
        counts.services += 1;
        counts.endpoints += r.endpoints.len();
        let p = r.proto.nft();
        let external = r.node_port.is_some() || !r.external_ips.is_empty();
        if r.endpoints.is_empty() {
            no_ep_ips.push(format!(
                "{} . {p} . {} : goto reject-chain",
                r.cluster_ip, r.port
            ));
            for ip in &r.external_ips {
                no_ep_ips.push(format!("{ip} . {p} . {} : goto reject-chain", r.port));
            }
            if let Some(np) = r.node_port {
                no_ep_ports.push(format!("{p} . {np} : goto reject-chain"));
            }
            continue;
        }
        service_ips.push(format!(
            "{} . {p} . {} : goto {}",
            r.cluster_ip,
            r.port,
            svc_chain(r)
        ));
        for ip in &r.external_ips {
            service_ips.push(format!("{ip} . {p} . {} : goto {}", r.port, ext_chain(r)));
        }
        if let Some(np) = r.node_port {
            nodeports.push(format!("{p} . {np} : goto {}", ext_chain(r)));
        }
        let all: Vec<usize> = (0..r.endpoints.len()).collect();
        // Service chain: masquerade off-cluster clients, sticky clients, then spread.
        let _ = writeln!(chains, "\tchain {} {{", svc_chain(r));
        if let Some(c) = cluster {
            let _ = writeln!(chains, "\t\tip saddr != {c} jump mark-for-masquerade");
        }
        if r.affinity.is_some() {
            for i in &all {
                let _ = writeln!(
                    chains,
                    "\t\tip saddr @{} goto {}",
                    aff_set(r, *i),
                    ep_chain(r, *i)
                );
            }
        }
        let _ = writeln!(chains, "\t\t{}\n\t}}", spread(r, &all));
        counts.rules += 3;
        if external {
            let _ = writeln!(chains, "\tchain {} {{", ext_chain(r));
            if r.external_local {
                // Pods and the node itself may use any endpoint; outside clients only local
                // ones, keeping their source address (no masquerade).
                let local: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|i| r.endpoints[*i].local)
                    .collect();
                if let Some(c) = cluster {
                    let _ = writeln!(chains, "\t\tip saddr {c} goto {}", svc_chain(r));
                }
                let _ = writeln!(chains, "\t\tfib saddr type local jump mark-for-masquerade");
                let _ = writeln!(chains, "\t\tfib saddr type local goto {}", svc_chain(r));
                if local.is_empty() {
                    let _ = writeln!(chains, "\t\tdrop");
                } else {
                    let _ = writeln!(chains, "\t\t{}", spread(r, &local));
                }
            } else {
                let _ = writeln!(
                    chains,
                    "\t\tjump mark-for-masquerade\n\t\tgoto {}",
                    svc_chain(r)
                );
            }
            let _ = writeln!(chains, "\t}}");
            counts.rules += 4;
        }
        for (i, e) in r.endpoints.iter().enumerate() {
            ep_rules(&mut chains, r, i, e);
            counts.rules += 3;
        }
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n\
         \tmap service-ips {{\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n{}\t}}\n\
         \tmap service-nodeports {{\n\t\ttype inet_proto . inet_service : verdict\n{}\t}}\n\
         \tmap no-endpoint-services {{\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n{}\t}}\n\
         \tmap no-endpoint-nodeports {{\n\t\ttype inet_proto . inet_service : verdict\n{}\t}}\n",
        elements(&service_ips),
        elements(&nodeports),
        elements(&no_ep_ips),
        elements(&no_ep_ports),
    );
    for r in rules
        .iter()
        .filter(|r| r.affinity.is_some() && !r.endpoints.is_empty())
    {
        let timeout = r.affinity.unwrap_or(1);
        for i in 0..r.endpoints.len() {
            let _ = writeln!(
                out,
                "\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}s\n\t}}",
                aff_set(r, i)
            );
        }
    }
    let _ = write!(
        out,
        "\tchain reject-chain {{\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject\n\t}}\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark or {MASQ_MARK}\n\t}}\n\
         \tchain masquerading {{\n\t\tmeta mark & {MASQ_MARK} == 0 return\n\t\tmeta mark set meta mark xor {MASQ_MARK}\n\t\tmasquerade fully-random\n\t}}\n\
         \tchain services {{\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n\
         \t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n\t}}\n\
         \tchain endpoints-check {{\n\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t}}\n\
         \tchain nodeport-endpoints-check {{\n\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}\n\
         \tchain filter-prerouting {{\n\t\ttype filter hook prerouting priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t\tct state new jump nodeport-endpoints-check\n\t}}\n\
         \tchain filter-output {{\n\t\ttype filter hook output priority -110; policy accept;\n\t\tct state new jump endpoints-check\n\t}}\n\
         \tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}}\n"
    );
    out.push_str(&chains);
    out.push_str("}\n");
    (out, counts)
}

fn ep_rules(out: &mut String, r: &PortRule, i: usize, e: &Endpoint) {
    let _ = writeln!(out, "\tchain {} {{", ep_chain(r, i));
    // Hairpin: a pod reaching itself through the service must see the reply come back here.
    let _ = writeln!(out, "\t\tip saddr {} jump mark-for-masquerade", e.ip);
    if r.affinity.is_some() {
        let _ = writeln!(out, "\t\tupdate @{} {{ ip saddr }}", aff_set(r, i));
    }
    let _ = writeln!(
        out,
        "\t\tmeta l4proto {} dnat to {}:{}\n\t}}",
        r.proto.nft(),
        e.ip,
        e.port
    );
}

#[cfg(test)]
mod tests {
    use super::super::model::Proto;
    use super::*;

    fn rule(eps: &[(&str, bool)], node_port: Option<u16>, local: bool) -> PortRule {
        PortRule {
            id: "default/echo/tcp/http".into(),
            hash: "0123456789".into(),
            proto: Proto::Tcp,
            cluster_ip: "10.96.0.20".parse().unwrap(),
            port: 80,
            node_port,
            external_ips: vec![],
            endpoints: eps
                .iter()
                .map(|(ip, l)| Endpoint {
                    ip: ip.parse().unwrap(),
                    port: 8080,
                    local: *l,
                })
                .collect(),
            affinity: None,
            external_local: local,
        }
    }

    #[test]
    fn endpoints_are_spread_with_numgen_and_dnat() {
        let (text, counts) = ruleset(
            &[rule(
                &[("10.244.1.2", true), ("10.244.2.2", false)],
                Some(30080),
                false,
            )],
            Some("10.244.0.0/16".parse().unwrap()),
        );
        assert!(text.starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\n"));
        assert!(text.contains("10.96.0.20 . tcp . 80 : goto svc-0123456789"));
        assert!(text.contains("tcp . 30080 : goto ext-0123456789"));
        assert!(text.contains(
            "numgen random mod 2 vmap { 0 : goto ep-0123456789-0, 1 : goto ep-0123456789-1 }"
        ));
        assert!(text.contains("meta l4proto tcp dnat to 10.244.2.2:8080"));
        assert!(text.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
        assert_eq!((counts.services, counts.endpoints), (1, 2));
    }

    #[test]
    fn no_endpoints_rejects_instead_of_timing_out() {
        let (text, _) = ruleset(&[rule(&[], Some(30080), false)], None);
        assert!(text.contains("10.96.0.20 . tcp . 80 : goto reject-chain"));
        assert!(text.contains("tcp . 30080 : goto reject-chain"));
        assert!(!text.contains("chain svc-"));
    }

    #[test]
    fn external_local_uses_only_local_endpoints_for_outside_clients() {
        let (text, _) = ruleset(
            &[rule(
                &[("10.244.1.2", false), ("10.244.2.2", true)],
                Some(30080),
                true,
            )],
            Some("10.244.0.0/16".parse().unwrap()),
        );
        let ext = text.split("chain ext-0123456789 {").nth(1).unwrap();
        let ext = ext.split('}').next().unwrap();
        assert!(ext.contains("goto ep-0123456789-1"));
        assert!(!ext.contains("ep-0123456789-0"));
        assert!(!ext.lines().any(|l| l.trim() == "jump mark-for-masquerade"));
    }
}
