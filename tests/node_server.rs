//! The kubelet server (container logs, exec) against a real runc container, directly and
//! through the API server with real kubectl. Needs root, runc and busybox-static; skipped
//! without them unless `SKIFF_E2E_REQUIRED=1`.
//!
//! The kubelet port is HTTPS with the node's certificate and takes only callers with a
//! client certificate of the cluster CA in `skiff:servers` or `system:masters`.

#[path = "common/runc.rs"]
mod runc;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use skiff::node::{ContainerRecord, NodeDirs, PodRecord};
use skiff::pki::{Ca, KeyedCert, Leaf};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

const WAIT: Duration = Duration::from_secs(20);
const LOG: &str = "2020-01-02T03:04:05.000000001Z stdout F one\n\
2020-01-02T03:04:05.000000002Z stderr F two\n\
2020-01-02T03:04:05.000000003Z stdout P thr\n\
2020-01-02T03:04:05.000000004Z stdout F ee\n";
const PREVIOUS_LOG: &str = "2020-01-02T03:00:00.000000001Z stdout F before restart\n";

/// reqwest is built with rustls (for image pulls), which needs a process-wide provider.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

const SERVERS: &str = "skiff:servers";
const MASTERS: &str = "system:masters";
const NODES: &str = "system:nodes";
/// The node the tests' kubelet serves.
const NODE: &str = "kubelet-1";

/// A cluster CA (a throwaway one, or a started server's) and what it issues.
struct Pki {
    ca: Ca,
}

impl Pki {
    fn generate() -> Pki {
        install_crypto();
        Pki {
            ca: Ca::generate("node-server-test").expect("CA"),
        }
    }

    /// The CA of a server's data dir (`pki/ca.crt`, `pki/ca.key`).
    fn of_server(data_dir: &Path) -> Pki {
        install_crypto();
        let read = |f: &str| std::fs::read_to_string(data_dir.join("pki").join(f)).expect(f);
        Pki {
            ca: Ca::from_pem(&read("ca.crt"), &read("ca.key")).expect("CA"),
        }
    }

    fn issue(&self, cn: &str, org: &str) -> KeyedCert {
        let (cert, key) = self
            .ca
            .issue(&Leaf {
                common_name: cn.into(),
                organization: Some(org.into()),
                dns_names: vec!["localhost".into()],
                ips: vec![[127, 0, 0, 1].into()],
            })
            .expect("issue");
        KeyedCert { cert, key }
    }

    /// The kubelet port's TLS, with a node certificate for 127.0.0.1.
    fn kubelet_tls(&self) -> rustls::ServerConfig {
        let node = self.issue(&format!("system:node:{NODE}"), NODES);
        skiff::node::server::tls_config(&self.ca.cert_pem, &node).expect("kubelet TLS")
    }

    /// A client trusting this CA, presenting a certificate for `cn` in `org` (or none).
    fn client(&self, who: Option<(&str, &str)>) -> Client {
        let cert = who.map(|(cn, org)| self.issue(cn, org));
        let tls = skiff::pki::tls::client_config(
            &self.ca.cert_pem,
            cert.as_ref().map(|c| (c.cert.as_str(), c.key.as_str())),
        )
        .expect("client TLS");
        Client::new(tls, None)
    }
}

/// An HTTPS and WebSocket-over-TLS client, with a bearer token if given.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl Client {
    fn new(tls: rustls::ClientConfig, token: Option<String>) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &token {
            headers.insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .default_headers(headers)
            .build()
            .expect("reqwest client");
        Client {
            http,
            tls: Arc::new(tls),
            token,
        }
    }

    /// The admin of a started server (its CA and admin token).
    fn admin(data_dir: &Path) -> Client {
        install_crypto();
        let read = |f: &str| std::fs::read_to_string(data_dir.join("pki").join(f)).expect(f);
        let tls = skiff::pki::tls::client_config(&read("ca.crt"), None).expect("client TLS");
        Client::new(tls, Some(read("admin.token").trim().to_string()))
    }
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A WebSocket over TLS to a `wss://` URL.
async fn ws_connect(
    client: &Client,
    url: &str,
    protocols: &str,
) -> Result<(Wss, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut req = url.into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().expect("header"));
    if let Some(t) = &client.token {
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let host = req.uri().host().expect("host").to_string();
    let port = req.uri().port_u16().expect("port");
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let name = rustls::pki_types::ServerName::try_from(host).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(client.tls.clone())
        .connect(name, tcp)
        .await?;
    tokio_tungstenite::client_async(req, tls).await
}

