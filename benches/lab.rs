//! `skiff lab` benchmark (root): per round, `skiff lab up` (3 nodes) until every node is Ready,
//! the idle resident memory of each `skiff server` after a settling period, and the leader
//! failover time (SIGKILL of the leader's server until another node reports itself leader in
//! its metrics), then `skiff lab down`. Prints a table of medians.
//!
//! Metrics are read over TLS with node 1's server certificate (O=skiff:servers), which the
//! metrics port takes without a token.
//!
//! `cargo bench --bench lab -- [--rounds N] [--settle S]`

#[path = "../tests/common/flags.rs"]
mod flags;
#[path = "../tests/common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flags::flag;
use node_host::root_or_skip;
use servers::BIN;

/// TLS to the lab's metrics ports: the cluster CA and node 1's server certificate (its
/// data dir is `<lab>/n1/data`).
fn metrics_tls(lab: &Path) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = lab.join("n1").join("data").join("pki");
    let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect(f);
    let (cert, key) = (read("server.crt"), read("server.key"));
    Arc::new(skiff::pki::tls::client_config(&read("ca.crt"), Some((&cert, &key))).expect("TLS"))
}

fn metrics(tls: &Arc<rustls::ClientConfig>, k: usize) -> String {
    let Ok(sock) = std::net::TcpStream::connect(("127.0.0.1", 9100 + k as u16)) else {
        return String::new();
    };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
    let name = rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
    let Ok(conn) = rustls::ClientConnection::new(tls.clone(), name) else {
        return String::new();
    };
    let mut s = rustls::StreamOwned::new(conn, sock);
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut buf = Vec::new();
    // A close without close_notify is an error to rustls; what arrived still counts.
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn leader(tls: &Arc<rustls::ClientConfig>, nodes: &[usize]) -> Option<usize> {
    nodes.iter().copied().find(|&k| {
        metrics(tls, k)
            .lines()
            .any(|l| l == "skiff_raft_is_leader 1")
    })
}

fn rss_mib(pid: i64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !root_or_skip("lab benchmark") {
        return;
    }
    let (rounds, settle) = (flag("--rounds", 3u64).max(1), flag("--settle", 20u64));
    let (mut up, mut rss, mut failover) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("lab");
        let run = |args: &[&str]| {
            Command::new(BIN)
                .args(args)
                .env("SKIFF_LAB_DIR", &dir)
                .output()
                .expect("skiff")
        };
        let kc = tmp.path().join("kubeconfig").display().to_string();
        let start = Instant::now();
        let out = run(&["lab", "up", "--kubeconfig", &kc]);
        let took = start.elapsed().as_secs_f64();
        if !out.status.success() {
            let _ = run(&["lab", "down"]);
            panic!("lab up: {}", String::from_utf8_lossy(&out.stderr));
        }
        up.push(took);
        std::thread::sleep(Duration::from_secs(settle));
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).expect("state"))
                .expect("state json");
        let pid = |k: usize| -> i64 {
            state["processes"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p[0] == format!("n{k}")))
                .and_then(|p| p[1].as_i64())
                .expect("server pid")
        };
        let per_node: Vec<f64> = (1..=3).map(|k| rss_mib(pid(k))).collect();
        rss.push(per_node.iter().copied().fold(0.0, f64::max));
        let all = [1, 2, 3];
        let tls = metrics_tls(&dir);
        let Some(l) = leader(&tls, &all) else {
            let _ = run(&["lab", "down"]);
            panic!("no leader");
        };
        let _ = Command::new("kill")
            .args(["-9", &pid(l).to_string()])
            .status();
        let killed = Instant::now();
        let rest: Vec<usize> = all.iter().copied().filter(|&k| k != l).collect();
        while leader(&tls, &rest).is_none() && killed.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        failover.push(killed.elapsed().as_secs_f64());
        let _ = run(&["lab", "down"]);
        println!(
            "round {round}: up {took:.2} s, idle RSS per node {:?} MiB, failover {:.2} s",
            per_node
                .iter()
                .map(|m| format!("{m:.1}"))
                .collect::<Vec<_>>(),
            failover.last().copied().unwrap_or_default()
        );
    }
    println!("medians of {rounds} rounds (3 nodes, {settle} s idle before measuring RSS):");
    println!("{:<40} {:>10}", "metric", "value");
    println!("{:<40} {:>8.2} s", "lab up -> 3 nodes Ready", median(up));
    println!(
        "{:<40} {:>6.1} MiB",
        "idle RSS per node (largest node)",
        median(rss)
    );
    println!(
        "{:<40} {:>8.2} s",
        "leader failover (kill -9 -> new leader)",
        median(failover)
    );
}
