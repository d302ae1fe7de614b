//! Layered configuration: built-in defaults < config file (TOML) < `SKIFF_*` environment <
//! command-line flags, into one typed struct. Unknown keys and bad values fail at start with
//! one line naming the key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat, Map, Value, ValueKind};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where `skiff server` looks for a config file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/skiff/config.toml";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("unknown configuration key `{key}` in {origin}")]
    UnknownKey { key: String, origin: String },
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This member's name; must appear in `initial_cluster`.
    pub node_name: String,
    /// Raft log, snapshots and node state.
    pub data_dir: PathBuf,
    /// Part of the cluster id: members of differently named clusters refuse each other.
    pub cluster_name: String,
    /// The founding members, `NAME=HOST:PORT` (peer addresses); empty: this node alone.
    pub initial_cluster: Vec<String>,
    /// Where this member accepts Raft peer connections.
    pub peer_listen_addr: SocketAddr,
    /// The peer address others use for this member; empty: `peer_listen_addr`.
    pub peer_advertise_addr: String,
    /// Health (`/healthz`, `/readyz`) and Prometheus metrics (`/metrics`).
    pub http_listen_addr: SocketAddr,
    /// The Kubernetes API (kubectl, kube-rs, and every component).
    pub api_addr: SocketAddr,
    pub api: ApiConfig,
    pub raft: RaftConfig,
    pub store: StoreConfig,
    pub controllers: ControllersConfig,
    pub node: crate::node::NodeConfig,
    pub overlay: overlay::OverlayConfig,
    pub services: ServicesConfig,
    pub proxy: crate::proxy::ProxyConfig,
    pub dns: crate::dns::DnsConfig,
    pub ingress: crate::ingress::IngressConfig,
    pub security: SecurityConfig,
    pub encryption: EncryptionConfig,
}

/// Cluster PKI and joining (like k3s's `--token` and `--server`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// The cluster token: lets servers and agents fetch the CA and their certificates.
    /// Empty on the first server: one is generated and written to `<data_dir>/token`.
    pub token: String,
    /// A file holding the token (used when `token` is empty).
    pub token_file: String,
    /// An existing server's API (`https://HOST:PORT`) to join through; empty: this server
    /// creates the cluster CA (or takes it from `ca_cert_file`/`ca_key_file`).
    pub server_url: String,
    /// PEM files of a CA to use instead of generating one (first server only).
    pub ca_cert_file: String,
    pub ca_key_file: String,
}

/// The API server's limits (kube-apiserver's `--max-requests-inflight`,
/// `--max-mutating-requests-inflight` and `--request-timeout`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Read requests served at once; more get 429 with Retry-After (0: no limit).
    pub max_requests_inflight: usize,
    /// Writes served at once; more get 429 with Retry-After (0: no limit).
    pub max_mutating_requests_inflight: usize,
    /// A request (not a watch, log follow or exec) not answered by then gets 504.
    pub request_timeout_seconds: u64,
    /// Open watches per client (authenticated user, else client address); more get 429 with
    /// Retry-After (0: no limit).
    pub max_watches_per_user: usize,
    /// The audit log (JSON lines, one per mutating request); empty: `<data_dir>/audit.log`.
    pub audit_log_path: String,
    /// An `audit.k8s.io/v1` Policy choosing each request's level (None, Metadata, Request,
    /// RequestResponse). Empty: Metadata for every request but health checks and metrics.
    pub audit_policy_file: String,
    /// The audit log is rotated (to `<path>.1`) when it would grow past this.
    pub audit_log_max_size_mb: u64,
    /// Rotated audit logs kept (`<path>.1` .. `<path>.N`); 0: none, the old log is removed.
    pub audit_log_max_backups: usize,
    /// An `apiserver.config.k8s.io/v1` AdmissionConfiguration (kube-apiserver's
    /// `--admission-control-config-file`): the PodSecurity plugin's defaults and exemptions.
    /// Empty: `baseline` enforced everywhere, nobody exempt.
    pub admission_control_config_file: String,
    /// Services may set `externalIPs` (upstream's DenyServiceExternalIPs plugin off): only
    /// where everyone who may create a Service may take over any address.
    pub allow_service_external_ips: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            request_timeout_seconds: 60,
            max_watches_per_user: 250,
            audit_log_path: String::new(),
            audit_policy_file: String::new(),
            audit_log_max_size_mb: 100,
            audit_log_max_backups: 3,
            admission_control_config_file: String::new(),
            allow_service_external_ips: false,
        }
    }
}

