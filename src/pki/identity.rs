//! Who a certificate names: the user is its CN, the groups its O values (as Kubernetes).

use super::PkiError;

/// (common name, organizations) of a DER certificate.
pub fn subject_of_der(der: &[u8]) -> Result<(String, Vec<String>), PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::Certificate(format!("parse certificate: {e}")))?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Ok((cn, orgs))
}

pub fn subject_of_pem(pem: &str) -> Result<(String, Vec<String>), PkiError> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Certificate(format!("certificate PEM: {e}")))?;
    subject_of_der(der.as_ref())
}
