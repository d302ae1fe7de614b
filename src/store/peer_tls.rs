//! Mutual TLS of the Raft peer transport.
//!
//! Both ends of a peer connection present a certificate chaining to the cluster CA, and
//! that certificate must name the organization [`PEER_ORGANIZATION`] in its subject: the CA
//! also signs the certificates of agents and users, which must not be able to talk Raft.
//! The connecting side also checks the server certificate against the host it dialled
//! (the host part of the peer address: an IP or DNS subject alternative name).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use super::error::StoreError;

/// The subject organization (O) a certificate needs to act as a Raft peer.
pub const PEER_ORGANIZATION: &str = "skiff:servers";

/// Longest a TLS handshake with a peer may take, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The files `PeerTls::from_dir` reads.
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "server.crt";
pub const KEY_FILE: &str = "server.key";

/// TLS settings of one replica's peer transport: its certificate and the cluster CA.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerTls { .. }")
    }
}

fn invalid(what: impl fmt::Display) -> StoreError {
    StoreError::Invalid(format!("peer TLS: {what}"))
}

/// The process default provider (`main` installs ring), else ring.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

impl PeerTls {
    /// From PEM: the cluster CA certificate(s), this replica's certificate chain (leaf
    /// first) and its private key. The one certificate serves both directions.
    pub fn new(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<PeerTls, StoreError> {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            let ca = ca.map_err(|e| invalid(format!("CA certificate: {e}")))?;
            roots
                .add(ca)
                .map_err(|e| invalid(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("no CA certificate"));
        }
        let roots = Arc::new(roots);
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(invalid("no certificate"));
        };
        check_peer_certificate(leaf).map_err(|e| invalid(format!("own certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(format!("private key: {e}")))?;

        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| invalid(format!("client verifier: {e}")))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        // Peer connections live long; resumption would only skip the checks' inputs.
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        client.resumption = rustls::client::Resumption::disabled();

        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// From `ca.crt`, `server.crt` and `server.key` in `dir` (the server's `pki` dir).
    pub fn from_dir(dir: &Path) -> Result<PeerTls, StoreError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| {
                StoreError::Storage(format!("peer TLS: cannot read {}: {e}", path.display()))
            })
        };
        PeerTls::new(&read(CA_FILE)?, &read(CERT_FILE)?, &read(KEY_FILE)?)
    }

    /// Server side: a TLS handshake requiring a client certificate of the cluster CA, then
    /// the peer organization check. Bounded by `HANDSHAKE_TIMEOUT`; the error is the reason.
    pub async fn accept(&self, tcp: TcpStream) -> Result<server::TlsStream<TcpStream>, String> {
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        check_chain(tls.get_ref().1.peer_certificates())?;
        Ok(tls)
    }

    /// Client side: a TLS handshake checking the server certificate against the cluster CA
    /// and the host of `addr` (`HOST:PORT`), then the peer organization check.
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> Result<client::TlsStream<TcpStream>, String> {
        let name = server_name(addr)?;
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connector.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake: {e}"))?;
        check_chain(tls.get_ref().1.peer_certificates())?;
        Ok(tls)
    }
}

/// The name to verify the server certificate against: the host part of `HOST:PORT`
/// (`[v6]:PORT` too).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => return Err(format!("peer address {addr} is not HOST:PORT")),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("peer address {addr}: invalid host: {e}"))
}

