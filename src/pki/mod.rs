//! The cluster PKI (like k3s): the first server creates a CA (or takes one from files) and a
//! token key; other servers and agents join with the cluster token, which gets them the CA
//! and their certificates. Everything lives in `<data_dir>/pki` (mode 0700).

pub mod ca;
pub mod client;
pub mod identity;
pub mod join;
pub mod jwt;
pub mod tls;
pub mod token;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, warn};

use crate::config::Config;
pub use ca::{Ca, Leaf};
pub use jwt::TokenKeys;
pub use token::ClusterToken;

/// The group of the API servers' own certificate: the only one the Raft transport and the
/// node agents' port take from servers.
pub const SERVERS_GROUP: &str = "skiff:servers";
/// The in-process controllers' and scheduler's user.
pub const CONTROLLER_USER: &str = "system:skiff-controller";
pub const ADMIN_USER: &str = "admin";

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cluster token: {0}")]
    Token(String),
    #[error("joining through {server}: {reason}")]
    Join { server: String, reason: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Writes a secret file (0600) atomically: a crash leaves the old file or the new one.
pub fn write_private(path: &Path, text: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The files of `<data_dir>/pki`.
#[derive(Clone, Debug)]
pub struct Files(pub PathBuf);

impl Files {
    pub fn of(data_dir: &Path) -> Self {
        Files(data_dir.join("pki"))
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.path("ca.key")
    }
    pub fn token_key(&self) -> PathBuf {
        self.path("token.key")
    }
    pub fn token_pub(&self) -> PathBuf {
        self.path("token.pub")
    }
    pub fn admin_token(&self) -> PathBuf {
        self.path("admin.token")
    }
    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }
    /// The data directory and `pki` in it, both 0700 (narrowed if they existed wider).
    fn create(&self) -> Result<(), PkiError> {
        if let Some(data_dir) = self.0.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::store::datadir::private_dir(data_dir).map_err(io(data_dir))?;
        }
        crate::store::datadir::private_dir(&self.0).map_err(io(&self.0))
    }
}

/// A certificate and its key (PEM).
#[derive(Clone)]
pub struct KeyedCert {
    pub cert: String,
    pub key: String,
}

impl KeyedCert {
    fn save(&self, files: &Files, name: &str) -> Result<(), PkiError> {
        write_private(&files.path(&format!("{name}.crt")), &self.cert)?;
        write_private(&files.path(&format!("{name}.key")), &self.key)
    }

    fn load(files: &Files, name: &str) -> Result<Self, PkiError> {
        Ok(KeyedCert {
            cert: read(&files.path(&format!("{name}.crt")))?,
            key: read(&files.path(&format!("{name}.key")))?,
        })
    }
}

/// What a server holds.
pub struct ServerPki {
    pub files: Files,
    pub ca: Ca,
    pub token: ClusterToken,
    pub keys: TokenKeys,
    /// Serving certificate of the API, health and Raft ports (O=skiff:servers).
    pub server: KeyedCert,
    /// The node agent's identity (system:node:NAME) and its port's serving certificate.
    pub node: KeyedCert,
    pub admin_token: String,
}

/// What an agent holds.
pub struct AgentPki {
    pub files: Files,
    pub ca_pem: String,
    pub node: KeyedCert,
    pub token_pub: String,
}

/// The cluster token from config (`security.token`, then `security.token_file`), if any.
pub fn configured_token(cfg: &Config) -> Result<Option<ClusterToken>, PkiError> {
    let s = &cfg.security;
    if !s.token.is_empty() {
        return ClusterToken::parse(&s.token).map(Some);
    }
    if !s.token_file.is_empty() {
        return ClusterToken::parse(&read(Path::new(&s.token_file))?).map(Some);
    }
    Ok(None)
}

/// The names clients reach the API by (`kubernetes.default.svc...` and the first service
/// IP): only servers' certificates carry them.
pub fn api_names(cfg: &Config) -> Leaf {
    let domain = &cfg.services.cluster_domain;
    let dns_names = vec![
        "kubernetes".to_string(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
    ];
    let ips = cfg
        .services
        .service_cidr
        .parse::<ipnet::Ipv4Net>()
        .ok()
        .and_then(|net| net.hosts().next())
        .map(IpAddr::V4)
        .into_iter()
        .collect();
    Leaf {
        dns_names,
        ips,
        ..Leaf::default()
    }
}

/// A server's names: the node's and the API's.
fn server_names(cfg: &Config) -> Leaf {
    let mut names = node_names(cfg);
    let api = api_names(cfg);
    names.dns_names.extend(api.dns_names);
    names.ips.extend(api.ips);
    names
}

/// Names and addresses a node's certificates carry.
pub fn node_names(cfg: &Config) -> Leaf {
    let mut ips: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
    let mut dns = vec![cfg.node_name.clone(), "localhost".into()];
    let mut add_host = |h: &str| match h.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ips.push(ip),
        Ok(_) => {}
        Err(_) if !h.is_empty() => dns.push(h.to_string()),
        Err(_) => {}
    };
    add_host(&cfg.api_addr.ip().to_string());
    add_host(&cfg.http_listen_addr.ip().to_string());
    add_host(&cfg.peer_listen_addr.ip().to_string());
    if let Some((host, _)) = cfg.peer_advertise_addr.rsplit_once(':') {
        add_host(host);
    }
    add_host(&cfg.node.address);
    add_host(&cfg.node.listen_addr.ip().to_string());
    let api = api_names(cfg);
    // A node's certificate never carries the API server's names (it could impersonate it).
    dns.retain(|d| !api.dns_names.contains(d));
    ips.retain(|ip| !api.ips.contains(ip));
    ips.sort();
    ips.dedup();
    dns.sort();
    dns.dedup();
    Leaf {
        common_name: String::new(),
        organization: None,
        dns_names: dns,
        ips,
    }
}

