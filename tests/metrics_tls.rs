//! The health and metrics port (`http_listen_addr`) of a real `skiff server`: HTTPS with the
//! server's certificate; health for anyone; `/metrics` for client certificates of the
//! privileged groups and for bearer tokens the API server allows `get /metrics`.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use skiff::pki::{Ca, KeyedCert, Leaf, TokenKeys};

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One server for every test of this binary.
fn server() -> &'static servers::Servers {
    static SERVERS: OnceLock<servers::Servers> = OnceLock::new();
    SERVERS.get_or_init(|| servers::Servers::start(1, ""))
}

fn pki(file: &str) -> String {
    let path: PathBuf = server().data_dir(0).join("pki").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ca() -> String {
    pki("ca.crt")
}

fn url(path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", server().nodes[0].http)
}

/// A client trusting the cluster CA (so the port's certificate is checked for 127.0.0.1),
/// presenting `cert` if given.
fn client(cert: Option<&KeyedCert>) -> reqwest::Client {
    install_crypto();
    let tls =
        skiff::pki::tls::client_config(&ca(), cert.map(|c| (c.cert.as_str(), c.key.as_str())))
            .expect("client TLS");
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client")
}

async fn get(client: &reqwest::Client, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client.get(url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET");
    let code = resp.status().as_u16();
    (code, resp.text().await.expect("body"))
}

fn keyed(dir: &Path, name: &str) -> KeyedCert {
    let read = |f: String| std::fs::read_to_string(dir.join("pki").join(&f)).expect("pki file");
    KeyedCert {
        cert: read(format!("{name}.crt")),
        key: read(format!("{name}.key")),
    }
}

fn is_prometheus_text(body: &str) -> bool {
    body.lines().any(|l| l.starts_with("# TYPE ")) && body.contains("skiff_raft_is_leader")
}

#[tokio::test]
async fn health_is_anonymous_and_metrics_need_credentials() {
    let anonymous = client(None);
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            get(&anonymous, path, None).await,
            (200, "ok".into()),
            "{path}"
        );
    }
    let (code, body) = get(&anonymous, "/metrics", None).await;
    assert_eq!(code, 401, "{body}");
    assert!(!is_prometheus_text(&body));
    // Not a bearer token: refused without asking the API.
    let resp = anonymous
        .get(url("/metrics"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn the_admin_token_reads_metrics() {
    let admin = pki("admin.token");
    let http = client(None);
    let (code, body) = get(&http, "/metrics", Some(admin.trim())).await;
    assert_eq!(code, 200, "{body}");
    assert!(is_prometheus_text(&body), "{body}");
    // Again (from the cache).
    let (code, body) = get(&http, "/metrics", Some(admin.trim())).await;
    assert_eq!(code, 200);
    assert!(is_prometheus_text(&body));
}

#[tokio::test]
async fn random_and_forged_tokens_are_refused() {
    let http = client(None);
    let random = format!("{}", uuid::Uuid::new_v4().simple());
    assert_eq!(get(&http, "/metrics", Some(&random)).await.0, 401);
    // A well-formed token naming the admin, signed with a key that is not the cluster's.
    let (private, _) = TokenKeys::generate().expect("keys");
    let forged = TokenKeys::from_private_pem(&private)
        .expect("keys")
        .user_token("admin", &["system:masters"])
        .expect("token");
    assert_eq!(get(&http, "/metrics", Some(&forged)).await.0, 401);
    // Twice: the cached refusal holds.
    assert_eq!(get(&http, "/metrics", Some(&forged)).await.0, 401);
}

#[tokio::test]
async fn a_valid_token_without_the_permission_is_forbidden() {
    // Signed with the cluster's key (so the API authenticates it), for a user no role binds.
    let keys = TokenKeys::from_private_pem(&pki("token.key")).expect("token key");
    let token = keys.user_token("nobody", &[]).expect("token");
    let (code, body) = get(&client(None), "/metrics", Some(&token)).await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn client_certificates_of_the_privileged_groups_read_metrics() {
    let dir = server().data_dir(0);
    // The server's own certificate (skiff:servers).
    let (code, body) = get(&client(Some(&keyed(&dir, "server"))), "/metrics", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(is_prometheus_text(&body));
    // A system:masters certificate of the cluster CA.
    let ca = Ca::from_pem(&ca(), &pki("ca.key")).expect("CA");
    let issue = |cn: &str, org: &str| {
        let (cert, key) = ca
            .issue(&Leaf {
                common_name: cn.into(),
                organization: Some(org.into()),
                ..Default::default()
            })
            .expect("issue");
        KeyedCert { cert, key }
    };
    let masters = client(Some(&issue("root", "system:masters")));
    assert_eq!(get(&masters, "/metrics", None).await.0, 200);
    // A node's certificate: authenticated, not allowed.
    let node = client(Some(&keyed(&dir, "node")));
    assert_eq!(get(&node, "/metrics", None).await.0, 403);
    assert_eq!(get(&node, "/readyz", None).await.0, 200);
    // ... unless it brings a token that is.
    let admin = pki("admin.token");
    assert_eq!(get(&node, "/metrics", Some(admin.trim())).await.0, 200);
}

#[tokio::test]
async fn the_port_speaks_only_tls_with_the_cluster_ca() {
    install_crypto();
    // Plain HTTP gets no answer.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/readyz",
            server().nodes[0].http
        ))
        .send()
        .await;
    assert!(
        plain
            .as_ref()
            .map(|r| r.status().as_u16() != 200)
            .unwrap_or(true),
        "{plain:?}"
    );
    // A client trusting another CA does not take the port's certificate.
    let other = Ca::generate("other").expect("CA");
    let stranger = reqwest::Client::builder()
        .use_preconfigured_tls(skiff::pki::tls::client_config(&other.cert_pem, None).expect("tls"))
        .build()
        .expect("client");
    assert!(stranger.get(url("/readyz")).send().await.is_err());
    // A client certificate of another CA is refused in the handshake, even in system:masters.
    let (cert, key) = other
        .issue(&Leaf {
            common_name: "root".into(),
            organization: Some("system:masters".into()),
            ..Default::default()
        })
        .expect("issue");
    let forged = client(Some(&KeyedCert { cert, key }));
    assert!(forged.get(url("/metrics")).send().await.is_err());
}
