//! Service proxy benchmark (root): 1,000 services x 10 endpoints through one `skiff server`
//! (controllers off, services without selectors so the EndpointSlices written here stay), a
//! `ServiceProxy` in this process programming nftables inside a network namespace made for the
//! run. Measures the time from an EndpointSlice change acknowledged by the API to the table
//! holding it (p50/p99 over `--changes`), and a full sync (render + `nft -f` of everything).
//!
//! `cargo bench --bench proxy -- [--services 1000] [--endpoints 10] [--changes 100]`

#[path = "../tests/common/flags.rs"]
mod flags;
#[path = "../tests/common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use flags::flag;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use node_host::{new_netns, root_or_skip};
use serde_json::json;
use skiff::proxy::{model, render, Applied, ProxyConfig, ProxyMetrics, ServiceProxy};
use tokio::sync::watch;

fn ip(i: usize, base: &str) -> String {
    format!("{base}.{}.{}", i / 250, i % 250 + 1)
}

fn slice(i: usize, endpoints: usize, first: &str) -> EndpointSlice {
    let eps: Vec<serde_json::Value> = (0..endpoints)
        .map(|e| {
            let addr = if e == 0 {
                first.to_string()
            } else {
                ip(i * endpoints + e, "10.244")
            };
            json!({"addresses": [addr], "conditions": {"ready": true}, "nodeName": "n1"})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}-abc"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
    .expect("slice")
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the proxy on a thread of its own; returns its applied-table feed.
fn start_proxy(client: kube::Client) -> watch::Receiver<Applied> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let sys = actix::System::new();
        sys.block_on(async move {
            let metrics = ProxyMetrics::register(&prometheus::Registry::new()).expect("metrics");
            let node = model::NodeView {
                name: "n1".into(),
                ip: "10.90.0.11".parse().expect("ip"),
                dns: None,
                external_ips: false,
                lb_pool: Vec::new(),
                reserved_ports: Vec::new(),
            };
            let cfg = ProxyConfig {
                min_sync_ms: 0,
                ..ProxyConfig::default()
            };
            let proxy = ServiceProxy::new(
                client,
                cfg,
                node,
                Some("10.244.0.0/16".parse().expect("cidr")),
                vec![],
                metrics,
            );
            let _ = tx.send(proxy.applied());
            let _addr = proxy.start();
            futures_util::future::pending::<()>().await;
        });
    });
    rx.recv().expect("proxy started")
}

async fn wait_for(rx: &mut watch::Receiver<Applied>, needle: &str) -> Instant {
    loop {
        {
            let a = rx.borrow_and_update();
            if a.text.contains(needle) {
                return a.at.expect("applied");
            }
        }
        rx.changed().await.expect("proxy running");
    }
}

/// Everything (the server, the proxy, this process's sockets and `nft`) lives in a network
/// namespace made for the run: the main thread joins it before any other thread exists, and
/// threads and children inherit it.
fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The proxy's warnings (a failed sync) on stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("skiff=warn"))
        .with_writer(std::io::stderr)
        .try_init();
    if !root_or_skip("proxy benchmark") {
        return;
    }
    let ns = new_netns("skp");
    let guard = NsGuard(ns.clone());
    let file = File::open(format!("/run/netns/{ns}")).expect("netns");
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd; only the calling (main) thread moves.
    assert_eq!(
        unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(run());
    drop(guard);
}

async fn run() {
    let (services, endpoints, changes) = (
        flag("--services", 1000usize),
        flag("--endpoints", 10usize),
        flag("--changes", 100usize),
    );
    let srv = servers::Servers::start(1, "[controllers]\nenabled = false\n");
    let client = srv.client(0);
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    for i in 0..services {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("svc-{i}")},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .expect("service");
        svcs.create(&PostParams::default(), &s)
            .await
            .expect("create service");
        slices
            .create(
                &PostParams::default(),
                &slice(i, endpoints, &ip(i * endpoints, "10.244")),
            )
            .await
            .expect("create slice");
    }
    println!(
        "created {services} services x {endpoints} endpoints in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut rx = start_proxy(client.clone());
    let last = ip((services - 1) * endpoints + endpoints - 1, "10.244");
    let at = wait_for(&mut rx, &format!("{last} . 8080")).await;
    let size = rx.borrow().text.len();
    println!(
        "first sync after start: {:.1} ms ({} KiB of rules)",
        (at - started).as_secs_f64() * 1e3,
        size / 1024
    );

    let mut lat = Vec::new();
    for c in 0..changes {
        let i = (c * 7919) % services;
        let fresh = ip(c, "10.245");
        let patch = json!({"endpoints": slice(i, endpoints, &fresh).endpoints});
        let t0 = Instant::now();
        slices
            .patch(
                &format!("svc-{i}-abc"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .expect("patch slice");
        let at = tokio::time::timeout(
            Duration::from_secs(30),
            wait_for(&mut rx, &format!("{fresh} . 8080")),
        )
        .await
        .expect("change applied within 30 s");
        lat.push((at - t0).as_secs_f64() * 1e3);
    }

    // Full sync: render the table from the same objects and replace it in the namespace.
    let (all_svcs, all_slices) = (
        svcs.list(&Default::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>(),
        slices
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>(),
    );
    let full: Vec<f64> = std::thread::spawn(move || {
        let node = model::NodeView {
            name: "n1".into(),
            ip: "10.90.0.11".parse().expect("ip"),
            dns: None,
            external_ips: false,
            lb_pool: Vec::new(),
            reserved_ports: Vec::new(),
        };
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let rules = model::build(&all_svcs, &all_slices, &node);
                let (text, _) =
                    render::ruleset(&rules, Some("10.244.0.0/16".parse().expect("cidr")));
                overlay::masq::apply(&text).expect("nft");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    })
    .join()
    .expect("full sync thread");
    println!("{:<44} {:>10} {:>10}", "", "p50 ms", "p99 ms");
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        format!("endpoint change -> rules applied ({changes})"),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!(
        "{:<44} {:>10.1} {:>10.1}",
        "full sync (build + render + nft -f), 5 runs",
        percentile(&full, 0.5),
        percentile(&full, 0.99)
    );
    drop(srv);
}

/// Deletes the namespace (and the table in it) when the benchmark ends, also on a panic.
struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}