/// Service addressing, shared by the API server (allocation), the proxy and DNS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    /// ClusterIPs are allocated from here (kube-apiserver's `--service-cluster-ip-range`).
    pub service_cidr: String,
    /// NodePorts, `FIRST-LAST` (`--service-node-port-range`).
    pub node_port_range: String,
    /// DNS suffix of services and pods.
    pub cluster_domain: String,
    /// The cluster DNS service's ClusterIP (reserved; pods use it as their nameserver).
    pub dns_service_ip: String,
    /// LoadBalancer addresses: CIDRs or `FIRST-LAST` ranges; empty: LoadBalancer services stay
    /// pending.
    pub load_balancer_pool: Vec<String>,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            service_cidr: "10.96.0.0/16".into(),
            node_port_range: "30000-32767".into(),
            cluster_domain: "cluster.local".into(),
            dns_service_ip: "10.96.0.10".into(),
            load_balancer_pool: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ControllersConfig {
    /// Run the controllers and the scheduler (on the replica that is the Raft leader).
    pub enabled: bool,
    /// Reconciles running at once per controller.
    pub workers: usize,
    /// Every object is reconciled at least this often.
    pub resync_seconds: u64,
    /// A node whose lease is older than this is NotReady (Unknown) and tainted unreachable.
    pub node_monitor_grace_seconds: u64,
    /// tolerationSeconds of the default not-ready/unreachable tolerations given to pods.
    pub default_toleration_seconds: u64,
    /// Give every node a pod subnet (`spec.podCIDR`) from `cluster_cidr`.
    pub allocate_node_cidrs: bool,
    /// All pod addresses (kube-controller-manager's `--cluster-cidr`).
    pub cluster_cidr: String,
    /// Prefix length of each node's pod subnet.
    pub node_cidr_mask_size: u8,
    /// Testing knob: how fast the CronJob controller's clock runs (60 = a minute a second).
    pub cronjob_clock_speed: f64,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            workers: 4,
            resync_seconds: 30,
            node_monitor_grace_seconds: 40,
            default_toleration_seconds: 300,
            allocate_node_cidrs: true,
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            cronjob_clock_speed: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Length of one Raft tick.
    pub tick_ms: u64,
    /// Ticks without a leader before an election (randomized up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries between state-machine snapshots.
    pub snapshot_interval: u64,
    /// Log entries kept behind a snapshot so slightly lagging followers need no snapshot.
    pub snapshot_catchup_entries: u64,
    /// Largest append message to a follower, in bytes.
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// How long a write or linearizable read may wait for the cluster before failing.
    pub request_timeout_ms: u64,
    /// Events kept for watches that start from a past revision.
    pub watch_history: usize,
    /// Start even if the end of the raft log is damaged, dropping the damaged part.
    pub tolerate_tail_corruption: bool,
}

