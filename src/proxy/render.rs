//! The whole service set as one nftables table (kube-proxy's nftables layout, simplified):
//! verdict maps from `address . protocol . port` to per-service chains, `numgen random` over
//! the ready endpoints, reject when there are none, masquerade where replies would otherwise
//! bypass this node. The text replaces the table in one `nft -f` transaction.
//!
//! Unlike kube-proxy there is no chain per endpoint unless the service has ClientIP affinity:
//! the service chain DNATs through an anonymous `numgen` map, and hairpin traffic is found in
//! postrouting from a set of `endpoint . endpoint` pairs. `nft` reads every chain of the table
//! before each transaction, so 11,000 chains (1,000 services x 10 endpoints) cost ~40 ms per
//! change where 1,000 cost ~10 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::model::PortRule;

pub const TABLE: &str = "skiff-proxy";
/// kube-proxy's masquerade bit (1 << 14); the overlay's masquerade rules skip marked packets.
const MASQ_MARK: &str = "0x4000";
const HAIRPIN: &str = "hairpin";

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

/// A random one of `eps` (indices into the rule's list): DNAT through a `numgen` map, or with
/// affinity a jump to the endpoint's chain, which records the client.
fn spread(r: &PortRule, eps: &[usize]) -> String {
    let p = r.proto.nft();
    match (eps, r.affinity) {
        ([i], None) => {
            let e = &r.endpoints[*i];
            format!("meta l4proto {p} dnat to {}:{}", e.ip, e.port)
        }
        ([i], Some(_)) => format!("goto {}", ep_chain(r, *i)),
        (_, None) => {
            let arms: Vec<String> = eps
                .iter()
                .enumerate()
                .map(|(k, i)| format!("{k} : {} . {}", r.endpoints[*i].ip, r.endpoints[*i].port))
                .collect();
            format!(
                "meta l4proto {p} dnat ip to numgen random mod {} map {{ {} }}",
                eps.len(),
                arms.join(", ")
            )
        }
        (_, Some(_)) => {
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
    }
}

const MAPS: [(&str, &str); 4] = [
    ("service-ips", "ipv4_addr . inet_proto . inet_service"),
    ("service-nodeports", "inet_proto . inet_service"),
    (
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service",
    ),
    ("no-endpoint-nodeports", "inet_proto . inet_service"),
];

/// What one service port puts into the table.
#[derive(Debug, Default, PartialEq)]
struct Parts {
    /// (map, key, verdict)
    elements: Vec<(&'static str, String, String)>,
    /// (name, timeout seconds): ClientIP affinity per endpoint
    sets: Vec<(String, u32)>,
    /// (name, rules)
    chains: Vec<(String, Vec<String>)>,
}

fn parts(r: &PortRule, cluster: Option<Ipv4Net>) -> Parts {
    let mut out = Parts::default();
    let p = r.proto.nft();
    let (ip_map, port_map, target) = if r.endpoints.is_empty() {
        ("no-endpoint-services", "no-endpoint-nodeports", None)
    } else {
        ("service-ips", "service-nodeports", Some(()))
    };
    let verdict = |chain: String| match target {
        Some(()) => format!("goto {chain}"),
        None => "goto reject-chain".to_string(),
    };
    out.elements.push((
        ip_map,
        format!("{} . {p} . {}", r.cluster_ip, r.port),
        verdict(svc_chain(r)),
    ));
    for ip in &r.external_ips {
        out.elements.push((
            ip_map,
            format!("{ip} . {p} . {}", r.port),
            verdict(ext_chain(r)),
        ));
    }
    if let Some(np) = r.node_port {
        out.elements
            .push((port_map, format!("{p} . {np}"), verdict(ext_chain(r))));
    }
    if target.is_none() {
        return out;
    }
    let all: Vec<usize> = (0..r.endpoints.len()).collect();
    // Service chain: masquerade off-cluster clients, sticky clients, then spread.
    let mut svc = Vec::new();
    if let Some(c) = cluster {
        svc.push(format!("ip saddr != {c} jump mark-for-masquerade"));
    }
    if let Some(timeout) = r.affinity {
        for i in &all {
            out.sets.push((aff_set(r, *i), timeout));
            svc.push(format!(
                "ip saddr @{} goto {}",
                aff_set(r, *i),
                ep_chain(r, *i)
            ));
        }
    }
    svc.push(spread(r, &all));
    out.chains.push((svc_chain(r), svc));
    if r.node_port.is_some() || !r.external_ips.is_empty() {
        let mut ext = Vec::new();
        if r.external_local {
            // Pods and the node itself may use any endpoint; outside clients only local
            // ones, keeping their source address (no masquerade).
            let local: Vec<usize> = all
                .iter()
                .copied()
                .filter(|i| r.endpoints[*i].local)
                .collect();
            if let Some(c) = cluster {
                ext.push(format!("ip saddr {c} goto {}", svc_chain(r)));
            }
            ext.push("fib saddr type local jump mark-for-masquerade".into());
            ext.push(format!("fib saddr type local goto {}", svc_chain(r)));
            ext.push(if local.is_empty() {
                "drop".into()
            } else {
                spread(r, &local)
            });
        } else {
            ext.push("jump mark-for-masquerade".into());
            ext.push(format!("goto {}", svc_chain(r)));
        }
        out.chains.push((ext_chain(r), ext));
    }
    if r.affinity.is_some() {
        for (i, e) in r.endpoints.iter().enumerate() {
            let ep = vec![
                format!("update @{} {{ ip saddr }}", aff_set(r, i)),
                format!("meta l4proto {p} dnat to {}:{}", e.ip, e.port),
            ];
            out.chains.push((ep_chain(r, i), ep));
        }
    }
    out
}

/// Endpoint addresses of all rules, as `ip . ip` elements of the hairpin set: a pod reaching
/// itself through a service must have its source rewritten or the reply would not come back
/// through the DNAT.
fn hairpin(rules: &[PortRule]) -> BTreeSet<Ipv4Addr> {
    rules
        .iter()
        .flat_map(|r| &r.endpoints)
        .map(|e| e.ip)
        .collect()
}

fn set_decl(name: &str, timeout: u32) -> String {
    format!("{name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}")
}

/// Connections to a service without endpoints are rejected before routing (prerouting, which
/// takes `reject` since Linux 5.9), so clients see a refusal even where no route would carry
/// the service address.
///
/// The whole table for `rules`, replacing any earlier one; `cluster`: the pod CIDR (traffic
/// from outside it to a ClusterIP is masqueraded so replies come back through this node).
pub fn ruleset(rules: &[PortRule], cluster: Option<Ipv4Net>) -> (String, Counts) {
    let all: Vec<Parts> = rules.iter().map(|r| parts(r, cluster)).collect();
    let mut out = format!("add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    for (map, ty) in MAPS {
        let items: Vec<String> = all
            .iter()
            .flat_map(|p| &p.elements)
            .filter(|(m, _, _)| *m == map)
            .map(|(_, k, v)| format!("{k} : {v}"))
            .collect();
        let _ = write!(out, "\tmap {map} {{\n\t\ttype {ty} : verdict\n");
        if !items.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(",\n\t\t\t"));
        }
        out.push_str("\t}\n");
    }
    for (name, timeout) in all.iter().flat_map(|p| &p.sets) {
        let _ = writeln!(out, "\tset {}", set_decl(name, *timeout));
    }
    let pairs: Vec<String> = hairpin(rules)
        .into_iter()
        .map(|ip| format!("{ip} . {ip}"))
        .collect();
    let _ = write!(out, "\tset {HAIRPIN} {{\n\t\ttype ipv4_addr . ipv4_addr\n");
    if !pairs.is_empty() {
        let _ = writeln!(out, "\t\telements = {{ {} }}", pairs.join(",\n\t\t\t"));
    }
    out.push_str("\t}\n");
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
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade\n\t\tjump masquerading\n\t}}\n"
    );
    for (name, body) in all.iter().flat_map(|p| &p.chains) {
        let _ = writeln!(out, "\tchain {name} {{");
        for rule in body {
            let _ = writeln!(out, "\t\t{rule}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    (out, counts(rules, &all))
}

fn counts(rules: &[PortRule], all: &[Parts]) -> Counts {
    Counts {
        services: rules.len(),
        endpoints: rules.iter().map(|r| r.endpoints.len()).sum(),
        rules: all
            .iter()
            .flat_map(|p| &p.chains)
            .map(|(_, b)| b.len())
            .sum(),
    }
}

/// One transaction turning the table of `old` (holding `before_counts`) into that of `new`,
/// touching only the service ports that changed (kube-proxy's partial sync): their map
/// elements, sets and chains. `None` when nothing changed.
pub fn delta(
    old: &[PortRule],
    new: &[PortRule],
    cluster: Option<Ipv4Net>,
    before_counts: Counts,
) -> Option<(String, Counts)> {
    fn index(rules: &[PortRule]) -> BTreeMap<&str, &PortRule> {
        rules.iter().map(|r| (r.id.as_str(), r)).collect()
    }
    let (before, after) = (index(old), index(new));
    let empty = Parts::default();
    let ids: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let (mut added_rules, mut removed_rules) = (0, 0);
    let (mut del_el, mut add_set, mut write_chains, mut add_el, mut del_chain, mut del_set) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for id in ids {
        let (a, b) = (before.get(id), after.get(id));
        if a == b {
            continue;
        }
        let rendered = |r: Option<&&PortRule>| r.map(|r| parts(r, cluster));
        let (a, b) = (rendered(a), rendered(b));
        let (a, b) = (a.as_ref().unwrap_or(&empty), b.as_ref().unwrap_or(&empty));
        let chain_rules = |p: &Parts| p.chains.iter().map(|(_, body)| body.len()).sum::<usize>();
        removed_rules += chain_rules(a);
        added_rules += chain_rules(b);
        for (m, k, v) in &a.elements {
            if !b
                .elements
                .iter()
                .any(|(m2, k2, v2)| m2 == m && k2 == k && v2 == v)
            {
                del_el.push(format!("delete element ip {TABLE} {m} {{ {k} }}"));
            }
        }
        for (m, k, v) in &b.elements {
            if !a
                .elements
                .iter()
                .any(|(m2, k2, v2)| m2 == m && k2 == k && v2 == v)
            {
                add_el.push(format!("add element ip {TABLE} {m} {{ {k} : {v} }}"));
            }
        }
        for (name, timeout) in &b.sets {
            if !a.sets.iter().any(|(n, _)| n == name) {
                add_set.push(format!("add set ip {TABLE} {}", set_decl(name, *timeout)));
            }
        }
        for (name, _) in &a.sets {
            if !b.sets.iter().any(|(n, _)| n == name) {
                del_set.push(format!("delete set ip {TABLE} {name}"));
            }
        }
        for (name, body) in &b.chains {
            if a.chains.iter().any(|(n, old)| n == name && old == body) {
                continue;
            }
            write_chains.push(format!("add chain ip {TABLE} {name}"));
            write_chains.push(format!("flush chain ip {TABLE} {name}"));
            for rule in body {
                write_chains.push(format!("add rule ip {TABLE} {name} {rule}"));
            }
        }
        for (name, _) in &a.chains {
            if !b.chains.iter().any(|(n, _)| n == name) {
                // Flushed first: no rule may still jump to it when it goes.
                write_chains.insert(0, format!("flush chain ip {TABLE} {name}"));
                del_chain.push(format!("delete chain ip {TABLE} {name}"));
            }
        }
    }
    let (was, is) = (hairpin(old), hairpin(new));
    for ip in was.difference(&is) {
        del_el.push(format!(
            "delete element ip {TABLE} {HAIRPIN} {{ {ip} . {ip} }}"
        ));
    }
    for ip in is.difference(&was) {
        add_el.push(format!(
            "add element ip {TABLE} {HAIRPIN} {{ {ip} . {ip} }}"
        ));
    }
    let lines: Vec<String> = [del_el, add_set, write_chains, add_el, del_chain, del_set].concat();
    if lines.is_empty() {
        return None;
    }
    let counts = Counts {
        services: new.len(),
        endpoints: new.iter().map(|r| r.endpoints.len()).sum(),
        rules: (before_counts.rules + added_rules).saturating_sub(removed_rules),
    };
    Some((lines.join("\n") + "\n", counts))
}

#[cfg(test)]
mod tests {
    use super::super::model::{Endpoint, Proto};
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
            "meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.2.2 . 8080 }"
        ));
        assert!(text.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
        assert!(
            !text.contains("chain ep-"),
            "no per-endpoint chains without affinity"
        );
        // Hairpin: each endpoint talking to itself through the service is masqueraded.
        assert!(
            text.contains("elements = { 10.244.1.2 . 10.244.1.2,\n\t\t\t10.244.2.2 . 10.244.2.2 }")
        );
        assert!(text.contains("ct status dnat ip saddr . ip daddr @hairpin masquerade"));
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
        assert!(ext.contains("meta l4proto tcp dnat to 10.244.2.2:8080"));
        assert!(!ext.contains("10.244.1.2"));
        assert!(!ext.lines().any(|l| l.trim() == "jump mark-for-masquerade"));
    }

    #[test]
    fn client_ip_affinity_keeps_a_chain_per_endpoint() {
        let mut r = rule(&[("10.244.1.2", true), ("10.244.2.2", false)], None, false);
        r.affinity = Some(60);
        let (text, _) = ruleset(&[r], None);
        assert!(text.contains(
            "set aff-0123456789-1 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }"
        ));
        assert!(text.contains("ip saddr @aff-0123456789-1 goto ep-0123456789-1"));
        assert!(text.contains(
            "numgen random mod 2 vmap { 0 : goto ep-0123456789-0, 1 : goto ep-0123456789-1 }"
        ));
        let ep = text.split("chain ep-0123456789-1 {").nth(1).unwrap();
        assert!(ep.starts_with("\n\t\tupdate @aff-0123456789-1 { ip saddr }\n\t\tmeta l4proto tcp dnat to 10.244.2.2:8080\n"));
    }

    #[test]
    fn delta_touches_only_what_changed() {
        let cidr = Some("10.244.0.0/16".parse().unwrap());
        let a = rule(&[("10.244.1.2", true), ("10.244.2.2", false)], None, false);
        let (_, was) = ruleset(std::slice::from_ref(&a), cidr);
        assert_eq!(
            delta(
                std::slice::from_ref(&a),
                std::slice::from_ref(&a),
                cidr,
                was
            ),
            None
        );
        let b = rule(&[("10.244.1.2", true), ("10.244.3.3", false)], None, false);
        let (text, counts) = delta(
            std::slice::from_ref(&a),
            std::slice::from_ref(&b),
            cidr,
            was,
        )
        .unwrap();
        assert_eq!(counts, ruleset(&[b], cidr).1);
        assert!(!text.contains("delete table"));
        assert!(text.contains("flush chain ip skiff-proxy svc-0123456789\nadd rule ip skiff-proxy svc-0123456789 ip saddr != 10.244.0.0/16"));
        assert!(text.contains("1 : 10.244.3.3 . 8080 }"));
        assert!(text.contains("delete element ip skiff-proxy hairpin { 10.244.2.2 . 10.244.2.2 }"));
        assert!(text.contains("add element ip skiff-proxy hairpin { 10.244.3.3 . 10.244.3.3 }"));
        assert!(
            !text.contains("10.244.1.2 . 10.244.1.2"),
            "unchanged hairpin pairs stay: {text}"
        );
        // No endpoints left: the VIP moves to the reject map and the chains go, after the
        // element that pointed at them.
        let none = rule(&[], None, false);
        let (text, counts) = delta(&[a], std::slice::from_ref(&none), cidr, was).unwrap();
        assert_eq!(counts, ruleset(&[none], cidr).1);
        let del_el = text
            .find("delete element ip skiff-proxy service-ips { 10.96.0.20 . tcp . 80 }")
            .unwrap();
        let add_el = text.find("add element ip skiff-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }").unwrap();
        let del_chain = text
            .find("delete chain ip skiff-proxy svc-0123456789")
            .unwrap();
        assert!(del_el < del_chain && add_el < del_chain, "{text}");
        assert!(
            text.find("flush chain ip skiff-proxy svc-0123456789")
                .unwrap()
                < del_chain
        );
    }
}
