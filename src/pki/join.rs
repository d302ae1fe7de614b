//! Joining: a new server or agent fetches the CA certificate (checked against the hash in a
//! full token), then presents the token over TLS verified with that CA and gets what its
//! role needs. The serving side is `bundle`, called by the API server.

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{ca, node_leaf, node_names, write_private, Ca, ClusterToken, Files, PkiError};
use crate::config::Config;

pub const CACERTS_PATH: &str = "/cacerts";
pub const JOIN_PATH: &str = "/skiff/v1/join";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    pub role: Role,
    pub name: String,
    /// Names and addresses for the agent's certificate.
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ips: Vec<std::net::IpAddr>,
}

#[derive(Default, Serialize, Deserialize)]
pub struct Bundle {
    pub ca_crt: String,
    #[serde(default)]
    pub ca_key: String,
    #[serde(default)]
    pub token_key: String,
    pub token_pub: String,
    /// The servers' encryption keys for secrets at rest (servers only).
    #[serde(default)]
    pub encryption_keys: String,
    #[serde(default)]
    pub node_crt: String,
    #[serde(default)]
    pub node_key: String,
}

/// What the server side knows to answer joins.
pub struct JoinService {
    pub token: ClusterToken,
    pub ca: Ca,
    pub files: Files,
    /// The API's names (`super::api_names`): an agent's certificate never gets them.
    pub api_names: super::Leaf,
}

impl JoinService {
    /// The bundle for an authenticated request (the caller checked the token).
    pub fn bundle(&self, req: &JoinRequest) -> Result<Bundle, PkiError> {
        let read_opt =
            |name: &str| std::fs::read_to_string(self.files.path(name)).unwrap_or_default();
        let mut b = Bundle {
            ca_crt: self.ca.cert_pem.clone(),
            token_pub: super::read(&self.files.token_pub())?,
            ..Default::default()
        };
        match req.role {
            Role::Server => {
                b.ca_key = self.ca.key_pem.clone();
                b.token_key = super::read(&self.files.token_key())?;
                b.encryption_keys = read_opt("encryption-keys");
            }
            Role::Agent => {
                if !crate::config::is_dns_label(&req.name) {
                    return Err(PkiError::Certificate(format!(
                        "node name {:?} is not a DNS-1123 label",
                        req.name
                    )));
                }
                let reserved = &self.api_names;
                let names = super::Leaf {
                    common_name: String::new(),
                    organization: None,
                    dns_names: (req.dns_names.iter())
                        .filter(|d| !reserved.dns_names.contains(d))
                        .cloned()
                        .collect(),
                    ips: (req.ips.iter())
                        .filter(|ip| !reserved.ips.contains(ip))
                        .copied()
                        .collect(),
                };
                let (cert, key) = self.ca.issue(&node_leaf(&names, &req.name))?;
                b.node_crt = cert;
                b.node_key = key;
            }
        }
        Ok(b)
    }
}

fn join_err(server: &str) -> impl Fn(String) -> PkiError + '_ {
    move |reason| PkiError::Join {
        server: server.into(),
        reason,
    }
}

/// Fetches the CA certificate and checks it against the token's hash (trust on first use,
/// with a warning, for a token without one).
async fn fetch_ca(server: &str, token: &ClusterToken) -> Result<String, PkiError> {
    let err = join_err(server);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(super::tls::unverified_client_config())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let pem = client
        .get(format!("{}{CACERTS_PATH}", server.trim_end_matches('/')))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| err(e.to_string()))?
        .text()
        .await
        .map_err(|e| err(e.to_string()))?;
    let hash = ca::cert_hash(&pem)?;
    match &token.ca_hash {
        Some(pinned) if *pinned != hash => Err(err(format!(
            "the server's CA (sha256 {hash}) is not the one the token pins"
        ))),
        Some(_) => Ok(pem),
        None => {
            warn!("token without a CA hash: trusting the CA {hash} that {server} presented");
            Ok(pem)
        }
    }
}