/// Encryption at rest of Secrets with AES-GCM (kube-apiserver's `EncryptionConfiguration`
/// with the `aesgcm` provider).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Named 32-byte keys, `NAME:BASE64`. The first encrypts new writes; all decrypt.
    /// Rotation: put a new key first, keep the old ones after it. Empty: the server's
    /// generated key (`<data_dir>/pki/encryption-keys`).
    pub keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_name: default_node_name(),
            data_dir: PathBuf::from("/var/lib/skiff"),
            cluster_name: "skiff".into(),
            initial_cluster: Vec::new(),
            peer_listen_addr: SocketAddr::from(([127, 0, 0, 1], 2380)),
            peer_advertise_addr: String::new(),
            http_listen_addr: SocketAddr::from(([127, 0, 0, 1], 9101)),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 6443)),
            api: ApiConfig::default(),
            raft: RaftConfig::default(),
            store: StoreConfig::default(),
            controllers: ControllersConfig::default(),
            node: crate::node::NodeConfig::default(),
            overlay: overlay::OverlayConfig::default(),
            services: ServicesConfig::default(),
            proxy: crate::proxy::ProxyConfig::default(),
            dns: crate::dns::DnsConfig::default(),
            ingress: crate::ingress::IngressConfig::default(),
            security: SecurityConfig::default(),
            encryption: EncryptionConfig::default(),
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        // etcd's defaults: 100 ms heartbeat, 1 s election timeout, and (up to 3.5) 100k
        // entries per snapshot; a snapshot writes the whole state, so not too often.
        Self {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 1,
            snapshot_interval: 100_000,
            snapshot_catchup_entries: 5_000,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 512,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: 5_000,
            watch_history: 10_000,
            tolerate_tail_corruption: false,
        }
    }
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff".into())
}

/// A member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Raft id: position in the name-sorted member list, from 1.
    pub id: u64,
    pub name: String,
    pub peer_addr: String,
}

