//! The ingress controller against a real `skiff server` (node agent, controllers and the
//! server's own ingress off): two HTTP backends on 127.0.0.1 behind selector-less Services
//! with hand-made EndpointSlices, an IngressClass `skiff` and an Ingress with two hosts; the
//! controller runs in-process on 127.0.0.1:0. No root needed.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use servers::Servers;
use skiff::ingress::{self, IngressConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NS: &str = "ing";
const EXTRA: &str = "[controllers]\nenabled = false\n[ingress]\nenabled = false\n";
const WAIT: Duration = Duration::from_secs(20);

/// A backend answering `NAME PATH xfh=.. xff=.. xfp=.. len=BODY_BYTES` to every request.
async fn backend(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(answer(s, name));
        }
    });
    port
}

async fn answer(mut s: TcpStream, name: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |h: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(h).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    // The body: Content-Length bytes, or chunks up to the last one.
    let chunked = header("transfer-encoding").eq_ignore_ascii_case("chunked");
    let want: usize = header("content-length").parse().unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while (!chunked && body.len() < want) || (chunked && !body.ends_with(b"0\r\n\r\n")) {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let got = if chunked {
        dechunk(&String::from_utf8_lossy(&body)).len()
    } else {
        body.len()
    };
    let body = format!(
        "{name} {path} xfh={} xff={} xfp={} len={got}",
        header("x-forwarded-host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
    );
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
}

/// One request through the proxy: (status, body). Status 0 when the exchange failed.
async fn request(
    proxy: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let mut msg = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    msg.extend_from_slice(body);
    raw(proxy, &msg).await
}

/// Sends `msg` as it is and reads the response to its end.
async fn raw(proxy: SocketAddr, msg: &[u8]) -> (u16, String) {
    let exchange = async {
        let mut s = TcpStream::connect(proxy).await.ok()?;
        s.write_all(msg).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        Some(out)
    };
    let Ok(Some(raw)) = tokio::time::timeout(Duration::from_secs(10), exchange).await else {
        return (0, String::new());
    };
    let text = String::from_utf8_lossy(&raw).to_string();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, text);
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn get(proxy: SocketAddr, host: &str, path: &str) -> (u16, String) {
    request(proxy, "GET", host, path, b"").await
}

/// Polls until `GET host path` answers `code` with a body starting with `prefix`.
async fn until(proxy: SocketAddr, host: &str, path: &str, code: u16, prefix: &str) {
    let deadline = Instant::now() + WAIT;
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        last = get(proxy, host, path).await;
        if last.0 == code && last.1.starts_with(prefix) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("GET {host}{path}: wanted {code} {prefix:?} within {WAIT:?}, last got {last:?}");
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create")
}

fn service(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": NS},
           "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}})
}

/// A slice of `svc` with one endpoint at 127.0.0.1:`port` (its `http` port).
fn slice(svc: &str, port: u16, ready: bool) -> Value {
    json!({
        "metadata": {"name": format!("{svc}-1"), "namespace": NS,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
    })
}

fn backend_ref(svc: &str, port: Value) -> Value {
    json!({"service": {"name": svc, "port": port}})
}

fn path(p: &str, kind: &str, svc: &str) -> Value {
    json!({"path": p, "pathType": kind, "backend": backend_ref(svc, json!({"number": 80}))})
}

async fn setup(client: &Client, alpha: u16, beta: u16, dead: u16) {
    let nss: Api<Namespace> = Api::all(client.clone());
    create(&nss, json!({"metadata": {"name": NS}})).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    for (name, port, ready) in [
        ("alpha", alpha, true),
        ("beta", beta, true),
        ("empty", beta, false),
        ("dead", dead, true),
    ] {
        create(&svcs, service(name)).await;
        create(&slices, slice(name, port, ready)).await;
    }
    let classes: Api<IngressClass> = Api::all(client.clone());
    create(
        &classes,
        json!({"metadata": {"name": "skiff"}, "spec": {"controller": "skiff.io/ingress"}}),
    )
    .await;
    let ings: Api<Ingress> = Api::namespaced(client.clone(), NS);
    create(
        &ings,
        json!({
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"ingressClassName": "skiff", "rules": [
                {"host": "one.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend_ref("alpha", json!({"name": "http"}))},
                    path("/exact", "Exact", "beta"),
                    path("/empty", "Prefix", "empty"),
                    path("/dead", "Prefix", "dead"),
                ]}},
                {"host": "*.two.test", "http": {"paths": [path("/api", "Prefix", "beta")]}},
            ]},
        }),
    )
    .await;
    // Another class's Ingress is not routed.
    create(
        &ings,
        json!({
            "metadata": {"name": "other", "namespace": NS},
            "spec": {"ingressClassName": "nginx", "rules": [
                {"host": "other.test", "http": {"paths": [path("/", "Prefix", "alpha")]}},
            ]},
        }),
    )
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    create(
        &nodes,
        json!({"metadata": {"name": "ing-node"}, "spec": {}}),
    )
    .await;
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }});
    nodes
        .patch_status("ing-node", &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("node status");
}