fn node_leaf(names: &Leaf, node: &str) -> Leaf {
    Leaf {
        common_name: format!("{}{node}", crate::api::auth::NODE_PREFIX),
        organization: Some(crate::api::auth::NODES.into()),
        ..names.clone()
    }
}

/// Loads or creates this server's PKI: joins through `security.server_url` when it has no
/// CA yet, else takes the CA from files or generates one. Leaf certificates are issued anew
/// at every start, so changed addresses are picked up.
pub async fn ensure_server(cfg: &Config) -> Result<ServerPki, PkiError> {
    let files = Files::of(&cfg.data_dir);
    files.create()?;
    let token_path = cfg.data_dir.join("token");
    let token =
        match configured_token(cfg)? {
            Some(t) => t,
            None if token_path.exists() => ClusterToken::parse(&read(&token_path)?)?,
            None if cfg.security.server_url.is_empty() => ClusterToken::generate()?,
            None => return Err(PkiError::Token(
                "joining through security.server_url needs security.token or security.token_file"
                    .into(),
            )),
        };
    let have_ca = files.ca_cert().exists() && files.ca_key().exists();
    if !have_ca {
        if !cfg.security.server_url.is_empty() {
            join::join_server(cfg, &cfg.security.server_url, &token, &files).await?;
        } else if !cfg.security.ca_cert_file.is_empty() {
            let cert = read(Path::new(&cfg.security.ca_cert_file))?;
            let key = read(Path::new(&cfg.security.ca_key_file))?;
            Ca::from_pem(&cert, &key)?;
            write_private(&files.ca_cert(), &cert)?;
            write_private(&files.ca_key(), &key)?;
            info!("cluster CA taken from {}", cfg.security.ca_cert_file);
        } else {
            let ca = Ca::generate(&cfg.cluster_name)?;
            write_private(&files.ca_cert(), &ca.cert_pem)?;
            write_private(&files.ca_key(), &ca.key_pem)?;
            info!("generated the cluster CA");
        }
    }
    let ca = Ca::from_pem(&read(&files.ca_cert())?, &read(&files.ca_key())?)?;
    if let Some(pinned) = &token.ca_hash {
        if *pinned != ca.hash()? {
            return Err(PkiError::Token(
                "the token pins another CA than the one in the data dir".into(),
            ));
        }
    }
    if !files.token_key().exists() {
        let (private, public) = TokenKeys::generate()?;
        write_private(&files.token_key(), &private)?;
        write_private(&files.token_pub(), &public)?;
    }
    let keys = TokenKeys::from_private_pem(&read(&files.token_key())?)?;
    if !token_path.exists() {
        write_private(&token_path, &token.full(&ca.hash()?))?;
    }
    let (cert, key) = ca.issue(&Leaf {
        common_name: cfg.node_name.clone(),
        organization: Some(SERVERS_GROUP.into()),
        ..server_names(cfg)
    })?;
    let server = KeyedCert { cert, key };
    server.save(&files, "server")?;
    let (cert, key) = ca.issue(&node_leaf(&node_names(cfg), &cfg.node_name))?;
    let node = KeyedCert { cert, key };
    node.save(&files, "node")?;
    let admin_token = if files.admin_token().exists() {
        read(&files.admin_token())?.trim().to_string()
    } else {
        let t = keys.user_token(ADMIN_USER, &[crate::api::auth::MASTERS])?;
        write_private(&files.admin_token(), &t)?;
        t
    };
    Ok(ServerPki {
        files,
        ca,
        token,
        keys,
        server,
        node,
        admin_token,
    })
}

/// Loads an agent's PKI, joining through `server` the first time.
pub async fn ensure_agent(cfg: &Config, server: &str) -> Result<AgentPki, PkiError> {
    let files = Files::of(&cfg.data_dir);
    files.create()?;
    if !(files.ca_cert().exists() && files.exists("node.crt") && files.exists("node.key")) {
        let token = configured_token(cfg)?.ok_or_else(|| {
            PkiError::Token("an agent needs --token, security.token or security.token_file".into())
        })?;
        join::join_agent(cfg, server, &token, &files).await?;
    }
    let node = KeyedCert::load(&files, "node")?;
    let (cn, _) = identity::subject_of_pem(&node.cert)?;
    if cn != format!("{}{}", crate::api::auth::NODE_PREFIX, cfg.node_name) {
        warn!("the node certificate in {} names {cn}", files.0.display());
    }
    Ok(AgentPki {
        ca_pem: read(&files.ca_cert())?,
        token_pub: read(&files.token_pub())?,
        node,
        files,
    })
}
