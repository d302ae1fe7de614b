//! The lab's names and address plan (design.md, "Lab topology"): one underlay namespace
//! `NAME-ul` with a bridge, node K in namespace `NAME-nK` at 10.90.0.(10+K) on it, the
//! registry at 10.90.0.1. NAME is `skiff` unless `--name` says otherwise: labs with different
//! names and root-namespace ports run side by side (addresses only exist inside their own
//! namespaces), so `make test` works while the `make lab` lab is up.

use std::path::Path;

use super::LabError;

pub const DEFAULT_NAME: &str = "skiff";
pub const BRIDGE: &str = "br0";
pub const REGISTRY: &str = "10.90.0.1:5000";
pub const REGISTRY_CIDR: &str = "10.90.0.1/24";
pub const IMAGE: &str = "10.90.0.1:5000/busybox:latest";
/// LoadBalancer addresses: on the underlay, answered by one node.
pub const LB_POOL: &str = "10.90.0.200-10.90.0.219";
/// Inside every node namespace (Prometheus: node 1's); the forwarder maps `LocalPorts` on
/// 127.0.0.1 in the root namespace to them.
pub const API_PORT: u16 = 6443;
pub const PROMETHEUS_PORT: u16 = 9090;
pub const NODE_METRICS_PORT: u16 = 9101;
pub const MAX_NODES: usize = 9;
pub const BACKENDS: [&str; 3] = ["vxlan", "host-gw", "vxlan-user"];

/// What `skiff lab up` was asked for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub nodes: usize,
    pub backend: String,
    pub prometheus: bool,
    /// Prefix of the namespaces and the kubeconfig context.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub ports: LocalPorts,
}

/// The forwarder's ports on 127.0.0.1 in the root namespace.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalPorts {
    pub api: u16,
    /// Node 1's metrics; node K's is this + K - 1.
    pub metrics: u16,
    pub prometheus: u16,
}

impl Default for LocalPorts {
    fn default() -> Self {
        LocalPorts {
            api: API_PORT,
            metrics: NODE_METRICS_PORT,
            prometheus: PROMETHEUS_PORT,
        }
    }
}

fn default_name() -> String {
    DEFAULT_NAME.into()
}

/// A name that makes valid namespace names and a kubeconfig context: a lowercase letter, then
/// up to 11 lowercase letters, digits or dashes.
pub fn check_name(name: &str) -> Result<(), LabError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 12
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "--name must be a lowercase letter then up to 11 of [a-z0-9-], got {name:?}"
        )))
    }
}

impl Plan {
    pub fn new(nodes: usize, backend: &str, prometheus: bool) -> Result<Plan, LabError> {
        if !(1..=MAX_NODES).contains(&nodes) {
            return Err(LabError::Invalid(format!(
                "--nodes must be 1..={MAX_NODES}, got {nodes}"
            )));
        }
        if !BACKENDS.contains(&backend) {
            return Err(LabError::Invalid(format!(
                "--backend must be one of {}, got {backend:?}",
                BACKENDS.join(", ")
            )));
        }
        Ok(Plan {
            nodes,
            backend: backend.to_string(),
            prometheus,
            name: default_name(),
            ports: LocalPorts::default(),
        })
    }

    /// This plan under another name and root-namespace ports.
    pub fn named(self, name: &str, ports: LocalPorts) -> Result<Plan, LabError> {
        check_name(name)?;
        let plan = Plan {
            name: name.into(),
            ports,
            ..self
        };
        let mut local = plan.local_ports();
        let wanted = local.len();
        local.sort_unstable();
        local.dedup();
        if local.len() != wanted
            || local.first() == Some(&0)
            || plan.metrics_port(plan.nodes) < ports.metrics
        {
            return Err(LabError::Invalid(format!(
                "the API, metrics (one per node from --metrics-port) and Prometheus ports must be distinct and non-zero, got {ports:?}"
            )));
        }
        Ok(plan)
    }

    pub fn underlay_ns(&self) -> String {
        underlay_ns(&self.name)
    }

    pub fn node_ns(&self, k: usize) -> String {
        node_ns(&self.name, k)
    }

    /// The kubeconfig context (and its cluster and user entries).
    pub fn context(&self) -> String {
        format!("{}-lab", self.name)
    }

    /// The root-namespace port of node K's metrics endpoint.
    pub fn metrics_port(&self, k: usize) -> u16 {
        self.ports.metrics.wrapping_add(k as u16 - 1)
    }

