//! Scheduler benchmark: 5,000 nodes and 10,000 pods.
//! - algorithm only: decisions on an in-process cache (filter, score, assume), pods/s;
//! - end to end: pods created through the API of three `skiff server` processes, scheduled by
//!   the leader's scheduler (watch, decide, bind through `pods/binding`), pods/s from the
//!   first create to the last binding seen by a watcher.
//!
//! `cargo bench --bench scheduler -- [--nodes N] [--pods N] [--skip-e2e]`

#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff::scheduler::algorithm;
use skiff::scheduler::cache::{Cache, PodFacts};

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("node-{i:05}"), "labels": {"zone": format!("z{}", i % 3)}},
        "status": {
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .expect("node")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i:05}"), "namespace": "bench", "uid": format!("uid-{i}"),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("rs-{}", i % 100), "uid": format!("rs-{}", i % 100), "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
    .expect("pod")
}

fn algorithm_only(nodes: usize, pods: usize) -> f64 {
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.upsert_node(&node(i));
    }
    let pods: Vec<(Pod, PodFacts)> = (0..pods)
        .map(|i| {
            let p = pod(i);
            let f = PodFacts::of(&p);
            (p, f)
        })
        .collect();
    let start = Instant::now();
    let mut placed = 0;
    for (i, (p, f)) in pods.iter().enumerate() {
        if let Ok(n) = algorithm::schedule(&mut cache, p, f) {
            cache.assume(&format!("uid-{i}"), &n, f.clone());
            placed += 1;
        }
    }
    placed as f64 / start.elapsed().as_secs_f64()
}

async fn create_all<F, T>(total: usize, workers: usize, make: F) -> usize
where
    F: Fn(usize) -> T + Clone + Send + 'static,
    T: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (next, ok, make) = (next.clone(), ok.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if make(i).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    ok.load(Ordering::Relaxed)
}

async fn end_to_end(nodes: usize, pods: usize) -> Result<(f64, f64, usize), String> {
    let servers = tokio::task::spawn_blocking(|| {
        servers::Servers::start(3, "[store]\nwatch_history = 200000\n")
    })
    .await
    .map_err(|e| e.to_string())?;
    let clients: Vec<kube::Client> = (0..3).map(|i| servers.client(i)).collect();
    let c0 = clients[0].clone();
    let made = create_all(nodes, 32, move |i| {
        let api: Api<Node> = Api::all(c0.clone());
        async move { api.create(&PostParams::default(), &node(i)).await.is_ok() }
    })
    .await;
    if made != nodes {
        return Err(format!("only {made} of {nodes} nodes registered"));
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}}))
        .map_err(|e| e.to_string())?;
    Api::<Namespace>::all(clients[0].clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| e.to_string())?;
    let rv = Api::<Pod>::namespaced(clients[0].clone(), "bench")
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .resource_version
        .unwrap_or_default();

    // A watcher counts pods that got a node.
    let watcher_client = clients[2].clone();
    let start = Instant::now();
    let want = pods;
    let watcher = tokio::spawn(async move {
        let req = http::Request::get(format!(
            "/api/v1/namespaces/bench/pods?watch=true&resourceVersion={rv}&timeoutSeconds=600"
        ))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
        let mut lines = watcher_client
            .request_stream(req)
            .await
            .map_err(|e| e.to_string())?
            .lines();
        let mut bound = std::collections::HashSet::new();
        while let Some(line) = lines.next().await {
            let line = line.map_err(|e| e.to_string())?;
            if !line.contains("\"nodeName\"") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            if let Some(name) = v.pointer("/object/metadata/name").and_then(|n| n.as_str()) {
                bound.insert(name.to_string());
                if bound.len() == want {
                    return Ok::<Duration, String>(start.elapsed());
                }
            }
        }
        Err(format!("watch ended with {} bound", bound.len()))
    });
    let cs = clients.clone();
    let created = create_all(pods, 32, move |i| {
        let api: Api<Pod> = Api::namespaced(cs[i % 3].clone(), "bench");
        async move {
            let mut p = pod(i);
            p.metadata.uid = None;
            p.metadata.owner_references = None;
            api.create(&PostParams::default(), &p).await.is_ok()
        }
    })
    .await;
    let create_secs = start.elapsed().as_secs_f64();
    let all_bound = tokio::time::timeout(Duration::from_secs(600), watcher)
        .await
        .map_err(|_| "timed out waiting for bindings".to_string())?
        .map_err(|e| e.to_string())??;
    drop(servers);
    Ok((
        created as f64 / create_secs,
        pods as f64 / all_bound.as_secs_f64(),
        created,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut nodes = 5_000;
    let mut pods = 10_000;
    let mut e2e = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--nodes" => nodes = args.next().and_then(|v| v.parse().ok()).unwrap_or(nodes),
            "--pods" => pods = args.next().and_then(|v| v.parse().ok()).unwrap_or(pods),
            "--skip-e2e" => e2e = false,
            _ => {}
        }
    }
    println!("scheduler: {nodes} nodes (32 CPU, 128 GiB), {pods} pods (100m, 128Mi), 100 owners");
    println!("{:<56} {:>12}", "measure", "pods/s");
    println!(
        "{:<56} {:>12.0}",
        "algorithm only (filter, score, assume; in process)",
        algorithm_only(nodes, pods)
    );
    if e2e {
        match end_to_end(nodes, pods).await {
            Ok((create_rate, bound_rate, created)) => {
                println!(
                    "{:<56} {:>12.0}",
                    format!("creates through the API ({created} pods, 32 clients)"),
                    create_rate
                );
                println!(
                    "{:<56} {:>12.0}",
                    "end to end: first create to last binding watched", bound_rate
                );
            }
            Err(e) => {
                eprintln!("scheduler bench: end to end: {e}");
                std::process::exit(1);
            }
        }
    }
}
