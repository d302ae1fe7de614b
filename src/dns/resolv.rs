//! resolv.conf: reading the node's, and writing each pod's by its dnsPolicy and dnsConfig as
//! the kubelet does (pkg/kubelet/network/dns/dns.go).

use k8s_openapi::api::core::v1::Pod;

/// The node's resolver file.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of real upstreams, used for pods when the node's file points at
/// its loopback stub (127.0.0.53), which a pod's network namespace cannot reach.
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// The kubelet's limits (validation.MaxDNSNameservers, MaxDNSSearchPaths,
/// MaxDNSSearchListChars).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `name` or `name:value`.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text: every `nameserver`, the last `search`/`domain` (as glibc),
    /// every `options` entry.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    // The kubelet drops the final dot of search domains.
                    conf.searches = fields
                        .map(|s| s.trim_end_matches('.').to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                }
                Some("options") => conf.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The node's resolv.conf; empty when it cannot be read.
    pub fn host() -> Self {
        Self::parse(&std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default())
    }

    /// The node's resolvers as a pod can use them: the systemd-resolved upstream list when the
    /// node's file names only loopback stubs.
    pub fn host_for_pods() -> Self {
        let host = Self::host();
        let loopback_only = !host.nameservers.is_empty()
            && host.nameservers.iter().all(|ns| {
                ns.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
            });
        if loopback_only {
            if let Ok(text) = std::fs::read_to_string(RESOLVED_UPSTREAMS) {
                return Self::parse(&text);
            }
        }
        host
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// What the node agent knows for pods' DNS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodDns {
    /// The cluster DNS (`services.dns_service_ip`, `services.cluster_domain`) when
    /// `dns.enabled`; without it ClusterFirst falls back to Default, as the kubelet does
    /// without `--cluster-dns`.
    pub cluster: Option<ClusterDnsRef>,
    /// `node.dns_servers`: in place of the node's nameservers for Default.
    pub node_servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterDnsRef {
    pub server: String,
    pub domain: String,
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The pod's resolver configuration from its dnsPolicy and dnsConfig, `host` being the
/// node's.
pub fn pod_resolv_conf(pod: &Pod, node: &PodDns, host: &ResolvConf) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let default = || {
        let mut conf = host.clone();
        if !node.node_servers.is_empty() {
            conf.nameservers = node.node_servers.clone();
        }
        conf
    };
    let cluster_first = match policy {
        "None" | "Default" => false,
        "ClusterFirstWithHostNet" => true,
        // ClusterFirst (and anything validation let through): host-network pods use the
        // node's resolvers.
        _ => !host_network,
    };
    let mut conf = match (policy, &node.cluster) {
        ("None", _) => ResolvConf::default(),
        (_, Some(cluster)) if cluster_first => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = cluster.domain.trim_matches('.');
            let mut searches = Vec::new();
            if !domain.is_empty() {
                searches = vec![
                    format!("{ns}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_string(),
                ];
            }
            push_unique(&mut searches, host.searches.iter().cloned());
            ResolvConf {
                nameservers: vec![cluster.server.clone()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => default(),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(
            &mut conf.nameservers,
            extra.nameservers.iter().flatten().cloned(),
        );
        push_unique(&mut conf.searches, extra.searches.iter().flatten().cloned());
        // Options are merged by name, the pod's value winning (the kubelet's mergeDNSOptions,
        // in a stable order).
        for opt in extra.options.iter().flatten() {
            let Some(name) = opt.name.as_deref() else {
                continue;
            };
            let text = match opt.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.to_string(),
            };
            let same = |o: &String| o.split(':').next() == Some(name);
            match conf.options.iter_mut().find(|o| same(o)) {
                Some(existing) => *existing = text,
                None => conf.options.push(text),
            }
        }
    }
    fit_limits(&mut conf);
    conf
}

/// The kubelet's formDNSConfigFitsLimits: at most 3 nameservers, 32 search domains and 2048
/// characters of search list.
fn fit_limits(conf: &mut ResolvConf) {
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    let mut chars = 0;
    let keep = conf
        .searches
        .iter()
        .take_while(|s| {
            chars += s.len() + 1;
            chars <= MAX_SEARCH_CHARS + 1
        })
        .count();
    conf.searches.truncate(keep);
}