    /// The API through the forwarder.
    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.api)
    }

    pub fn indices(&self) -> std::ops::RangeInclusive<usize> {
        1..=self.nodes
    }

    /// Root-namespace ports the forwarder binds.
    pub fn local_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.ports.api];
        ports.extend(self.indices().map(|k| self.metrics_port(k)));
        if self.prometheus {
            ports.push(self.ports.prometheus);
        }
        ports
    }

    /// Node K's config: the same keys a real host's /etc/skiff/config.toml has, with the lab's
    /// short heartbeats and eviction timeouts so failures show within seconds. Nodes beyond
    /// the plan's (joined with `skiff lab join`) are agents: no Raft or API keys. Every node
    /// reads the lab's cluster token from `DIR/token` (the secret stays in that one 0600
    /// file); node 1 creates the cluster CA, the other servers join through its API (they
    /// start together and retry until it answers).
    pub fn node_config(&self, k: usize, dir: &Path) -> String {
        let ip = underlay_ip(k);
        let members: Vec<String> = self
            .indices()
            .map(|m| format!("\"{}={}:2380\"", node_name(m), underlay_ip(m)))
            .collect();
        let control_plane = if self.indices().contains(&k) {
            format!(
                "initial_cluster = [{}]\n\
                 peer_listen_addr = \"{ip}:2380\"\n\
                 api_addr = \"0.0.0.0:{API_PORT}\"\n",
                members.join(", ")
            )
        } else {
            String::new()
        };
        format!(
            "node_name = \"{name}\"\n\
             data_dir = \"{data}\"\n\
             {control_plane}\
             http_listen_addr = \"0.0.0.0:{NODE_METRICS_PORT}\"\n\
             [controllers]\n\
             node_monitor_grace_seconds = 8\n\
             default_toleration_seconds = 5\n\
             [node]\n\
             address = \"{ip}\"\n\
             listen_addr = \"{ip}:10250\"\n\
             run_dir = \"{run}\"\n\
             insecure_registries = [\"{REGISTRY}\"]\n\
             lease_renew_seconds = 2\n\
             status_update_seconds = 2\n\
             [overlay]\n\
             backend = \"{backend}\"\n\
             [services]\n\
             load_balancer_pool = [\"{LB_POOL}\"]\n\
             [security]\n\
             token_file = \"{token}\"\n\
             {join}",
            name = node_name(k),
            token = token_path(dir).display(),
            join = if k > 1 && self.indices().contains(&k) {
                format!("server_url = \"{}\"\n", join_url())
            } else {
                String::new()
            },
            data = node_dir(dir, k).join("data").display(),
            run = node_dir(dir, k).join("run").display(),
            backend = self.backend,
        )
    }
}

pub fn node_name(k: usize) -> String {
    format!("n{k}")
}

/// The underlay namespace of the lab `name`.
pub fn underlay_ns(name: &str) -> String {
    format!("{name}-ul")
}

/// Node K's namespace in the lab `name`.
pub fn node_ns(name: &str, k: usize) -> String {
    format!("{name}-n{k}")
}

pub fn underlay_ip(k: usize) -> String {
    format!("10.90.0.{}", 10 + k)
}

pub fn node_dir(dir: &Path, k: usize) -> std::path::PathBuf {
    dir.join(node_name(k))
}

/// The lab's cluster token (the secret every node joins with), mode 0600.
pub fn token_path(dir: &Path) -> std::path::PathBuf {
    dir.join("token")
}

/// Node 1's API on the underlay: servers 2..N and agents join through it.
pub fn join_url() -> String {
    format!("https://{}:{API_PORT}", underlay_ip(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rejects_bad_input() {
        assert!(Plan::new(0, "vxlan", false).is_err());
        assert!(Plan::new(MAX_NODES + 1, "vxlan", false).is_err());
        assert!(Plan::new(3, "flannel", false).is_err());
        let p = Plan::new(3, "host-gw", true).expect("valid");
        assert_eq!(p.local_ports(), vec![6443, 9101, 9102, 9103, 9090]);
        assert_eq!(
            (p.underlay_ns(), p.node_ns(2)),
            ("skiff-ul".into(), "skiff-n2".into())
        );
        let ports = LocalPorts {
            api: 16443,
            metrics: 19101,
            prometheus: 19090,
        };
        let t = p.clone().named("skt", ports).expect("valid");
        assert_eq!(t.local_ports(), vec![16443, 19101, 19102, 19103, 19090]);
        assert_eq!(
            (t.underlay_ns(), t.node_ns(3), t.context()),
            ("skt-ul".into(), "skt-n3".into(), "skt-lab".into())
        );
        for bad in ["", "Skt", "1lab", "a/b", "thirteen-char"] {
            assert!(p.clone().named(bad, ports).is_err(), "{bad:?}");
        }
        let clash = LocalPorts {
            metrics: 16442,
            ..ports
        };
        assert!(
            p.clone().named("skt", clash).is_err(),
            "metrics of n2 on the API port"
        );
        let wraps = LocalPorts {
            metrics: u16::MAX,
            ..ports
        };
        assert!(p.named("skt", wraps).is_err(), "metrics ports past 65535");
    }

    #[test]
    fn node_config_is_a_valid_server_config() {
        let p = Plan::new(3, "vxlan", false).expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("n2.toml");
        std::fs::write(&file, p.node_config(2, dir.path())).expect("write");
        let cfg = crate::config::Config::load(Some(&file), &[]).expect("parses");
        assert_eq!(cfg.node_name, "n2");
        assert_eq!(cfg.members().expect("members").len(), 3);
        assert_eq!(cfg.node.address, "10.90.0.12");
        assert_eq!(cfg.overlay.backend.as_str(), "vxlan");
        let token = dir.path().join("token").display().to_string();
        assert_eq!(cfg.security.token_file, token);
        assert_eq!(cfg.security.server_url, "https://10.90.0.11:6443");
        assert!(cfg.security.token.is_empty(), "no secret in the config");
    }

    #[test]
    fn node_1_creates_the_ca_and_agents_take_the_token() {
        let p = Plan::new(3, "vxlan", false).expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        // Node 1 has nothing to join; an agent gets the server from `--server`.
        for k in [1, 4] {
            let file = dir.path().join(format!("n{k}.toml"));
            std::fs::write(&file, p.node_config(k, dir.path())).expect("write");
            let cfg = crate::config::Config::load(Some(&file), &[]).expect("parses");
            assert!(cfg.security.server_url.is_empty(), "n{k}");
            assert!(cfg.security.token_file.ends_with("/token"), "n{k}");
        }
    }
}
