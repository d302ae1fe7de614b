//! Overlay throughput benchmark (root): for each backend, a three-host lab
//! (tests/common/overlay_lab.rs: namespaces on an underlay bridge, one `skiff server` per
//! host) with a pod on host 1 and one on host 2; iperf3 (Debian's) measures TCP pod -> pod
//! across the hosts and, in the same lab, host 1 -> host 2 over the underlay. iperf3 runs
//! inside the pods' network namespaces, so the path is exactly the pods'.
//!
//! Pod and underlay runs alternate `--rounds` times and the medians are compared, so a slow
//! moment of the VM does not land on one side only.
//!
//! The underlay allows BIG TCP (`gso_ipv4_max_size` 196608, as the tests' lab); host-gw pods
//! follow it. `--underlay-gso 65536` measures a stock underlay.
//!
//! `cargo bench --bench overlay -- [--seconds S] [--rounds N] [--streams P] [--underlay-gso B]
//! [--backends host-gw,vxlan]`; the last line is `ratios to underlay: vxlan X.XX host-gw Y.YY
//! vxlan-user Z.ZZ` (the chosen backends only, with `--backends`).

#[path = "../tests/common/flags.rs"]
mod flags;
#[path = "../tests/common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "../tests/common/overlay_lab.rs"]
#[allow(dead_code)]
mod overlay_lab;
#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flags::flag;
use node_host::root_or_skip;
use overlay_lab::{underlay_ip, Lab, UNDERLAY_GSO};

const BACKENDS: [&str; 3] = ["vxlan", "host-gw", "vxlan-user"];

/// TCP throughput in Gbit/s from `client` to `server_ip` (served in `server`) over
/// `streams` parallel connections.
fn iperf(client: &Path, server: &Path, server_ip: &str, seconds: u64, streams: u64) -> f64 {
    let mut srv = Command::new("nsenter")
        .arg(format!("--net={}", server.display()))
        .args(["iperf3", "-s", "-1", "-B", server_ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s (apt-get install iperf3)");
    let deadline = Instant::now() + Duration::from_secs(60 + seconds);
    let result = loop {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", client.display()))
            .args(["iperf3", "-c", server_ip, "-J", "-O", "1", "-t"])
            .arg(seconds.to_string())
            .arg("-P")
            .arg(streams.to_string())
            .output()
            .expect("iperf3 -c");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = json["end"]["sum_received"]["bits_per_second"].as_f64() {
            break bps / 1e9;
        }
        // The server may not listen yet.
        assert!(Instant::now() < deadline, "iperf3 failed: {json}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = srv.kill();
    let _ = srv.wait();
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if !root_or_skip("overlay benchmark") {
        return;
    }
    let (seconds, rounds) = (flag("--seconds", 5u64), flag("--rounds", 3u64).max(1));
    let streams = flag("--streams", 1u64).max(1);
    let gso = flag("--underlay-gso", UNDERLAY_GSO);
    println!("TCP, {streams} stream(s), {seconds} s per run (iperf3), median of {rounds} alternating runs, Gbit/s; underlay gso_ipv4_max_size {gso}");
    println!(
        "{:<12} {:>14} {:>14} {:>8}",
        "backend", "pod -> pod", "underlay", "ratio"
    );
    let mut ratios = Vec::new();
    let backends = flag("--backends", BACKENDS.join(","));
    let backends: Vec<&str> = backends.split(',').collect();
    if let Some(b) = backends.iter().find(|b| !BACKENDS.contains(b)) {
        eprintln!("overlay bench: unknown backend {b:?} (one of {BACKENDS:?})");
        std::process::exit(2);
    }
    for backend in backends {
        let lab = Lab::start_with([backend; 3], gso);
        let client = lab.run_pod("c1", 1).await;
        let server = lab.run_pod("s2", 2).await;
        // The overlay is up once a request crosses it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while node_host::http_get_in(&client.netns, format!("{}:8080", server.ip), "/").is_none() {
            assert!(
                Instant::now() < deadline,
                "{backend}: pods do not reach each other"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (mut pods, mut underlay) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            pods.push(iperf(
                &client.netns,
                &server.netns,
                &server.ip,
                seconds,
                streams,
            ));
            let (h1, h2) = (&lab.host(1).netns, &lab.host(2).netns);
            underlay.push(iperf(h1, h2, &underlay_ip(2), seconds, streams));
        }
        let (pods, underlay) = (median(pods), median(underlay));
        let ratio = pods / underlay;
        println!("{backend:<12} {pods:>14.2} {underlay:>14.2} {ratio:>8.2}");
        ratios.push(format!("{backend} {ratio:.2}"));
    }
    println!("ratios to underlay: {}", ratios.join(" "));
}