fn check_chain(chain: Option<&[CertificateDer<'_>]>) -> Result<(), String> {
    match chain.and_then(|c| c.first()) {
        Some(leaf) => check_peer_certificate(leaf),
        None => Err("no peer certificate".into()),
    }
}

/// A Raft peer's certificate names `PEER_ORGANIZATION` among its subject organizations.
pub fn check_peer_certificate(der: &[u8]) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable peer certificate: {e}"))?;
    let subject = cert.subject();
    if subject
        .iter_organization()
        .any(|o| o.as_str() == Ok(PEER_ORGANIZATION))
    {
        Ok(())
    } else {
        Err(format!(
            "certificate of `{subject}` is not a Raft peer's (subject lacks O={PEER_ORGANIZATION})"
        ))
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// An in-memory CA with a fresh key, for in-process clusters, tests and benchmarks: never
/// the CA of a real cluster.
#[derive(Debug)]
pub struct ThrowawayCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn rcgen_error(e: rcgen::Error) -> StoreError {
    invalid(format!("generating a certificate: {e}"))
}

impl ThrowawayCa {
    pub fn generate(common_name: &str) -> Result<Self, StoreError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(rcgen_error)?;
        Ok(ThrowawayCa { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `common_name` with the given subject organizations and
    /// subject alternative names (IPs or DNS names), for both TLS client and server auth.
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        sans: &[&str],
    ) -> Result<IssuedCert, StoreError> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(rcgen_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        for o in organizations {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A Raft peer certificate (O=skiff:servers) for `name` on loopback (127.0.0.1 and
    /// localhost), as `PeerTls`.
    pub fn loopback_peer_tls(&self, name: &str) -> Result<PeerTls, StoreError> {
        let c = self.issue(name, &[PEER_ORGANIZATION], &["127.0.0.1", "localhost"])?;
        PeerTls::new(
            self.cert_pem().as_bytes(),
            c.cert_pem.as_bytes(),
            c.key_pem.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn install() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")
    }

    #[test]
    fn organization_check_takes_only_peer_certificates() {
        let ca = ThrowawayCa::generate("ca").unwrap();
        let peer = ca
            .issue("a", &["other", PEER_ORGANIZATION], &["127.0.0.1"])
            .unwrap();
        assert!(check_peer_certificate(&der(&peer.cert_pem)).is_ok());
        let agent = ca
            .issue("system:node:a", &["system:nodes"], &["127.0.0.1"])
            .unwrap();
        let err = check_peer_certificate(&der(&agent.cert_pem)).unwrap_err();
        assert!(err.contains("system:node:a"), "{err}");
        let none = ca.issue("b", &[], &["127.0.0.1"]).unwrap();
        assert!(check_peer_certificate(&der(&none.cert_pem)).is_err());
        // A prefix or a unit of the same name is not the organization.
        let near = ca.issue("c", &["skiff:servers-x"], &["127.0.0.1"]).unwrap();
        assert!(check_peer_certificate(&der(&near.cert_pem)).is_err());
    }

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(
            server_name("10.0.0.1:2380").unwrap(),
            ServerName::try_from("10.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:2380").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("node-a.example:2380").unwrap(),
            ServerName::try_from("node-a.example").unwrap()
        );
        assert!(server_name("10.0.0.1").is_err());
        assert!(server_name("bad host:2380").is_err());
    }

    #[test]
    fn from_dir_names_the_missing_file() {
        install();
        let dir = tempfile::tempdir().unwrap();
        let err = PeerTls::from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&dir.path().join(CA_FILE).display().to_string()),
            "{err}"
        );
        let ca = ThrowawayCa::generate("ca").unwrap();
        std::fs::write(dir.path().join(CA_FILE), ca.cert_pem()).unwrap();
        let err = PeerTls::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(CERT_FILE), "{err}");
        let c = ca.issue("a", &[PEER_ORGANIZATION], &["127.0.0.1"]).unwrap();
        std::fs::write(dir.path().join(CERT_FILE), &c.cert_pem).unwrap();
        let err = PeerTls::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(KEY_FILE), "{err}");
        std::fs::write(dir.path().join(KEY_FILE), &c.key_pem).unwrap();
        PeerTls::from_dir(dir.path()).expect("complete pki dir");
    }

    #[test]
    fn own_certificate_without_the_organization_is_rejected_at_load() {
        install();
        let ca = ThrowawayCa::generate("ca").unwrap();
        let c = ca.issue("a", &["system:nodes"], &["127.0.0.1"]).unwrap();
        let err = PeerTls::new(
            ca.cert_pem().as_bytes(),
            c.cert_pem.as_bytes(),
            c.key_pem.as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(PEER_ORGANIZATION), "{err}");
    }

    /// Runs one handshake: `server` accepts, `client` connects to `dial` (HOST:PORT with
    /// the listener's port); returns (server result, client result).
    async fn handshake(
        server: PeerTls,
        client: &PeerTls,
        dial_host: &str,
    ) -> (Result<(), String>, Result<(), String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let r = server.accept(tcp).await.map(|_| ());
            r
        });
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let c = client
            .connect(&format!("{dial_host}:{port}"), tcp)
            .await
            .map(|s| {
                // Keep the stream alive until the server is done.
                drop(s);
            });
        (accept.await.unwrap(), c)
    }

    #[tokio::test]
    async fn peers_of_one_ca_connect_both_ways() {
        install();
        let ca = ThrowawayCa::generate("ca").unwrap();
        let (s, c) = handshake(
            ca.loopback_peer_tls("a").unwrap(),
            &ca.loopback_peer_tls("b").unwrap(),
            "127.0.0.1",
        )
        .await;
        assert_eq!(s, Ok(()));
        assert_eq!(c, Ok(()));
        let (s, c) = handshake(
            ca.loopback_peer_tls("a").unwrap(),
            &ca.loopback_peer_tls("b").unwrap(),
            "localhost",
        )
        .await;
        assert_eq!(s, Ok(()));
        assert_eq!(c, Ok(()));
    }

    #[tokio::test]
    async fn client_refuses_a_server_of_another_ca_or_name_or_organization() {
        install();
        let ca = ThrowawayCa::generate("ca").unwrap();
        let client = ca.loopback_peer_tls("b").unwrap();

        let other = ThrowawayCa::generate("other").unwrap();
        let (_, c) = handshake(other.loopback_peer_tls("a").unwrap(), &client, "127.0.0.1").await;
        assert!(c.is_err(), "server of another CA: {c:?}");

        // Valid certificate of the cluster CA, but not for the dialled address.
        let (_, c) = handshake(ca.loopback_peer_tls("a").unwrap(), &client, "127.0.0.2").await;
        assert!(c.is_err(), "server certificate for another name: {c:?}");

        // Valid certificate of the cluster CA for the address, but an agent's: the server
        // side is built by hand, as `PeerTls::new` refuses such a certificate.
        let agent = ca
            .issue("system:node:a", &["system:nodes"], &["127.0.0.1"])
            .unwrap();
        let roots = {
            let mut r = RootCertStore::empty();
            r.add(der(&ca.cert_pem())).unwrap();
            Arc::new(r)
        };
        let cfg = ServerConfig::builder()
            .with_client_cert_verifier(WebPkiClientVerifier::builder(roots).build().unwrap())
            .with_single_cert(
                vec![der(&agent.cert_pem)],
                PrivateKeyDer::from_pem_slice(agent.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let server = PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            connector: client.connector.clone(),
        };
        let (_, c) = handshake(server, &client, "127.0.0.1").await;
        let err = c.expect_err("server with an agent certificate");
        assert!(err.contains(PEER_ORGANIZATION), "{err}");
    }
}
