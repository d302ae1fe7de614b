//! The API server under 2,000 concurrent writes with low in-flight limits: requests past the
//! limits get 429 TooManyRequests with Retry-After, health checks (on the health port) keep
//! answering, and every write that was accepted is stored while none that was refused is.

#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use servers::Servers;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_limits_requests_get_429_and_nothing_accepted_is_lost() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let servers = tokio::task::block_in_place(|| {
        Servers::start(
            1,
            "[api]\nmax_requests_inflight = 8\nmax_mutating_requests_inflight = 4\n",
        )
    });
    let base = servers.url(0);
    // A connection per request: 2,000 clients at once, as many as there are requests.
    let ca = std::fs::read_to_string(servers.data_dir(0).join("pki/ca.crt")).expect("ca");
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        "authorization",
        format!("Bearer {}", servers.admin_token())
            .parse()
            .expect("header"),
    );
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(skiff::pki::tls::client_config(&ca, None).expect("tls"))
        .default_headers(auth)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    // Health checks all along, on the health port (as a kubelet or load balancer probes):
    // each answered within 2 s.
    let done = Arc::new(AtomicBool::new(false));
    let health = {
        let base = format!("https://127.0.0.1:{}", servers.nodes[0].http);
        let (http, done) = (http.clone(), done.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut checks = 0;
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(2),
                    http.get(format!("{base}/readyz")).send(),
                )
                .await;
                let ok = matches!(&r, Ok(Ok(resp)) if resp.status() == 200);
                assert!(ok, "/readyz under load: {r:?}");
                slowest = slowest.max(t.elapsed());
                checks += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (checks, slowest)
        })
    };

    let url = format!("{base}/api/v1/namespaces/default/configmaps");
    let n: usize = std::env::var("LIMITS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let sends = (0..n).map(|i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}});
            let resp = match http.post(&url).json(&body).send().await {
                Ok(r) => r,
                Err(e) => return (i, 0, None, json!({"error": format!("{e:?}")})),
            };
            let code = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            let status: Value = resp.json().await.unwrap_or_default();
            (i, code, retry, status)
        }
    });
    let results = futures_util::future::join_all(sends).await;
    done.store(true, Ordering::Relaxed);
    let (checks, slowest) = health.await.expect("health loop");
    assert!(checks > 0);
    eprintln!("{checks} health checks, slowest {slowest:?}");

    let mut accepted = BTreeSet::new();
    let mut refused = 0;
    for (i, code, retry, status) in &results {
        match code {
            201 => {
                accepted.insert(format!("cm-{i}"));
            }
            429 => {
                refused += 1;
                assert_eq!(retry.as_deref(), Some("1"), "Retry-After");
                assert_eq!(status["reason"], "TooManyRequests", "{status}");
                assert_eq!(status["details"]["retryAfterSeconds"], 1, "{status}");
            }
            other => panic!("cm-{i}: unexpected {other}: {status}"),
        }
    }
    eprintln!("{} accepted, {refused} refused with 429", accepted.len());
    assert!(
        refused > 0,
        "2,000 concurrent writes over a limit of 4 were all accepted"
    );
    assert!(!accepted.is_empty());

    // Exactly the accepted writes are stored.
    let list: Value = http
        .get(&url)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let stored: BTreeSet<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["metadata"]["name"].as_str().map(String::from))
        // The CA's config map that every namespace has.
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    assert_eq!(stored, accepted);
}
