//! The API server's TLS client to kubelets: it trusts only the cluster CA and presents the
//! server's own certificate (O=skiff:servers), the only one kubelets take besides
//! system:masters.
//!
//! A kubelet's certificate is checked for the address the API server connects to (its IP
//! SAN, as upstream). A node whose address was detected at start (`node.address` empty) may
//! hold a certificate without it: then the certificate is still taken when it chains to the
//! CA and names that very node (CN `system:node:NAME`, O `system:nodes`), which no other
//! node's certificate does.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::api::auth::{NODES, NODE_PREFIX};
use crate::pki::{KeyedCert, PkiError};

/// What the proxy needs to open TLS connections to kubelets.
#[derive(Clone)]
pub struct KubeletTls {
    /// Trusts the cluster CA, presents the server's certificate.
    config: Arc<ClientConfig>,
    /// Chain and name checks against the cluster CA.
    webpki: Arc<WebPkiServerVerifier>,
}

impl KubeletTls {
    /// `identity`: the API server's own certificate (`ServerPki.server`).
    pub fn new(ca_pem: &str, identity: &KeyedCert) -> Result<Self, PkiError> {
        let config = crate::pki::tls::client_config(ca_pem, Some((&identity.cert, &identity.key)))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(
            crate::pki::tls::roots(ca_pem)?,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| PkiError::Tls(format!("kubelet verifier: {e}")))?;
        Ok(KubeletTls {
            config: Arc::new(config),
            webpki,
        })
    }

    /// The client config for the kubelet of node `node`.
    pub fn for_node(&self, node: &str) -> Arc<ClientConfig> {
        let mut config = (*self.config).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(KubeletVerifier {
                webpki: self.webpki.clone(),
                node: node.to_string(),
            }));
        Arc::new(config)
    }
}

/// The server name for a kubelet address (`host:port`, `[v6]:port`).
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("kubelet address {addr:?}: {e}"))
}

#[derive(Debug)]
struct KubeletVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    node: String,
}

impl KubeletVerifier {
    /// Whether the certificate names this verifier's node.
    fn names_the_node(&self, cert: &CertificateDer<'_>) -> bool {
        crate::pki::identity::subject_of_der(cert.as_ref()).is_ok_and(|(cn, groups)| {
            cn.strip_prefix(NODE_PREFIX) == Some(self.node.as_str())
                && groups.iter().any(|g| g == NODES)
        })
    }
}

impl ServerCertVerifier for KubeletVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match verified {
            // The name is checked after the chain: this certificate is the CA's.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.names_the_node(end_entity) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Leaf};

    fn leaf(ca: &Ca, cn: &str, org: &str, ip: &str) -> CertificateDer<'static> {
        let (cert, _) = ca
            .issue(&Leaf {
                common_name: cn.into(),
                organization: Some(org.into()),
                dns_names: vec!["n1".into()],
                ips: vec![ip.parse().expect("ip")],
            })
            .expect("issue");
        crate::pki::tls::certs(&cert).expect("der").remove(0)
    }

    fn verify(tls: &KubeletTls, node: &str, cert: &CertificateDer<'_>, addr: &str) -> bool {
        let v = KubeletVerifier {
            webpki: tls.webpki.clone(),
            node: node.into(),
        };
        let name = server_name(addr).expect("name");
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn kubelet_certificates_are_checked_by_address_then_by_node_name() {
        let ca = Ca::generate("t").expect("ca");
        let (cert, key) = ca
            .issue(&Leaf {
                common_name: "n1".into(),
                organization: Some(crate::pki::SERVERS_GROUP.into()),
                ..Default::default()
            })
            .expect("server cert");
        let tls = KubeletTls::new(&ca.cert_pem, &KeyedCert { cert, key }).expect("tls");
        let n1 = leaf(&ca, "system:node:n1", NODES, "10.0.0.1");
        // Its address.
        assert!(verify(&tls, "n1", &n1, "10.0.0.1:10250"));
        assert!(verify(&tls, "n2", &n1, "10.0.0.1:10250"));
        // Another address: only as the node it names.
        assert!(verify(&tls, "n1", &n1, "10.0.0.9:10250"));
        assert!(!verify(&tls, "n2", &n1, "10.0.0.9:10250"));
        // Not a node's certificate.
        let server = leaf(&ca, "system:node:n1", crate::pki::SERVERS_GROUP, "10.0.0.1");
        assert!(!verify(&tls, "n1", &server, "10.0.0.9:10250"));
        // Another CA's, even at its address and with the node's name.
        let other = Ca::generate("other").expect("ca");
        let forged = leaf(&other, "system:node:n1", NODES, "10.0.0.1");
        assert!(!verify(&tls, "n1", &forged, "10.0.0.1:10250"));
        assert!(!verify(&tls, "n1", &forged, "10.0.0.9:10250"));
    }

    #[test]
    fn server_names_of_kubelet_addresses() {
        let ip = |s: &str| match server_name(s).expect("name") {
            ServerName::IpAddress(ip) => std::net::IpAddr::from(ip).to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ip("127.0.0.1:10250"), "127.0.0.1");
        assert_eq!(ip("[::1]:10250"), "::1");
        assert!(matches!(
            server_name("node-1:10250").expect("name"),
            ServerName::DnsName(_)
        ));
    }
}