impl Config {
    /// Loads the layers. `file`: an explicit config file (must exist); otherwise
    /// `/etc/skiff/config.toml` if present. `flags`: (key, value) pairs from the command line.
    pub fn load(file: Option<&Path>, flags: &[(String, Value)]) -> Result<Self, ConfigError> {
        let defaults = config::Config::try_from(&Config::default())?;
        let known = known_keys();
        let mut builder = config::Config::builder().add_source(defaults);

        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        if let Some(path) = file {
            let origin = path.display().to_string();
            let source = File::from(path).format(FileFormat::Toml).required(true);
            let table = config::Config::builder()
                .add_source(source.clone())
                .build()?;
            let table = config::Source::collect(&table)?;
            if let Some(key) = flatten_keys(&table)
                .into_iter()
                .find(|k| !known.contains(k))
            {
                return Err(ConfigError::UnknownKey { key, origin });
            }
            builder = builder.add_source(source);
        }

        // SKIFF_* is shared with tooling (SKIFF_E2E_REQUIRED, `skiff lab env`), so variables
        // that name no key are left alone rather than refused.
        let env = Environment::with_prefix("SKIFF")
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("initial_cluster")
            .with_list_parse_key("encryption.keys")
            .try_parsing(true);
        for (key, value) in config::Source::collect(&env)? {
            if known.contains(&key) {
                builder = builder.set_override(key, value)?;
            }
        }
        for (key, value) in flags {
            if !known.contains(key) {
                return Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    origin: "command-line flags".into(),
                });
            }
            builder = builder.set_override(key.as_str(), value.clone())?;
        }
        let cfg: Config = builder.build()?.try_deserialize()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !is_dns_label(&self.node_name) {
            return Err(invalid(
                "node_name",
                format!("`{}` is not a DNS-1123 name", self.node_name),
            ));
        }
        if self.cluster_name.is_empty() {
            return Err(invalid("cluster_name", "must not be empty"));
        }
        let members = self.members()?;
        if !members.iter().any(|m| m.name == self.node_name) {
            return Err(invalid(
                "initial_cluster",
                format!("does not name this node `{}`", self.node_name),
            ));
        }
        let r = &self.raft;
        let positive = [
            ("raft.tick_ms", r.tick_ms),
            ("raft.heartbeat_ticks", r.heartbeat_ticks as u64),
            ("raft.snapshot_interval", r.snapshot_interval),
            ("raft.max_inflight_msgs", r.max_inflight_msgs as u64),
            ("store.request_timeout_ms", self.store.request_timeout_ms),
            ("store.watch_history", self.store.watch_history as u64),
            ("controllers.workers", self.controllers.workers as u64),
            (
                "controllers.resync_seconds",
                self.controllers.resync_seconds,
            ),
            (
                "controllers.node_monitor_grace_seconds",
                self.controllers.node_monitor_grace_seconds,
            ),
            ("api.audit_log_max_size_mb", self.api.audit_log_max_size_mb),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(invalid(key, "must be greater than 0"));
        }
        let cluster = self.controllers_cluster_cidr()?;
        self.cluster_cidr()?;
        self.node_port_range()?;
        self.dns_service_ip()?;
        self.load_balancer_pool()?;
        self.encryption_keys()?;
        let mask = self.controllers.node_cidr_mask_size;
        if mask < cluster.prefix_len() || mask > 30 {
            return Err(invalid(
                "controllers.node_cidr_mask_size",
                format!(
                    "must be between {} (the cluster CIDR's) and 30",
                    cluster.prefix_len()
                ),
            ));
        }
        if self.api.audit_log_max_size_mb > 1 << 20 {
            return Err(invalid(
                "api.audit_log_max_size_mb",
                "must be at most 1048576 (1 TiB)",
            ));
        }
        if self.api.audit_log_path.ends_with('/') {
            return Err(invalid(
                "api.audit_log_path",
                "must name a file, not a directory",
            ));
        }
        if r.election_ticks <= r.heartbeat_ticks {
            return Err(invalid(
                "raft.election_ticks",
                "must be greater than raft.heartbeat_ticks",
            ));
        }
        Ok(())
    }

    /// All pod subnets as the overlay sees them: `overlay.cluster_cidr`, else
    /// `controllers.cluster_cidr`.
    pub fn cluster_cidr(&self) -> Result<ipnet::Ipv4Net, ConfigError> {
        if self.overlay.cluster_cidr.is_empty() {
            return self.controllers_cluster_cidr();
        }
        parse_cidr("overlay.cluster_cidr", &self.overlay.cluster_cidr)
    }

    pub fn service_cidr(&self) -> Result<ipnet::Ipv4Net, ConfigError> {
        parse_cidr("services.service_cidr", &self.services.service_cidr)
    }

    /// The NodePort range, inclusive.
    pub fn node_port_range(&self) -> Result<(u16, u16), ConfigError> {
        let key = "services.node_port_range";
        let (a, b) = self
            .services
            .node_port_range
            .split_once('-')
            .ok_or_else(|| invalid(key, "must be FIRST-LAST"))?;
        let a: u16 = a
            .trim()
            .parse()
            .map_err(|_| invalid(key, "FIRST is not a port"))?;
        let b: u16 = b
            .trim()
            .parse()
            .map_err(|_| invalid(key, "LAST is not a port"))?;
        if a == 0 || a > b {
            return Err(invalid(key, "must be FIRST-LAST with 0 < FIRST <= LAST"));
        }
        Ok((a, b))
    }

    pub fn dns_service_ip(&self) -> Result<std::net::Ipv4Addr, ConfigError> {
        let key = "services.dns_service_ip";
        let ip: std::net::Ipv4Addr = self
            .services
            .dns_service_ip
            .parse()
            .map_err(|_| invalid(key, "is not an IPv4 address"))?;
        if !self.service_cidr()?.contains(&ip) {
            return Err(invalid(key, "must be inside services.service_cidr"));
        }
        Ok(ip)
    }

    /// Every address of `services.load_balancer_pool`, in order.
    pub fn load_balancer_pool(&self) -> Result<Vec<std::net::Ipv4Addr>, ConfigError> {
        let key = "services.load_balancer_pool";
        let mut out = Vec::new();
        for item in &self.services.load_balancer_pool {
            if let Some((a, b)) = item.split_once('-') {
                let a: std::net::Ipv4Addr = a
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, format!("{item:?}: bad first address")))?;
                let b: std::net::Ipv4Addr = b
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, format!("{item:?}: bad last address")))?;
                if u32::from(a) > u32::from(b) || u32::from(b) - u32::from(a) > 65535 {
                    return Err(invalid(key, format!("{item:?}: bad range")));
                }
                out.extend((u32::from(a)..=u32::from(b)).map(std::net::Ipv4Addr::from));
            } else {
                let net = parse_cidr(key, item)?;
                if net.prefix_len() < 16 {
                    return Err(invalid(key, format!("{item:?}: at most a /16")));
                }
                out.extend(net.hosts());
            }
        }
        Ok(out)
    }

    /// The configured encryption keys, decoded (`encryption.keys`); empty: none configured,
    /// the server uses its generated key.
    pub fn encryption_keys(
        &self,
    ) -> Result<Vec<(String, [u8; crate::store::encryption::KEY_LEN])>, ConfigError> {
        if self.encryption.keys.is_empty() {
            return Ok(Vec::new());
        }
        crate::store::encryption::parse_keys(&self.encryption.keys)
            .map_err(|e| invalid("encryption.keys", e.to_string()))
    }

    /// Where the node IPAM controller allocates pod subnets from.
    pub fn controllers_cluster_cidr(&self) -> Result<ipnet::Ipv4Net, ConfigError> {
        parse_cidr("controllers.cluster_cidr", &self.controllers.cluster_cidr)
    }

    /// The peer address this node is reached at.
    pub fn advertised_peer_addr(&self) -> String {
        if !self.peer_advertise_addr.is_empty() {
            return self.peer_advertise_addr.clone();
        }
        let listen = self.peer_listen_addr;
        if listen.ip().is_unspecified() {
            format!("127.0.0.1:{}", listen.port())
        } else {
            listen.to_string()
        }
    }

    /// The initial members sorted by name, with their Raft ids.
    pub fn members(&self) -> Result<Vec<Member>, ConfigError> {
        let key = "initial_cluster";
        let mut pairs: Vec<(String, String)> = if self.initial_cluster.is_empty() {
            vec![(self.node_name.clone(), self.advertised_peer_addr())]
        } else {
            let mut v = Vec::new();
            for entry in &self.initial_cluster {
                let (name, addr) = entry
                    .split_once('=')
                    .filter(|(n, a)| is_dns_label(n) && valid_host_port(a))
                    .ok_or_else(|| {
                        invalid(key, format!("entry `{entry}` is not NAME=HOST:PORT"))
                    })?;
                v.push((name.to_string(), addr.to_string()));
            }
            v
        };
        pairs.sort();
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(invalid(key, format!("member `{}` is listed twice", w[0].0)));
        }
        let own = pairs.iter().find(|(n, _)| *n == self.node_name);
        if let Some((_, addr)) = own {
            if !self.peer_advertise_addr.is_empty() && *addr != self.peer_advertise_addr {
                return Err(invalid(
                    "peer_advertise_addr",
                    format!(
                        "`{}` differs from this node's initial_cluster entry `{addr}`",
                        self.peer_advertise_addr
                    ),
                ));
            }
        }
        Ok(pairs
            .into_iter()
            .enumerate()
            .map(|(i, (name, peer_addr))| Member {
                id: i as u64 + 1,
                name,
                peer_addr,
            })
            .collect())
    }

    /// The URL components of this process use to reach its own API.
    pub fn local_api_url(&self) -> String {
        let mut addr = self.api_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("https://{addr}")
    }

    /// The node agent's state directory (`node.state_dir`, default `<data_dir>/node`).
    pub fn node_state_dir(&self) -> PathBuf {
        if self.node.state_dir.is_empty() {
            self.data_dir.join("node")
        } else {
            PathBuf::from(&self.node.state_dir)
        }
    }

    /// The audit log file (`api.audit_log_path`, default `<data_dir>/audit.log`).
    pub fn audit_log_path(&self) -> PathBuf {
        if self.api.audit_log_path.is_empty() {
            self.data_dir.join("audit.log")
        } else {
            PathBuf::from(&self.api.audit_log_path)
        }
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.raft.tick_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.store.request_timeout_ms)
    }
}

