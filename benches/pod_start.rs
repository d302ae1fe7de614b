//! Pod start benchmark (root): one `skiff server` with its node agent inside a test network
//! namespace, the busybox image already cached; 50 pods created back to back through the API,
//! each timed from its create request to a watcher seeing `phase: Running`.
//!
//! Two rounds on the same node: pods created at `--rate` per second (default 10, a steady load
//! as in Kubernetes' density tests), then all at once (a burst that saturates the machine).
//!
//! `cargo bench --bench pod_start -- [--pods N] [--rate PODS_PER_S]`

#[path = "../tests/common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use node_host::{root_or_skip, NodeHost, IMAGE};
use serde_json::json;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "bench": "start" } },
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{ "name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"] }],
        },
    }))
    .expect("pod")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn wait_running(
    running: &Mutex<BTreeMap<String, Instant>>,
    names: &[String],
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if names
            .iter()
            .all(|n| running.lock().is_ok_and(|r| r.contains_key(n)))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

type Seen = Arc<Mutex<BTreeMap<String, Instant>>>;

/// Creates `n` pods named `{prefix}-NNN` (paced at `rate`/s, or all at once) and prints a row.
async fn round(api: &Api<Pod>, running: &Seen, prefix: &str, n: usize, rate: Option<f64>) {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}")).collect();
    let mut created = BTreeMap::new();
    let t0 = Instant::now();
    for (i, name) in names.iter().enumerate() {
        if let Some(r) = rate {
            let due = t0 + Duration::from_secs_f64(i as f64 / r);
            tokio::time::sleep(due.saturating_duration_since(Instant::now())).await;
        }
        created.insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &pod(name))
            .await
            .expect("create");
    }
    let all = wait_running(running, &names, Duration::from_secs(120)).await;
    let r = running.lock().expect("lock").clone();
    let mut lat: Vec<Duration> = names
        .iter()
        .filter_map(|n| Some(r.get(n)?.duration_since(*created.get(n)?)))
        .collect();
    lat.sort();
    assert!(
        all && !lat.is_empty(),
        "only {} of {n} pods reached Running",
        lat.len()
    );
    let last = names
        .iter()
        .filter_map(|n| r.get(n))
        .max()
        .copied()
        .unwrap_or(t0);
    let pace = rate.map_or("all at once".to_string(), |r| format!("{r}/s"));
    println!(
        "| {n} | {pace} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1} |",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
        n as f64 / last.duration_since(t0).as_secs_f64(),
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !root_or_skip("pod_start benchmark") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let n: usize = arg("--pods").and_then(|v| v.parse().ok()).unwrap_or(50);
    let rate: f64 = arg("--rate").and_then(|v| v.parse().ok()).unwrap_or(10.0);
    // Both rounds plus the warm-up pod must fit the node's pod capacity.
    let host = NodeHost::start(&format!("max_pods = {}", 2 * n + 10));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let api: Api<Pod> = Api::namespaced(host.client(), "default");
        let running: Seen = Arc::default();
        let seen = running.clone();
        let watch_api = api.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().labels("bench=start");
            let mut events = watcher(watch_api, cfg).applied_objects().boxed();
            while let Some(Ok(p)) = events.next().await {
                let up = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if let (true, Some(name), Ok(mut r)) = (up, p.metadata.name, seen.lock()) {
                    r.entry(name).or_insert_with(Instant::now);
                }
            }
        });
        // Warm-up: the image lands in the node's store, the watch is established.
        api.create(&PostParams::default(), &pod("warmup"))
            .await
            .expect("warmup");
        assert!(
            wait_running(&running, &["warmup".into()], Duration::from_secs(60)).await,
            "warm-up pod never ran"
        );
        println!("pod start on one node, image cached (create -> Running seen by a watch)");
        println!("| pods | created | p50 | p99 | max | pods/s |");
        println!("|---|---|---|---|---|---|");
        round(&api, &running, "paced", n, Some(rate)).await;
        round(&api, &running, "burst", n, None).await;
    });
}
