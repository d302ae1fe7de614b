//! HTTPS for the tests: every port of a skiff server speaks TLS with certificates from the
//! cluster CA, and everything but health needs a token or a client certificate.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skiff::pki::client::{Access, Identity};

fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The admin's access to the API at `url`, with the CA and token of a server's data dir.
pub fn admin(data_dir: &Path, url: &str) -> Access {
    provider();
    let pki = data_dir.join("pki");
    Access {
        url: url.into(),
        ca_pem: std::fs::read_to_string(pki.join("ca.crt")).expect("ca.crt"),
        identity: Identity::Token(
            std::fs::read_to_string(pki.join("admin.token"))
                .expect("admin.token")
                .trim()
                .to_string(),
        ),
    }
}

pub fn admin_client(data_dir: &Path, url: &str) -> kube::Client {
    admin(data_dir, url).kube_client().expect("kube client")
}

/// `GET path` on 127.0.0.1:`port` over TLS; see `get_at`.
pub fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    get_at(&format!("127.0.0.1:{port}"), path, token)
}

/// `GET path` on `addr` (IP:PORT) over TLS (the certificate is not checked: this is for
/// polling health), with a bearer token if given: (status, body), or None when the
/// connection or handshake fails.
pub fn get_at(addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    request(addr, "GET", path, token).map(|(code, _, body)| (code, body))
}

/// One HTTP/1.1 request over TLS without a body: (status, response head, body).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Option<(u16, String, String)> {
    provider();
    let config = Arc::new(skiff::pki::tls::unverified_client_config());
    let sa: std::net::SocketAddr = addr.parse().ok()?;
    let name = rustls::pki_types::ServerName::from(sa.ip());
    let conn = rustls::ClientConnection::new(config, name).ok()?;
    let sock = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(2)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    sock.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    // A close without close_notify is an error to rustls; what arrived still counts.
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head.to_string(), body.to_string()))
}

/// Whether `GET /readyz` answers 200.
pub fn ready(port: u16) -> bool {
    get(port, "/readyz", None).is_some_and(|(c, _)| c == 200)
}
