//! How the lab's own commands (`up`, `join`, `status`, the forwarder) reach its API and node
//! metrics: HTTPS through the forwarder on 127.0.0.1, trusting only the cluster CA node 1
//! created and presenting the admin token it wrote (`DIR/n1/data/pki/{ca.crt,admin.token}`).
//! Every server's certificate names 127.0.0.1, so connections through the forwarder verify.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pki::client::{Access, Identity};

use super::plan::{self, Plan};
use super::state::LabState;
use super::{netns, LabError};

/// Node 1's PKI directory: it creates the cluster CA, the others join through it.
pub fn pki_dir(dir: &Path) -> PathBuf {
    plan::node_dir(dir, 1).join("data").join("pki")
}

/// The admin's access to the lab's API through the forwarder.
pub fn admin(dir: &Path, plan: &Plan) -> Result<Access, LabError> {
    let pki = pki_dir(dir);
    Ok(Access {
        url: plan.api_url(),
        ca_pem: crate::pki::read(&pki.join("ca.crt"))?,
        identity: Identity::Token(
            crate::pki::read(&pki.join("admin.token"))?
                .trim()
                .to_string(),
        ),
    })
}

/// Waits until node 1 has written the CA certificate and the admin token (it does so right
/// after it starts), then the admin's access. Fails early when node 1's server exits.
pub fn wait_admin(dir: &Path, st: &LabState, timeout: Duration) -> Result<Access, LabError> {
    let pki = pki_dir(dir);
    let n1 = plan::node_name(1);
    let pid = st
        .processes
        .iter()
        .find(|(role, _)| *role == n1)
        .map(|(_, pid)| *pid as i32);
    let deadline = Instant::now() + timeout;
    loop {
        if pki.join("ca.crt").is_file() && pki.join("admin.token").is_file() {
            return admin(dir, &st.plan);
        }
        let log = plan::node_dir(dir, 1).join("server.log");
        if pid.is_some_and(|p| !netns::alive(p)) {
            return Err(LabError::NotReady(format!(
                "node {n1}'s server exited before creating the cluster CA (see {})",
                log.display()
            )));
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "node {n1} wrote no CA and admin token to {} within {} s (see {})",
                pki.display(),
                timeout.as_secs(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Blocking HTTPS GETs on 127.0.0.1 (the forwarder's ports) with the CA and a bearer token.
pub struct Https {
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl Https {
    pub fn new(access: &Access) -> Result<Self, LabError> {
        Ok(Https {
            tls: Arc::new(crate::pki::tls::client_config(&access.ca_pem, None)?),
            token: match &access.identity {
                Identity::Token(t) => Some(t.clone()),
                Identity::Cert(_) => None,
            },
        })
    }

    /// `GET path` on 127.0.0.1:`port`: (status, body), or None when the connection or the
    /// TLS handshake fails (a node that is down).
    pub fn get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let name = rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).ok()?;
        let sock = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_secs(1),
        )
        .ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        sock.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut s = rustls::StreamOwned::new(conn, sock);
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        // HTTP/1.0: the answer is the whole body up to the close, never chunked.
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n").ok()?;
        let mut buf = Vec::new();
        // A close without close_notify is an error to rustls; what arrived still counts.
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    }
}
