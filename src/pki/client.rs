//! How a component reaches the API: URL, the CA to trust and who it is.

use base64::Engine;
use secrecy::SecretString;

use super::{KeyedCert, PkiError};

#[derive(Clone)]
pub enum Identity {
    /// A bearer token (the admin, in-process controllers, ServiceAccounts).
    Token(String),
    /// A client certificate (nodes).
    Cert(KeyedCert),
}

#[derive(Clone)]
pub struct Access {
    pub url: String,
    pub ca_pem: String,
    pub identity: Identity,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Access {
    pub fn kube_config(&self) -> Result<kube::Config, PkiError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| PkiError::Tls(format!("API URL {:?}: {e}", self.url)))?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(
            super::tls::certs(&self.ca_pem)?
                .into_iter()
                .map(|c| c.as_ref().to_vec())
                .collect(),
        );
        match &self.identity {
            Identity::Token(t) => config.auth_info.token = Some(SecretString::from(t.clone())),
            Identity::Cert(c) => {
                config.auth_info.client_certificate_data = Some(b64(&c.cert));
                config.auth_info.client_key_data = Some(SecretString::from(b64(&c.key)));
            }
        }
        Ok(config)
    }

    pub fn kube_client(&self) -> Result<kube::Client, PkiError> {
        kube::Client::try_from(self.kube_config()?)
            .map_err(|e| PkiError::Tls(format!("API client: {e}")))
    }

    /// A kubeconfig with everything inline (CA, token or client certificate).
    pub fn kubeconfig(&self, context: &str) -> String {
        let user = match &self.identity {
            Identity::Token(t) => format!("    token: {t}\n"),
            Identity::Cert(c) => format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&c.cert),
                b64(&c.key)
            ),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}\ncurrent-context: {context}\nusers:\n- name: {context}\n  user:\n{user}",
            server = self.url,
            ca = b64(&self.ca_pem),
        )
    }
}