async fn request(
    server: &str,
    token: &ClusterToken,
    req: &JoinRequest,
) -> Result<Bundle, PkiError> {
    let err = join_err(server);
    let ca_pem = fetch_ca(server, token).await?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(super::tls::client_config(&ca_pem, None)?)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let resp = client
        .post(format!("{}{JOIN_PATH}", server.trim_end_matches('/')))
        .bearer_auth(&token.secret)
        .json(req)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(err(format!("{status}: {}", body.trim())));
    }
    let bundle: Bundle = resp.json().await.map_err(|e| err(e.to_string()))?;
    if bundle.ca_crt != ca_pem {
        return Err(err("the bundle's CA differs from /cacerts".into()));
    }
    Ok(bundle)
}

/// A joining server gets the CA (with its key), the token key and the encryption keys.
pub async fn join_server(
    cfg: &Config,
    server: &str,
    token: &ClusterToken,
    files: &Files,
) -> Result<(), PkiError> {
    let req = JoinRequest {
        role: Role::Server,
        name: cfg.node_name.clone(),
        dns_names: Vec::new(),
        ips: Vec::new(),
    };
    let b = retry(server, || request(server, token, &req)).await?;
    if !b.encryption_keys.is_empty() {
        write_private(&files.path("encryption-keys"), &b.encryption_keys)?;
    }
    write_private(&files.token_key(), &b.token_key)?;
    write_private(&files.token_pub(), &b.token_pub)?;
    write_private(&files.ca_key(), &b.ca_key)?;
    // Last: its presence marks a complete join.
    write_private(&files.ca_cert(), &b.ca_crt)?;
    tracing::info!("joined through {server}");
    Ok(())
}

/// A joining agent gets the CA certificate and its node certificate.
pub async fn join_agent(
    cfg: &Config,
    server: &str,
    token: &ClusterToken,
    files: &Files,
) -> Result<(), PkiError> {
    let names = node_names(cfg);
    let req = JoinRequest {
        role: Role::Agent,
        name: cfg.node_name.clone(),
        dns_names: names.dns_names,
        ips: names.ips,
    };
    let b = retry(server, || request(server, token, &req)).await?;
    write_private(&files.token_pub(), &b.token_pub)?;
    write_private(&files.path("node.key"), &b.node_key)?;
    write_private(&files.path("node.crt"), &b.node_crt)?;
    write_private(&files.ca_cert(), &b.ca_crt)?;
    tracing::info!("joined through {server}");
    Ok(())
}

/// Servers start together: the first may not listen yet. A refused token is final.
async fn retry<F, Fut>(server: &str, mut f: F) -> Result<Bundle, PkiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Bundle, PkiError>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        match f().await {
            Ok(b) => return Ok(b),
            Err(PkiError::Join { reason, .. })
                if tokio::time::Instant::now() < deadline
                    && !reason.starts_with("401")
                    && !reason.contains("pins") =>
            {
                tracing::info!("waiting for {server} to take the join: {reason}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_certificate_never_carries_the_api_names_nor_the_servers_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::of(dir.path());
        files.create().expect("pki dir");
        std::fs::write(files.token_pub(), "public key").expect("token.pub");
        let join = JoinService {
            token: ClusterToken::generate().expect("token"),
            ca: Ca::generate("t").expect("ca"),
            files,
            api_names: super::super::Leaf {
                dns_names: vec!["kubernetes.default.svc".into()],
                ips: vec!["10.96.0.1".parse().expect("ip")],
                ..Default::default()
            },
        };
        let b = join
            .bundle(&JoinRequest {
                role: Role::Agent,
                name: "n5".into(),
                dns_names: vec!["n5".into(), "kubernetes.default.svc".into()],
                ips: vec![
                    "10.0.0.5".parse().expect("ip"),
                    "10.96.0.1".parse().expect("ip"),
                ],
            })
            .expect("bundle");
        assert!(b.ca_key.is_empty() && b.token_key.is_empty() && b.encryption_keys.is_empty());
        use rustls_pki_types::pem::PemObject;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(b.node_crt.as_bytes()).expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let sans = cert
            .subject_alternative_name()
            .expect("extension")
            .expect("SANs")
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        // IPs print as hex octets: 10.0.0.5 is 0a:00:00:05, 10.96.0.1 is 0a:60:00:01.
        assert_eq!(sans, "DNSName(n5) IPAddress(0a:00:00:05)");
    }
}