fn free_port() -> u16 {
    skiff::store::free_loopback_ports(1).expect("free port")[0]
}

/// A kubelet server over a node directory holding one pod `namespace/name` with a running
/// container: `main` (attempt 1, with a previous log) and `side` (attempt 0), both backed by
/// the same runc container. `client` is an API server's (O=skiff:servers).
struct Node {
    dirs: NodeDirs,
    uid: String,
    port: u16,
    client: Client,
    server: actix_web::dev::ServerHandle,
    container: runc::Container,
    _dir: TempDir,
}

impl Node {
    /// With certificates of `pki`.
    async fn start(namespace: &str, name: &str, pki: &Pki) -> Node {
        install_crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let dirs = NodeDirs {
            state: dir.path().join("state"),
            run: dir.path().join("run"),
        };
        let uid = format!("uid-{}", uuid::Uuid::new_v4().simple());
        let id = format!(
            "skiff-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let container =
            runc::Container::run(&dirs.runc_root(), &id, &dirs.bundle(&uid, &id), "testhost");
        let record = |attempt| ContainerRecord {
            id: id.clone(),
            attempt,
        };
        dirs.write_record(&PodRecord {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.clone(),
            containers: BTreeMap::from([("main".into(), record(1)), ("side".into(), record(0))]),
        })
        .expect("pod record");
        std::fs::create_dir_all(dirs.log_dir(&uid, "main")).expect("log dir");
        std::fs::write(dirs.log_path(&uid, "main", 0), PREVIOUS_LOG).expect("log 0");
        std::fs::write(dirs.log_path(&uid, "main", 1), LOG).expect("log 1");
        let port = free_port();
        let server = skiff::node::server::serve(
            ([127, 0, 0, 1], port).into(),
            dirs.clone(),
            PathBuf::from(runc::RUNC),
            pki.kubelet_tls(),
        )
        .expect("serve");
        let handle = server.handle();
        tokio::spawn(server);
        let node = Node {
            dirs,
            uid,
            port,
            client: pki.client(Some(("n1", SERVERS))),
            server: handle,
            container,
            _dir: dir,
        };
        wait_up(&node.client, port).await;
        node
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        get(&self.client, &self.url(path)).await
    }

    fn log_file(&self) -> PathBuf {
        self.dirs.log_path(&self.uid, "main", 1)
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// A kubelet server over an empty node directory (no pods): (port, handle, its directory).
async fn bare_kubelet(tls: rustls::ServerConfig) -> (u16, actix_web::dev::ServerHandle, TempDir) {
    install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let dirs = NodeDirs {
        state: dir.path().join("state"),
        run: dir.path().join("run"),
    };
    let port = free_port();
    let server = skiff::node::server::serve(
        ([127, 0, 0, 1], port).into(),
        dirs,
        PathBuf::from(runc::RUNC),
        tls,
    )
    .expect("serve");
    let handle = server.handle();
    tokio::spawn(server);
    // Up when it completes a handshake (whatever it answers).
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "kubelet server not up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (port, handle, dir)
}

async fn wait_up(client: &Client, port: u16) {
    let deadline = Instant::now() + WAIT;
    let url = format!("https://127.0.0.1:{port}/healthz");
    while client.http.get(&url).send().await.is_err() {
        assert!(Instant::now() < deadline, "kubelet server not up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(client: &Client, url: &str) -> (u16, String) {
    let resp = client.http.get(url).send().await.expect("GET");
    let code = resp.status().as_u16();
    (code, resp.text().await.expect("body"))
}

fn status_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not a Status: {body}"))
}

/// What an exec session returned, channel by channel.
#[derive(Debug, Default)]
struct Exec {
    protocol: Option<String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Vec<u8>,
}

impl Exec {
    fn status(&self) -> Value {
        serde_json::from_slice(&self.status).unwrap_or(Value::Null)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Connects offering `protocols`, sends `frames` (channel byte first), and reads until the
/// server closes.
async fn ws_exec(
    client: &Client,
    url: &str,
    protocols: &str,
    frames: &[Vec<u8>],
) -> Result<Exec, tungstenite::Error> {
    let (mut ws, resp) = ws_connect(client, url, protocols).await?;
    let mut out = Exec {
        protocol: resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|p| p.to_str().ok())
            .map(String::from),
        ..Exec::default()
    };
    for f in frames {
        ws.send(Message::Binary(f.clone().into())).await?;
    }
    let read = async {
        while let Some(msg) = ws.next().await {
            match msg? {
                Message::Binary(b) => match b.split_first() {
                    Some((1, d)) => out.stdout.extend_from_slice(d),
                    Some((2, d)) => out.stderr.extend_from_slice(d),
                    Some((3, d)) => out.status.extend_from_slice(d),
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok::<_, tungstenite::Error>(())
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("exec ended within the deadline")?;
    Ok(out)
}

fn exec_url(port: u16, path: &str, command: &[&str], flags: &str) -> String {
    let cmd: String = command
        .iter()
        .map(|c| format!("command={}&", urlencode(c)))
        .collect();
    format!("wss://127.0.0.1:{port}{path}?{cmd}{flags}")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Needs neither root nor runc: nothing is run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_port_takes_only_api_servers_and_masters() {
    let pki = Pki::generate();
    let (port, server, _dir) = bare_kubelet(pki.kubelet_tls()).await;
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let logs = url("/containerLogs/default/web/main");
    let exec = format!("wss://127.0.0.1:{port}/exec/default/web/main?command=true&stdout=1");

    // API servers and the privileged group: through to the handlers (no such pod).
    for who in [("n1", SERVERS), ("admin", MASTERS)] {
        let client = pki.client(Some(who));
        let (code, body) = get(&client, &logs).await;
        assert_eq!(code, 404, "{who:?}: {body}");
        assert_eq!(status_of(&body)["reason"], "NotFound");
        match ws_exec(&client, &exec, "v5.channel.k8s.io", &[]).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 404),
            other => panic!("{who:?}: {other:?}"),
        }
    }

    // Another certificate of the CA (a node, a user): health only.
    for who in [("system:node:other", NODES), ("alice", "developers")] {
        let client = pki.client(Some(who));
        assert_eq!(get(&client, &url("/healthz")).await, (200, "ok".into()));
        let (code, body) = get(&client, &logs).await;
        assert_eq!(code, 403, "{who:?}: {body}");
        let status = status_of(&body);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(
            status["message"],
            format!(
                "Forbidden (user={}, verb=get, resource=nodes, subresource=proxy)",
                who.0
            )
        );
        let (code, _) = get(&client, &url("/nope")).await;
        assert_eq!(code, 403);
        match ws_exec(&client, &exec, "v5.channel.k8s.io", &[]).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
            other => panic!("{who:?}: {other:?}"),
        }
    }

    // No client certificate, or one of another CA (even in skiff:servers): no handshake.
    let foreign = Pki::generate().issue("n1", SERVERS);
    let strangers = [
        pki.client(None),
        Client::new(
            skiff::pki::tls::client_config(&pki.ca.cert_pem, Some((&foreign.cert, &foreign.key)))
                .expect("client TLS"),
            None,
        ),
    ];
    for client in strangers {
        for path in ["/healthz", "/containerLogs/default/web/main"] {
            let res = client.http.get(url(path)).send().await;
            assert!(res.is_err(), "{path}: {res:?}");
        }
        assert!(ws_exec(&client, &exec, "v5.channel.k8s.io", &[])
            .await
            .is_err());
    }
    // Plain HTTP: no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));
    server.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_plain_timestamps_tail_previous_limit_and_errors() {
    if !runc::available() {
        return;
    }
    let node = Node::start("default", "web", &Pki::generate()).await;
    let logs = "/containerLogs/default/web";
    assert_eq!(
        node.get(&format!("{logs}/main")).await,
        (200, "one\ntwo\nthree\n".into())
    );
    let (code, body) = node.get(&format!("{logs}/main?timestamps=true")).await;
    assert_eq!(code, 200);
    assert_eq!(
        body,
        "2020-01-02T03:04:05.000000001Z one\n2020-01-02T03:04:05.000000002Z two\n2020-01-02T03:04:05.000000003Z three\n"
    );
    assert_eq!(
        node.get(&format!("{logs}/main?tailLines=2")).await.1,
        "two\nthree\n"
    );
    assert_eq!(node.get(&format!("{logs}/main?tailLines=0")).await.1, "");
    assert_eq!(
        node.get(&format!("{logs}/main?limitBytes=6")).await.1,
        "one\ntw"
    );
    assert_eq!(
        node.get(&format!("{logs}/main?previous=true")).await,
        (200, "before restart\n".into())
    );
    // Only lines newer than the cutoff: the fixed ones are from 2020.
    let now = jiff::Timestamp::now();
    std::fs::write(node.log_file(), format!("{LOG}{now} stdout F fresh\n")).expect("append");
    assert_eq!(
        node.get(&format!("{logs}/main?sinceSeconds=60")).await.1,
        "fresh\n"
    );

    let (code, body) = node.get(&format!("{logs}/side?previous=true")).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(status_of(&body)["reason"], "BadRequest");
    assert!(body.contains("previous terminated container"), "{body}");
    for path in [
        "/containerLogs/default/nope/main",
        "/containerLogs/other/web/main",
        "/containerLogs/default/web/nope",
    ] {
        let (code, body) = node.get(path).await;
        assert_eq!(code, 404, "{path}: {body}");
        let s = status_of(&body);
        assert_eq!(
            (s["kind"].as_str(), s["reason"].as_str()),
            (Some("Status"), Some("NotFound"))
        );
    }
    assert_eq!(node.get("/healthz").await, (200, "ok".into()));
    node.stop().await;
}

/// Reads the response until `want` has arrived.
async fn read_until(resp: &mut reqwest::Response, got: &mut String, want: &str) {
    let deadline = Instant::now() + WAIT;
    while !got.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("{want:?} not received; got {got:?}"))
            .expect("chunk")
            .unwrap_or_else(|| panic!("stream ended before {want:?}; got {got:?}"));
        got.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_appended_lines_until_the_container_exits() {
    if !runc::available() {
        return;
    }
    let node = Node::start("default", "web", &Pki::generate()).await;
    let mut resp = node
        .client
        .http
        .get(node.url("/containerLogs/default/web/main?follow=true"))
        .send()
        .await
        .expect("GET follow");
    assert_eq!(resp.status().as_u16(), 200);
    let mut got = String::new();
    read_until(&mut resp, &mut got, "three\n").await;
    // A line written after the request started, in two writes (the record is cut mid-way).
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(node.log_file())
        .expect("open log");
    use std::io::Write;
    f.write_all(b"2020-01-02T03:04:06.000000001Z stdout F fo")
        .expect("write");
    f.flush().expect("flush");
    f.write_all(b"ur\n").expect("write");
    read_until(&mut resp, &mut got, "four\n").await;
    assert_eq!(got, "one\ntwo\nthree\nfour\n");
    // The kubelet marks the exit in the bundle: the follow ends, with what was written before.
    f.write_all(b"2020-01-02T03:04:07.000000001Z stdout F last\n")
        .expect("write");
    let exit = node.dirs.bundle(&node.uid, &node.container.id).join("exit");
    std::fs::write(exit, "0").expect("exit file");
    let rest = tokio::time::timeout(WAIT, resp.text())
        .await
        .expect("follow ended after the exit")
        .expect("body");
    assert_eq!(rest, "last\n");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_commands_with_stdio_and_exit_codes() {
    if !runc::available() {
        return;
    }
    let node = Node::start("default", "web", &Pki::generate()).await;
    let path = "/exec/default/web/main";

    let r = ws_exec(
        &node.client,
        &exec_url(
            node.port,
            path,
            &["cat", "/etc/hostname"],
            "stdout=1&stderr=1",
        ),
        "v5.channel.k8s.io",
        &[],
    )
    .await
    .expect("exec");
    assert_eq!(r.protocol.as_deref(), Some("v5.channel.k8s.io"));
    assert_eq!(r.stdout(), "testhost\n");
    assert_eq!(r.status(), json!({"metadata": {}, "status": "Success"}));

    // stdin, then a v5 close of stdin: cat sees end-of-file and the shell exits 3.
    let r = ws_exec(
        &node.client,
        &exec_url(
            node.port,
            path,
            &["sh", "-c", "cat; echo oops >&2; exit 3"],
            "stdin=1&stdout=1&stderr=1",
        ),
        "v4.channel.k8s.io, v5.channel.k8s.io",
        &[b"\0hello\n".to_vec(), b"\0world\n".to_vec(), vec![255, 0]],
    )
    .await
    .expect("exec");
    assert_eq!(r.stdout(), "hello\nworld\n");
    assert_eq!(String::from_utf8_lossy(&r.stderr), "oops\n");
    let s = r.status();
    assert_eq!(s["status"], "Failure", "{s}");
    assert_eq!(s["reason"], "NonZeroExitCode");
    assert_eq!(
        s["details"]["causes"][0],
        json!({"reason": "ExitCode", "message": "3"})
    );

    // v4 has no stream close: the command runs without stdin.
    let r = ws_exec(
        &node.client,
        &exec_url(node.port, path, &["sh", "-c", "exit 7"], "stdout=1"),
        "v4.channel.k8s.io",
        &[],
    )
    .await
    .expect("exec v4");
    assert_eq!(r.protocol.as_deref(), Some("v4.channel.k8s.io"));
    assert_eq!(r.status()["details"]["causes"][0]["message"], "7");

    // The oldest protocol reports only failures, as text.
    let r = ws_exec(
        &node.client,
        &exec_url(node.port, path, &["sh", "-c", "exit 4"], "stdout=1"),
        "channel.k8s.io",
        &[],
    )
    .await
    .expect("exec v1");
    assert_eq!(r.protocol.as_deref(), Some("channel.k8s.io"));
    let text = String::from_utf8_lossy(&r.status);
    assert!(
        text.starts_with("command terminated with non-zero exit code"),
        "{text}"
    );
    assert!(text.ends_with("exit code 4"), "{text}");

    // A client that leaves stops its command.
    let (ws, _) = ws_connect(
        &node.client,
        &exec_url(node.port, path, &["sleep", "1001"], "stdout=1"),
        "v5.channel.k8s.io",
    )
    .await
    .expect("connect");
    let ps = || async {
        ws_exec(
            &node.client,
            &exec_url(node.port, path, &["ps"], "stdout=1"),
            "v5.channel.k8s.io",
            &[],
        )
        .await
        .expect("ps")
        .stdout()
    };
    let deadline = Instant::now() + WAIT;
    while !ps().await.contains("sleep 1001") {
        assert!(Instant::now() < deadline, "sleep 1001 never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(ws);
    while ps().await.contains("sleep 1001") {
        assert!(Instant::now() < deadline, "sleep 1001 outlived its client");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refused before the upgrade: unknown container, no command.
    for url in [
        exec_url(node.port, "/exec/default/web/nope", &["true"], "stdout=1"),
        exec_url(node.port, path, &[], "stdout=1"),
    ] {
        match ws_exec(&node.client, &url, "v5.channel.k8s.io", &[]).await {
            Err(tungstenite::Error::Http(resp)) => {
                assert!(resp.status().is_client_error(), "{url}: {}", resp.status())
            }
            other => panic!("{url}: expected an HTTP error, got {other:?}"),
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal_applies_resizes() {
    if !runc::available() {
        return;
    }
    let node = Node::start("default", "web", &Pki::generate()).await;
    let r = ws_exec(
        &node.client,
        &exec_url(
            node.port,
            "/exec/default/web/main",
            &[
                "sh",
                "-c",
                // runc copies the size to the container's terminal on SIGWINCH, a moment
                // after the resize: poll for it (at most 5 s). busybox `stty size` exits 0
                // without output while the terminal has no size yet.
                "read line; i=0; until s=$(stty size 2>/dev/null) && [ -n \"$s\" ]; do i=$((i+1)); [ $i -gt 50 ] && break; sleep 0.1; done; echo $s; test -t 0 && echo tty:$line",
            ],
            "stdin=1&stdout=1&tty=1",
        ),
        "v5.channel.k8s.io",
        &[
            [&[4u8][..], br#"{"Width":100,"Height":30}"#].concat(),
            b"\0go\n".to_vec(),
        ],
    )
    .await
    .expect("exec tty");
    let out = r.stdout();
    assert!(
        out.contains("30 100"),
        "{r:?} {}",
        String::from_utf8_lossy(&r.status)
    );
    assert!(out.contains("tty:go"), "{out:?}");
    assert_eq!(r.status()["status"], "Success", "{out:?}");
    node.stop().await;
}

fn kubectl(minor: u32) -> Option<PathBuf> {
    let bin = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"));
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var("SKIFF_E2E_REQUIRED").as_deref() != Ok("1"),
        "kubectl 1.{minor} is required (SKIFF_E2E_REQUIRED=1) but not installed"
    );
    eprintln!("skipping kubectl 1.{minor}: not installed");
    None
}

async fn kubectl_run(
    bin: &Path,
    kubeconfig: &Path,
    args: &[&str],
    stdin: &[u8],
) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", "proxy"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("kubectl stdin");
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished")
        .expect("kubectl output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_proxies_logs_and_exec_for_kubectl() {
    if !runc::available() {
        return;
    }
    let servers = tokio::task::spawn_blocking(|| servers::Servers::start(1, ""))
        .await
        .expect("servers");
    // The kubelet's certificate is from the server's CA, as an agent's would be.
    let node = Node::start("proxy", "web", &Pki::of_server(&servers.data_dir(0))).await;
    // A kubelet whose certificate is from another CA: the API server must not talk to it.
    let (rogue_port, rogue, _rogue_dir) = bare_kubelet(Pki::generate().kubelet_tls()).await;
    let api = format!("https://127.0.0.1:{}", servers.nodes[0].api);
    let admin = Client::admin(&servers.data_dir(0));
    let http = admin.http.clone();
    let post = |path: &str, body: Value| {
        http.post(format!("{api}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let created = post(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "proxy"}}),
    )
    .await
    .expect("namespace");
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let node_obj = json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "kubelet-1"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": node.port}},
        },
    });
    let created = post("/api/v1/nodes", node_obj).await.expect("node");
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let rogue_obj = json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "rogue"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": rogue_port}},
        },
    });
    let created = post("/api/v1/nodes", rogue_obj).await.expect("node");
    assert!(created.status().is_success(), "{:?}", created.text().await);
    for (name, containers, node_name) in [
        ("web", vec!["main"], NODE),
        ("multi", vec!["main", "side"], NODE),
        ("pending", vec!["main"], NODE),
        ("elsewhere", vec!["main"], "rogue"),
    ] {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "nodeName": node_name,
                "containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>(),
            },
        });
        let created = post("/api/v1/namespaces/proxy/pods", pod)
            .await
            .expect("pod");
        assert!(created.status().is_success(), "{:?}", created.text().await);
        if name != "pending" {
            let patched = http
                .patch(format!("{api}/api/v1/namespaces/proxy/pods/{name}/status"))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"status": {"phase": "Running"}}).to_string())
                .send()
                .await
                .expect("status");
            assert!(patched.status().is_success(), "{:?}", patched.text().await);
        }
    }

    // Straight HTTP: the container choice and its errors.
    let logs = |q: &str| format!("{api}/api/v1/namespaces/proxy/pods/{q}");
    let get = |url: String| {
        let admin = admin.clone();
        async move { get(&admin, &url).await }
    };
    assert_eq!(
        get(logs("web/log")).await,
        (200, "one\ntwo\nthree\n".into())
    );
    assert_eq!(
        get(logs("web/log?container=main&tailLines=1")).await.1,
        "three\n"
    );
    let (code, body) = get(logs("multi/log")).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        status_of(&body)["message"],
        "a container name must be specified for pod multi, choose one of: [main side]"
    );
    let (code, body) = get(logs("missing/log")).await;
    assert_eq!(
        (code, status_of(&body)["reason"].as_str()),
        (404, Some("NotFound"))
    );
    // The kubelet's own 404 (it has no pod "multi") comes through as it said it.
    let (code, body) = get(logs("multi/log?container=side")).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("proxy/multi"), "{body}");
    // A kubelet with a certificate of another CA is not spoken to.
    let (code, body) = get(logs("elsewhere/log")).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("error trying to reach the kubelet") && body.contains("certificate"),
        "{body}"
    );
    let exec = ws_exec(
        &admin,
        &format!(
            "{}/api/v1/namespaces/proxy/pods/elsewhere/exec?command=true&stdout=1",
            api.replace("https", "wss")
        ),
        "v5.channel.k8s.io",
        &[],
    )
    .await
    .expect("exec answered");
    let failure = String::from_utf8_lossy(&exec.status).into_owned();
    assert!(failure.contains("certificate"), "{failure}");
    let refused = ws_exec(
        &admin,
        &format!(
            "{}/api/v1/namespaces/proxy/pods/pending/exec?command=true&stdout=1",
            api.replace("https", "wss")
        ),
        "v5.channel.k8s.io",
        &[],
    )
    .await;
    match refused {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 400),
        other => panic!("exec into a pending pod: {other:?}"),
    }

    let kubeconfig = servers.kubeconfig(0);
    if let Some(k) = kubectl(33) {
        let out = kubectl_run(&k, &kubeconfig, &["logs", "web"], b"").await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
        let out = kubectl_run(
            &k,
            &kubeconfig,
            &["exec", "-i", "web", "--", "sh", "-c", "cat; exit 3"],
            b"hello\nkubectl\n",
        )
        .await;
        assert_eq!(out.status.code(), Some(3), "{out:?}\n{}", servers.log(0));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nkubectl\n");
        let out = kubectl_run(
            &k,
            &kubeconfig,
            &["exec", "web", "--", "cat", "/etc/hostname"],
            b"",
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "testhost\n");
        // Errors of the kubelet arrive as the exec's failure, not as an SPDY fallback.
        let out = kubectl_run(
            &k,
            &kubeconfig,
            &["exec", "multi", "-c", "side", "--", "true"],
            b"",
        )
        .await;
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not found"),
            "{out:?}"
        );
    }
    if let Some(k) = kubectl(27) {
        let out = kubectl_run(&k, &kubeconfig, &["logs", "web", "--timestamps"], b"").await;
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .starts_with("2020-01-02T03:04:05.000000001Z one\n"),
            "{out:?}"
        );
        let out = kubectl_run(&k, &kubeconfig, &["exec", "web", "--", "true"], b"").await;
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("SPDY"),
            "{out:?}"
        );
    }
    if let Some(k) = kubectl(33) {
        follow_with_kubectl(&node, &k, &kubeconfig).await;
    }
    drop(servers);
    rogue.stop(false).await;
    node.stop().await;
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Option<String> {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line within the deadline")
        .expect("read")
}

/// `kubectl logs -f` through the API server: lines as they are written, and the end when
/// the container exits.
async fn follow_with_kubectl(node: &Node, k: &Path, kubeconfig: &Path) {
    use std::io::Write;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(k)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", "proxy", "logs", "-f", "web"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for want in ["one", "two", "three"] {
        assert_eq!(next_line(&mut lines).await.as_deref(), Some(want));
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(node.log_file())
        .expect("open log");
    f.write_all(b"2020-01-02T03:04:06.000000001Z stdout F followed\n")
        .expect("append");
    assert_eq!(next_line(&mut lines).await.as_deref(), Some("followed"));
    let exit = node.dirs.bundle(&node.uid, &node.container.id).join("exit");
    std::fs::write(exit, "0").expect("exit file");
    assert_eq!(next_line(&mut lines).await, None);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("kubectl exited")
        .expect("wait");
    assert!(status.success(), "{status}");
}