#[actix::test]
async fn routes_by_host_and_path_and_writes_status() {
    let servers = Servers::start(1, EXTRA);
    let client = servers.client(0);
    let (alpha, beta) = (backend("alpha").await, backend("beta").await);
    let dead = skiff::store::free_loopback_ports(1).expect("free port")[0];
    setup(&client, alpha, beta, dead).await;

    let registry = prometheus::Registry::new();
    let cfg = IngressConfig {
        connect_timeout_ms: 1000,
        ..IngressConfig::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let (_ctl, proxy) = ingress::start_with(client.clone(), cfg, "ing-node", listen, &registry)
        .await
        .expect("start ingress controller");
    assert_ne!(proxy.port(), 0);

    // Host and path routing: Prefix (element-wise), Exact, wildcard hosts.
    until(proxy, "one.test", "/", 200, "alpha /").await;
    assert!(get(proxy, "one.test", "/a/b?q=1")
        .await
        .1
        .starts_with("alpha /a/b?q=1"));
    assert!(get(proxy, "ONE.test:80", "/exact")
        .await
        .1
        .starts_with("beta /exact"));
    assert!(get(proxy, "one.test", "/exact/")
        .await
        .1
        .starts_with("alpha /exact/"));
    assert!(get(proxy, "x.two.test", "/api/v1")
        .await
        .1
        .starts_with("beta /api/v1"));
    assert!(get(proxy, "x.two.test", "/api")
        .await
        .1
        .starts_with("beta /api"));
    assert_eq!(get(proxy, "x.two.test", "/apix").await.0, 404);
    assert_eq!(get(proxy, "two.test", "/api").await.0, 404);
    assert_eq!(get(proxy, "a.b.two.test", "/api").await.0, 404);
    assert_eq!(get(proxy, "other.test", "/").await.0, 404);
    let (code, body) = get(proxy, "unknown.test", "/").await;
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));

    // Forwarded headers, and a request body streamed through.
    let (code, body) = get(proxy, "one.test", "/h").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("xfh=one.test xff=127.0.0.1 xfp=http"),
        "{body}"
    );
    let big = vec![b'x'; 3 << 20];
    let (code, body) = request(proxy, "POST", "one.test", "/upload", &big).await;
    assert_eq!(code, 200);
    assert!(body.ends_with(&format!("len={}", big.len())), "{body}");

    // An absolute-form target's authority replaces Host.
    let abs =
        b"GET http://one.test/abs HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n";
    let (code, body) = raw(proxy, abs).await;
    assert_eq!(code, 200);
    assert!(body.starts_with("alpha /abs xfh=one.test"), "{body}");

    // No ready endpoints: 503; an endpoint that refuses: 502.
    assert_eq!(get(proxy, "one.test", "/empty").await.0, 503);
    assert_eq!(get(proxy, "one.test", "/dead").await.0, 502);

    // An endpoint change is picked up.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    let ready = json!({"endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]});
    slices
        .patch("empty-1", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .expect("patch slice");
    until(proxy, "one.test", "/empty", 200, "beta /empty").await;
    let moved = json!({"ports": [{"name": "http", "port": alpha, "protocol": "TCP"}]});
    slices
        .patch("empty-1", &PatchParams::default(), &Patch::Merge(moved))
        .await
        .expect("patch slice");
    until(proxy, "one.test", "/empty", 200, "alpha /empty").await;

    // A default backend takes what no rule matches.
    let ings: Api<Ingress> = Api::namespaced(client.clone(), NS);
    let default = json!({"spec": {"defaultBackend": backend_ref("beta", json!({"name": "http"}))}});
    ings.patch("web", &PatchParams::default(), &Patch::Merge(default))
        .await
        .expect("patch ingress");
    until(proxy, "unknown.test", "/", 200, "beta /").await;
    assert!(get(proxy, "x.two.test", "/apix")
        .await
        .1
        .starts_with("beta /apix"));

    // Bodies beyond max_body_bytes: 413, announced or found while streaming (chunked). This
    // second controller's node is no Node, so it never writes status.
    let small = IngressConfig {
        max_body_bytes: 1024,
        ..IngressConfig::default()
    };
    let (_small, limited) = ingress::start_with(
        client.clone(),
        small,
        "not-a-node",
        listen,
        &prometheus::Registry::new(),
    )
    .await
    .expect("start second controller");
    until(limited, "one.test", "/", 200, "alpha /").await;
    assert_eq!(
        request(limited, "POST", "one.test", "/", &[b'x'; 1000])
            .await
            .0,
        200
    );
    assert_eq!(
        request(limited, "POST", "one.test", "/", &[b'x'; 2048])
            .await
            .0,
        413
    );
    let mut chunked = b"POST / HTTP/1.1\r\nHost: one.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'y'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(limited, &chunked).await.0, 413);

    // Status: the Ready node's InternalIP, on our Ingress only.
    let deadline = Instant::now() + WAIT;
    loop {
        let web = ings.get("web").await.expect("get web");
        let lb = web
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress);
        let ips: Vec<String> = lb.into_iter().flatten().filter_map(|i| i.ip).collect();
        if ips == ["127.0.0.1"] {
            break;
        }
        assert!(Instant::now() < deadline, "status not written: {ips:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other = ings.get("other").await.expect("get other");
    assert!(other
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .is_none());

    // Metrics.
    let families = registry.gather();
    let find = |name: &str| families.iter().find(|f| f.get_name() == name);
    let requests = find("skiff_ingress_requests_total").expect("requests metric");
    let codes: Vec<&str> = requests
        .get_metric()
        .iter()
        .flat_map(|m| m.get_label().iter().map(|l| l.get_value()))
        .collect();
    for code in ["200", "404", "502", "503"] {
        assert!(codes.contains(&code), "{codes:?}");
    }
    let routes = find("skiff_ingress_routes").expect("routes metric");
    assert_eq!(routes.get_metric()[0].get_gauge().get_value(), 5.0);
    assert!(find("skiff_ingress_request_duration_seconds").is_some());
}
