//! rustls configurations for every port: servers present a certificate from the cluster CA;
//! clients trust only the cluster CA.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::PkiError;

fn tls(what: &str) -> impl Fn(rustls::Error) -> PkiError + '_ {
    move |e| PkiError::Tls(format!("{what}: {e}"))
}

pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PkiError::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Tls(format!("private key PEM: {e}")))
}

pub fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem)? {
        roots.add(c).map_err(tls("CA certificate"))?;
    }
    Ok(Arc::new(roots))
}

/// Whether a server asks connecting clients for a certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Optional: a certificate authenticates its holder, tokens still work (the API).
    Optional,
    /// Required (the node agent's port: only API servers talk to it).
    Required,
}

/// A server config presenting `cert`/`key`; client certificates are checked against the CA.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    client_auth: ClientAuth,
) -> Result<ServerConfig, PkiError> {
    let builder = WebPkiClientVerifier::builder(roots(ca_pem)?);
    let builder = match client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    let verifier = builder
        .build()
        .map_err(|e| PkiError::Tls(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(cert_pem)?, key(key_pem)?)
        .map_err(tls("server certificate"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client config trusting the cluster CA, presenting `identity` (cert, key) if given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<ClientConfig, PkiError> {
    let builder = ClientConfig::builder().with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert)?, key(k)?)
            .map_err(tls("client certificate"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate. Used for exactly one request: fetching the CA
/// certificate before joining, whose hash is then checked against the token.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn unverified_client_config() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth()
}
