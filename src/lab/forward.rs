//! `skiff lab forward`: the only lab process in the root namespace. It listens on 127.0.0.1
//! and connects each client into a node namespace (sockets are opened by one thread per
//! namespace that has joined it), so nothing of the lab is routed in the root namespace.
//! API clients go to a node whose store is ready, preferring the last one used, so kubectl
//! keeps working when a node dies. It only moves bytes: TLS is between the clients and the
//! servers (whose certificates name 127.0.0.1). With `--prometheus` it also renews
//! Prometheus' token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::plan::{Plan, API_PORT, NODE_METRICS_PORT, PROMETHEUS_PORT};
use super::{netns, state, LabError};

type DialRequest = (
    SocketAddr,
    oneshot::Sender<std::io::Result<std::net::TcpStream>>,
);

/// Opens TCP connections from inside one network namespace.
struct Dialer {
    tx: std::sync::mpsc::Sender<DialRequest>,
}

impl Dialer {
    fn new(ns: &str) -> std::io::Result<Dialer> {
        let file = std::fs::File::open(netns::path(ns))?;
        let (tx, rx) = std::sync::mpsc::channel::<DialRequest>();
        std::thread::Builder::new()
            .name(format!("dial-{ns}"))
            .spawn(move || {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid namespace fd; changes only this thread's namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    for (_, reply) in rx {
                        let _ = reply.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    }
                    return;
                }
                for (addr, reply) in rx {
                    let _ = reply.send(std::net::TcpStream::connect_timeout(
                        &addr,
                        Duration::from_secs(1),
                    ));
                }
            })?;
        Ok(Dialer { tx })
    }

    async fn dial(&self, port: u16) -> std::io::Result<TcpStream> {
        let (reply, rx) = oneshot::channel();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.tx
            .send((addr, reply))
            .map_err(|_| std::io::Error::other("dialer thread gone"))?;
        let s = rx
            .await
            .map_err(|_| std::io::Error::other("dialer thread gone"))??;
        s.set_nonblocking(true)?;
        TcpStream::from_std(s)
    }
}

struct Nodes {
    dialers: Vec<Dialer>,
    /// For the readiness probe: `/readyz` is public and the probe sends nothing secret, it
    /// only steers API connections, so the certificate is not checked (the clients whose
    /// connections are steered check it themselves, end to end).
    probe_tls: tokio_rustls::TlsConnector,
    ready: Vec<AtomicBool>,
    preferred: AtomicUsize,
}

impl Nodes {
    /// Node indices (0-based) to try for an API connection: the preferred one if ready, then
    /// the other ready ones, then the rest.
    fn order(&self) -> Vec<usize> {
        let n = self.dialers.len();
        let p = self.preferred.load(Ordering::Relaxed);
        let ready = |i: usize| self.ready[i].load(Ordering::Relaxed);
        let mut order: Vec<usize> = (0..n).map(|i| (p + i) % n).collect();
        order.sort_by_key(|&i| !ready(i));
        order
    }

    async fn probe(&self, i: usize) -> bool {
        let Ok(s) = self.dialers[i].dial(NODE_METRICS_PORT).await else {
            return false;
        };
        let exchange = async {
            let name = rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
            let mut s = self.probe_tls.connect(name, s).await?;
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            let mut buf = Vec::new();
            // A close without close_notify is an error to rustls; what arrived still counts.
            let _ = s.read_to_end(&mut buf).await;
            Ok::<bool, std::io::Error>(
                buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"),
            )
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), exchange).await,
            Ok(Ok(true))
        )
    }
}

pub fn run(dir: &Path) -> Result<(), LabError> {
    let st = state::load(dir)?.ok_or_else(|| LabError::State {
        path: state::path(dir).display().to_string(),
        reason: "missing".into(),
    })?;
    crate::cli::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(st.plan, dir.to_path_buf()))
}

async fn serve(plan: Plan, dir: std::path::PathBuf) -> Result<(), LabError> {
    let mut dialers = Vec::new();
    for k in plan.indices() {
        dialers.push(Dialer::new(&plan.node_ns(k))?);
    }
    let nodes = Arc::new(Nodes {
        probe_tls: tokio_rustls::TlsConnector::from(Arc::new(
            crate::pki::tls::unverified_client_config(),
        )),
        ready: dialers.iter().map(|_| AtomicBool::new(false)).collect(),
        dialers,
        preferred: AtomicUsize::new(0),
    });
    // Bind everything first: a port in use is an error before anything is served.
    let api = bind(plan.ports.api).await?;
    let mut metrics = Vec::new();
    for k in plan.indices() {
        metrics.push((k - 1, bind(plan.metrics_port(k)).await?));
    }
    let prometheus = if plan.prometheus {
        Some(bind(plan.ports.prometheus).await?)
    } else {
        None
    };
    for (i, l) in metrics {
        tokio::spawn(forward_to(l, nodes.clone(), i, NODE_METRICS_PORT));
    }
    if let Some(l) = prometheus {
        tokio::spawn(forward_to(l, nodes.clone(), 0, PROMETHEUS_PORT));
        tokio::spawn(super::prometheus::renew(dir, plan.clone()));
    }
    tokio::spawn(watch_health(nodes.clone()));
    info!(nodes = plan.nodes, "lab forwarder serving");
    loop {
        let (client, _) = api.accept().await?;
        let nodes = nodes.clone();
        tokio::spawn(async move {
            for i in nodes.order() {
                if let Ok(upstream) = nodes.dialers[i].dial(API_PORT).await {
                    nodes.preferred.store(i, Ordering::Relaxed);
                    pipe(client, upstream).await;
                    return;
                }
            }
            warn!("no API server accepts connections");
        });
    }
}

async fn bind(port: u16) -> Result<TcpListener, LabError> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| LabError::Invalid(format!("cannot listen on 127.0.0.1:{port}: {e}")))
}

async fn watch_health(nodes: Arc<Nodes>) {
    loop {
        for i in 0..nodes.dialers.len() {
            let ok = nodes.probe(i).await;
            nodes.ready[i].store(ok, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn forward_to(listener: TcpListener, nodes: Arc<Nodes>, i: usize, port: u16) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let nodes = nodes.clone();
        tokio::spawn(async move {
            if let Ok(upstream) = nodes.dialers[i].dial(port).await {
                pipe(client, upstream).await;
            }
        });
    }
}

async fn pipe(mut a: TcpStream, mut b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}