/// A DNS-1123 label: lower case alphanumerics and '-', at most 63, alphanumeric at the ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn valid_host_port(s: &str) -> bool {
    matches!(s.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Dotted paths of every key of `Config` (from its JSON form, where empty lists survive).
fn parse_cidr(key: &str, text: &str) -> Result<ipnet::Ipv4Net, ConfigError> {
    text.parse::<ipnet::Ipv4Net>()
        .map(|n| n.trunc())
        .map_err(|_| invalid(key, format!("`{text}` is not an IPv4 CIDR")))
}

fn known_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Ok(v) = serde_json::to_value(Config::default()) {
        walk("", &v, &mut out);
    }
    out
}

/// Dotted paths of every leaf key in a config table.
fn flatten_keys(table: &Map<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in table {
        match &v.kind {
            ValueKind::Table(inner) => out.extend(
                flatten_keys(inner)
                    .into_iter()
                    .map(|sub| format!("{k}.{sub}")),
            ),
            _ => {
                out.insert(k.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_sorted_and_numbered() {
        let cfg = Config {
            node_name: "n2".into(),
            initial_cluster: vec!["n2=h:2".into(), "n1=h:1".into()],
            ..Config::default()
        };
        let m = cfg.members().expect("members");
        assert_eq!((m[0].id, m[0].name.as_str()), (1, "n1"));
        assert_eq!((m[1].id, m[1].peer_addr.as_str()), (2, "h:2"));
    }

    #[test]
    fn audit_log_defaults_under_the_data_dir() {
        let mut cfg = Config {
            node_name: "n1".into(),
            data_dir: "/var/lib/skiff".into(),
            ..Config::default()
        };
        cfg.validate().expect("defaults are valid");
        assert_eq!(
            cfg.audit_log_path(),
            PathBuf::from("/var/lib/skiff/audit.log")
        );
        cfg.api.audit_log_path = "/var/log/skiff/audit.log".into();
        assert_eq!(
            cfg.audit_log_path(),
            PathBuf::from("/var/log/skiff/audit.log")
        );
        cfg.validate().expect("an explicit path is valid");
        cfg.api.audit_log_max_size_mb = 0;
        let err = cfg.validate().expect_err("a zero max size is refused");
        assert!(
            err.to_string().contains("api.audit_log_max_size_mb"),
            "{err}"
        );
    }

    #[test]
    fn bad_member_entries_are_refused() {
        for bad in ["n1", "n1=host", "N1=h:1", "n1=h:99999"] {
            let cfg = Config {
                node_name: "n1".into(),
                initial_cluster: vec![bad.into()],
                ..Config::default()
            };
            assert!(cfg.members().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn encryption_keys_are_checked() {
        let with = |keys: &[&str]| Config {
            node_name: "n1".into(),
            encryption: EncryptionConfig {
                keys: keys.iter().map(|k| k.to_string()).collect(),
            },
            ..Config::default()
        };
        let k32 = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        assert!(with(&[]).validate().is_ok());
        let two = [format!("key2:{k32}"), format!("key1:{k32}")];
        let cfg = with(&[two[0].as_str(), two[1].as_str()]);
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.encryption_keys().expect("keys")[0].0, "key2");
        let short = "key1:AQEBAQ==".to_string();
        let unnamed = format!(":{k32}");
        let colon = format!("a:b:{k32}");
        let dup = format!("key1:{k32}");
        for bad in [
            vec![short.as_str()],
            vec![unnamed.as_str()],
            vec![colon.as_str()],
            vec!["key1:%%%"],
            vec![dup.as_str(), dup.as_str()],
        ] {
            let err = with(&bad).validate().expect_err("bad key accepted");
            let msg = err.to_string();
            assert!(msg.contains("encryption.keys"), "{msg}");
            assert!(!msg.contains(k32), "key material in {msg}");
        }
    }
}
