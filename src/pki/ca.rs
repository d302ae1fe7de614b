//! The cluster CA: generated once (or taken from files) and used to sign every server,
//! node and peer certificate.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use super::PkiError;

/// Leaf certificates are valid this long; they are issued again at every start.
const LEAF_DAYS: i64 = 365;
const CA_DAYS: i64 = 3650;

pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
    key: KeyPair,
}

/// What a leaf certificate says: its user (CN), group (O) and names.
#[derive(Clone, Debug, Default)]
pub struct Leaf {
    pub common_name: String,
    pub organization: Option<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

fn rc(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Certificate(format!("{what}: {e}"))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks of other nodes that run slightly behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl Ca {
    pub fn generate(cluster_name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(rc("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("skiff-ca@{cluster_name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_DAYS);
        let cert = params.self_signed(&key).map_err(rc("CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key,
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rc("CA key"))?;
        // Checked here so a bad file fails at start, not at the first signature.
        Issuer::from_ca_cert_pem(cert_pem, &key).map_err(rc("CA certificate"))?;
        Ok(Ca {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            key,
        })
    }

    /// A fresh key and a certificate for it, usable for both serving and client auth.
    pub fn issue(&self, leaf: &Leaf) -> Result<(String, String), PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(rc("CA"))?;
        let key = KeyPair::generate().map_err(rc("key"))?;
        let mut params =
            CertificateParams::new(leaf.dns_names.clone()).map_err(rc("certificate names"))?;
        params
            .subject_alt_names
            .extend(leaf.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.common_name.clone());
        if let Some(o) = &leaf.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, o.clone());
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_DAYS);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(rc("sign certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// sha256 of the CA certificate (DER), hex: what a full cluster token pins.
    pub fn hash(&self) -> Result<String, PkiError> {
        cert_hash(&self.cert_pem)
    }
}

/// sha256 (hex) of the first certificate in a PEM text.
pub fn cert_hash(pem: &str) -> Result<String, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Certificate(format!("CA certificate PEM: {e}")))?;
    Ok(hex(&Sha256::digest(der.as_ref())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_ca_and_carry_the_subject() {
        let ca = Ca::generate("t").expect("ca");
        let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem).expect("reload");
        let (cert, _key) = again
            .issue(&Leaf {
                common_name: "system:node:n1".into(),
                organization: Some("system:nodes".into()),
                dns_names: vec!["n1".into()],
                ips: vec!["127.0.0.1".parse().expect("ip")],
            })
            .expect("issue");
        let subject = super::super::identity::subject_of_pem(&cert).expect("subject");
        assert_eq!(subject.0, "system:node:n1");
        assert_eq!(subject.1, vec!["system:nodes".to_string()]);
        assert_eq!(ca.hash().expect("hash").len(), 64);
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused() {
        let ca = Ca::generate("t").expect("ca");
        assert!(Ca::from_pem(&ca.cert_pem, "not a key").is_err());
    }
}
