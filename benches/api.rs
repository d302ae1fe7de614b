//! API benchmark against three `skiff server` processes on loopback: 10,000 pod creates from
//! 32 concurrent kube-rs clients, LIST of the 10,000 pods, and 100 concurrent watchers that
//! each receive all 10,000 events. Prints a table. Controllers are off: this measures the API.
//!
//! `cargo bench --bench api -- [--pods N] [--clients N] [--watchers N]`

#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::AsyncBufReadExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

struct Args {
    pods: usize,
    clients: usize,
    watchers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pods: 10_000,
        clients: 32,
        watchers: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .ok_or(format!("{name} needs a value"))?
                .parse()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--pods" => a.pods = num("--pods")?,
            "--clients" => a.clients = num("--clients")?,
            "--watchers" => a.watchers = num("--watchers")?,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
    }))
    .expect("pod")
}

/// Counts ADDED events on a raw watch stream until `want` arrived; returns when.
async fn watch_until(
    client: kube::Client,
    rv: String,
    want: usize,
    start: Instant,
) -> Result<Duration, String> {
    let req = http::Request::get(format!(
        "/api/v1/namespaces/bench/pods?watch=true&resourceVersion={rv}&timeoutSeconds=600"
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    let mut lines = client
        .request_stream(req)
        .await
        .map_err(|e| e.to_string())?
        .lines();
    let mut seen = 0;
    while let Some(line) = futures_util::StreamExt::next(&mut lines).await {
        let line = line.map_err(|e| e.to_string())?;
        if line.starts_with("{\"type\":\"ADDED\"") {
            seen += 1;
            if seen == want {
                return Ok(start.elapsed());
            }
        }
    }
    Err(format!("watch ended after {seen} events"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("api bench: {e}");
            std::process::exit(2);
        }
    };
    let servers = tokio::task::spawn_blocking(|| {
        servers::Servers::start(
            3,
            "[store]\nwatch_history = 50000\n[controllers]\nenabled = false\n",
        )
    })
    .await
    .expect("start servers");
    let clients: Vec<kube::Client> = (0..3).map(|i| servers.client(i)).collect();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}})).expect("ns");
    Api::<Namespace>::all(clients[0].clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let pods0: Api<Pod> = Api::namespaced(clients[0].clone(), "bench");
    let rv = pods0
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();

    let start = Instant::now();
    let mut watchers = Vec::new();
    for w in 0..args.watchers {
        let (client, rv) = (clients[w % 3].clone(), rv.clone());
        let want = args.pods;
        watchers.push(tokio::spawn(async move {
            watch_until(client, rv, want, start).await
        }));
    }

    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = Vec::new();
    let create_start = Instant::now();
    for c in 0..args.clients {
        let api: Api<Pod> = Api::namespaced(clients[c % 3].clone(), "bench");
        let (next, total) = (next.clone(), args.pods);
        creators.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let t0 = Instant::now();
                match api
                    .create(&PostParams::default(), &pod(&format!("p-{n}")))
                    .await
                {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for c in creators {
        if let Ok((l, e)) = c.await {
            lat.extend(l);
            errors += e;
        }
    }
    let create_secs = create_start.elapsed().as_secs_f64();
    lat.sort();

    let mut watch_done = Vec::new();
    let mut watch_failed = 0;
    for w in watchers {
        match tokio::time::timeout(Duration::from_secs(600), w).await {
            Ok(Ok(Ok(d))) => watch_done.push(d),
            _ => watch_failed += 1,
        }
    }
    watch_done.sort();

    let mut list_lat = Vec::new();
    let mut listed = 0;
    for i in 0..20 {
        let api: Api<Pod> = Api::namespaced(clients[i % 3].clone(), "bench");
        let t0 = Instant::now();
        if let Ok(l) = api.list(&ListParams::default()).await {
            list_lat.push(t0.elapsed());
            listed = l.items.len();
        }
    }
    list_lat.sort();

    println!("3 skiff server processes on loopback (release), fsync on");
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "measure", "value", "p50 ms", "p99 ms"
    );
    println!(
        "{:<44} {:>10.0} {:>10.2} {:>10.2}",
        format!(
            "create {} pods, {} clients (creates/s)",
            args.pods, args.clients
        ),
        lat.len() as f64 / create_secs,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    println!("{:<44} {:>10}", "create errors", errors);
    println!(
        "{:<44} {:>10} {:>10.2} {:>10.2}",
        format!("LIST of {listed} pods (20 lists)"),
        list_lat.len(),
        pct(&list_lat, 0.5),
        pct(&list_lat, 0.99)
    );
    println!(
        "{:<44} {:>10.2} {:>10.2} {:>10.2}",
        format!("{} watchers: s to last event (all/p50/p99)", args.watchers),
        watch_done.last().map_or(0.0, |d| d.as_secs_f64()),
        pct(&watch_done, 0.5) / 1000.0,
        pct(&watch_done, 0.99) / 1000.0
    );
    println!("{:<44} {:>10}", "watchers that missed events", watch_failed);
    drop(servers);
}
