//! `skiff lab` end to end, as root: `up` builds a three-node replicated cluster in network
//! namespaces that real kubectl (1.27 and 1.33) reaches on 127.0.0.1 over TLS with the
//! admin token of the kubeconfig it writes (anonymous requests get 401); the echo chart's
//! pods on every node reach each other across hosts; `up` and `down` are idempotent and `down`
//! leaves no namespace, link, mount, process, file or kubeconfig entry behind. Prometheus
//! scrapes the nodes over TLS with a ServiceAccount token of its own.

#[path = "common/lab.rs"]
#[allow(dead_code)]
mod lab;
#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::*;
use serde_json::Value;
use servers::BIN;

#[test]
fn lab_up_serves_kubectl_and_cross_host_pods_and_down_leaves_nothing() {
    let Some((lab, said)) = lab_for("lab", &[]) else {
        return;
    };
    assert!(said.contains("3 nodes Ready"), "{said}");
    let state = std::fs::read_to_string(lab.lab_dir().join("lab.json")).expect("state");

    // `up` on a running lab says so and changes nothing.
    let again = lab.up(&[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already running"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(lab.lab_dir().join("lab.json")).expect("state"),
        state
    );

    // Real kubectl, old and new, through the forwarder: three Ready nodes with pod CIDRs.
    for kubectl in [KUBECTL_OLD, KUBECTL_NEW] {
        let out = lab.kubectl(kubectl, &["get", "nodes", "-o", "wide", "--no-headers"]);
        assert!(out.status.success(), "{kubectl}: {}", text(&out));
        let rows = String::from_utf8_lossy(&out.stdout).into_owned();
        let ready: Vec<&str> = rows
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .collect();
        assert_eq!(ready.len(), 3, "{kubectl}:\n{rows}");
        for k in 1..=3 {
            let row = ready
                .iter()
                .find(|l| l.starts_with(&format!("n{k} ")))
                .expect("row");
            assert!(row.contains(&format!("10.90.0.{}", 10 + k)), "{row}");
            assert!(
                row.split_whitespace()
                    .any(|c| c.starts_with("10.244.") && c.ends_with(".0/24")),
                "no pod CIDR: {row}"
            );
        }
    }
    // The merged kubeconfig kept the other context and did not take over.
    let kc = std::fs::read_to_string(&lab.kubeconfig).expect("kubeconfig");
    assert!(
        kc.contains("keep-me") && kc.contains("current-context: prod"),
        "{kc}"
    );

    // Secure by default: anonymous API and metrics requests get 401; both kubeconfigs verify
    // the server with the cluster CA and present the admin token, and are private files, as
    // is the lab's cluster token.
    let admin = lab.admin_token();
    let anonymous = lab.https_get(API_PORT, "/api/v1/pods", None);
    assert_eq!(anonymous.as_ref().map(|a| a.0), Some(401), "{anonymous:?}");
    let as_admin = lab.https_get(API_PORT, "/api/v1/pods", Some(&admin));
    assert_eq!(as_admin.as_ref().map(|a| a.0), Some(200), "{as_admin:?}");
    let metrics = lab.https_get(metrics_port(1), "/metrics", None);
    assert_eq!(metrics.as_ref().map(|a| a.0), Some(401), "{metrics:?}");
    let ca = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(lab.ca_pem())
    };
    for file in [lab.kubeconfig.clone(), lab.lab_dir().join("kubeconfig")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        let doc: Value =
            yaml_serde::from_str(&std::fs::read_to_string(&file).expect("read")).expect("yaml");
        let entry = |list: &str| {
            doc[list]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["name"] == CONTEXT))
                .cloned()
                .unwrap_or_else(|| panic!("no {CONTEXT} in {list} of {}", file.display()))
        };
        let cluster = entry("clusters");
        assert_eq!(
            cluster["cluster"]["server"],
            format!("https://127.0.0.1:{API_PORT}")
        );
        assert_eq!(
            cluster["cluster"]["certificate-authority-data"],
            ca.as_str()
        );
        assert!(cluster["cluster"]["insecure-skip-tls-verify"].is_null());
        assert_eq!(entry("users")["user"]["token"], admin.as_str());
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&file)
            .args(["--context", CONTEXT, "get", "pods", "-A"])
            .output()
            .expect("kubectl");
        assert!(out.status.success(), "{}: {}", file.display(), text(&out));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let token = lab.lab_dir().join("token");
        let mode = std::fs::metadata(&token)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", token.display());
        let secret = std::fs::read_to_string(&token).expect("token");
        let full = std::fs::read_to_string(lab.lab_dir().join("n1/data/token")).expect("token");
        assert!(
            full.starts_with("SKIFF10") && full.trim().ends_with(secret.trim()),
            "{full}"
        );
        for k in 1..=3 {
            let cfg = std::fs::read_to_string(lab.lab_dir().join(format!("n{k}/config.toml")))
                .expect("config");
            assert!(
                !cfg.contains(secret.trim()),
                "n{k}'s config holds the secret"
            );
        }
    }

    // `lab env` exports work for scripts.
    let env = lab.skiff(&["lab", "env"]);
    assert!(env.status.success(), "{}", text(&env));
    let script = format!(
        "eval \"$({BIN} lab env)\" && kubectl get nodes --no-headers | wc -l && echo $SKIFF_LAB_IMAGE $SKIFF_LAB_REGISTRY $SKIFF_LAB_NODES"
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("SKIFF_LAB_DIR", lab.lab_dir())
        .output()
        .expect("bash");
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        got,
        format!("3\n{IMAGE} 10.90.0.1:5000 skt-n1 skt-n2 skt-n3\n"),
        "{}",
        text(&out)
    );

    // `lab status`: every node running, exactly one leader.
    let status = lab.skiff(&["lab", "status"]);
    let st = text(&status);
    assert!(status.status.success(), "{st}");
    assert_eq!(st.matches(" leader ").count(), 1, "{st}");
    assert_eq!(st.matches(" running ").count(), 3, "{st}");
    assert_eq!(st.matches(" ready ").count(), 3, "{st}");
    assert!(
        st.contains(&format!("https://127.0.0.1:{}/metrics", metrics_port(1))),
        "{st}"
    );

    // The echo chart with 6 replicas lands on all three nodes; pods reach each other across hosts.
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/echo");
    let out = Command::new(BIN)
        .args(["chart", "install", "echo"])
        .arg(&chart)
        .args(["--set", "replicas=6", "--set", &format!("image={IMAGE}")])
        .env("KUBECONFIG", lab.lab_dir().join("kubeconfig"))
        .output()
        .expect("skiff chart install");
    assert!(out.status.success(), "chart install: {}", text(&out));
    let pods = running_pods(&lab, "app=echo", 6);
    let nodes: std::collections::BTreeSet<&String> = pods.iter().map(|p| &p.1).collect();
    assert_eq!(nodes.len(), 3, "echo pods not on every node: {pods:?}");
    assert_cross_host(&lab, &pods);

    // `down` removes everything; twice is fine.
    let lab_dir = lab.lab_dir();
    let pod_uids = std::fs::read_dir(lab_dir.join("n1/data/node/pods"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(pod_uids > 0, "pods of n1 not found under the lab dir");
    let out = lab.skiff(&["lab", "down"]);
    assert!(out.status.success(), "lab down: {}", text(&out));
    assert!(lab_namespaces().is_empty(), "{:?}", lab_namespaces());
    assert!(!lab_dir.exists(), "lab dir left");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&lab_dir.display().to_string()),
        "mounts left"
    );
    // Nothing of the lab in the root namespace: no bridge, no node veth, no overlay device
    // on a lab address (a `skiff.1` of a server running on this host itself is not the lab's).
    let links = Command::new("ip")
        .args(["-d", "-o", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let left: Vec<&str> = links
        .lines()
        .filter(|l| {
            let name = l.split(':').nth(1).unwrap_or_default().trim();
            let name = name.split('@').next().unwrap_or_default();
            name == "br0"
                || (name.starts_with('n') && name[1..].parse::<u8>().is_ok())
                || l.contains(" 10.90.0.")
        })
        .collect();
    assert!(left.is_empty(), "links left:\n{}", left.join("\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab_processes(&lab_dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            lab_processes(&lab_dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let kc = std::fs::read_to_string(&lab.kubeconfig).expect("kubeconfig");
    let doc: Value = yaml_serde::from_str(&kc).expect("yaml");
    let want: Value = yaml_serde::from_str(OTHER_CONFIG).expect("yaml");
    assert_eq!(doc, want, "kubeconfig not restored:\n{kc}");
    let again = lab.skiff(&["lab", "down"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("nothing to remove"),
        "{}",
        text(&again)
    );
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus' instant query result vector.
fn prom_query(q: &str) -> Vec<Value> {
    local_get(
        PROMETHEUS_PORT,
        &format!("/api/v1/query?query={}", encode(q)),
    )
    .and_then(|b| serde_json::from_str::<Value>(&b).ok())
    .and_then(|v| v["data"]["result"].as_array().cloned())
    .unwrap_or_default()
}

/// Prometheus' active targets.
fn active_targets() -> Vec<Value> {
    let Some(body) = local_get(PROMETHEUS_PORT, "/api/v1/targets?state=active") else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Active targets that are up: (job, pod or node label).
fn up_targets() -> Vec<(String, String)> {
    active_targets()
        .iter()
        .filter(|t| t["health"] == "up")
        .map(|t| {
            let l = &t["labels"];
            let who = l["pod"].as_str().or(l["node"].as_str()).unwrap_or_default();
            (
                l["job"].as_str().unwrap_or_default().to_string(),
                who.to_string(),
            )
        })
        .collect()
}

/// Waits until Prometheus scrapes exactly the three nodes and the running echo pods.
fn assert_scraped(lab: &TestLab, replicas: usize, within: Duration) {
    let pods = running_pods(lab, "app=echo", replicas);
    let mut want: Vec<(String, String)> = (1..=3)
        .map(|k| ("skiff-nodes".to_string(), format!("n{k}")))
        .chain(pods.iter().map(|p| ("skiff-pods".to_string(), p.0.clone())))
        .collect();
    want.sort();
    let deadline = Instant::now() + within;
    loop {
        let mut got = up_targets();
        got.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "targets up {got:?}, want {want:?}\n{}",
            std::fs::read_to_string(lab.lab_dir().join("prometheus/prometheus.log"))
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_in_the_lab_scrapes_nodes_and_pods_across_the_overlay() {
    let Some((lab, _)) = lab_for("lab prometheus", &["--prometheus"]) else {
        return;
    };
    install_echo(&lab, 6);
    let pods = running_pods(&lab, "app=echo", 6);
    let nodes: std::collections::BTreeSet<&String> = pods.iter().map(|p| &p.1).collect();
    assert_eq!(nodes.len(), 3, "echo pods not on every node: {pods:?}");
    // The bound: within 30 s of the pods running.
    assert_scraped(&lab, 6, Duration::from_secs(30));
    // The node targets are up over HTTPS (the metrics ports answer 401 without a token), so
    // Prometheus presents a token the API allows: its own ServiceAccount's, not the admin's.
    let nodes: Vec<Value> = active_targets()
        .into_iter()
        .filter(|t| t["labels"]["job"] == "skiff-nodes")
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for t in &nodes {
        assert_eq!(t["health"], "up", "{t}");
        let url = t["scrapeUrl"].as_str().unwrap_or_default();
        assert!(url.starts_with("https://10.90.0.1"), "{url}");
    }
    let token = std::fs::read_to_string(lab.lab_dir().join("prometheus/token")).expect("token");
    assert_ne!(token.trim(), lab.admin_token());
    let config =
        std::fs::read_to_string(lab.lab_dir().join("prometheus/prometheus.yml")).expect("config");
    assert!(!config.contains(&lab.admin_token()), "{config}");
    let claims: Value = {
        use base64::Engine;
        let payload = token.trim().split('.').nth(1).expect("a JWT");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64");
        serde_json::from_slice(&raw).expect("claims")
    };
    assert_eq!(
        claims["sub"],
        "system:serviceaccount:kube-system:prometheus"
    );
    // That token reads metrics and nothing else.
    let metrics = lab.https_get(metrics_port(2), "/metrics", Some(token.trim()));
    assert_eq!(metrics.as_ref().map(|m| m.0), Some(200), "{metrics:?}");
    let pods = lab.https_get(API_PORT, "/api/v1/pods", Some(token.trim()));
    assert_eq!(pods.as_ref().map(|m| m.0), Some(403), "{pods:?}");
    let leaders = prom_query("skiff_raft_is_leader == 1");
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    for metric in ["apiserver_request_total", "kubelet_running_pods"] {
        assert!(!prom_query(metric).is_empty(), "{metric} not scraped");
    }
    lab.kubectl_ok(&["scale", "deployment/echo", "--replicas=8"]);
    assert_scraped(&lab, 8, Duration::from_secs(60));
    lab.kubectl_ok(&["scale", "deployment/echo", "--replicas=2"]);
    assert_scraped(&lab, 2, Duration::from_secs(60));
}

#[test]
fn lab_survives_leader_loss_partition_and_node_loss() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some((lab, _)) = lab_for("lab failures", &[]) else {
        return;
    };
    let all = [1, 2, 3];
    wait_for("a leader", Duration::from_secs(10), || {
        leader_among(&lab, &all).is_some()
    });
    let leader = leader_among(&lab, &all).expect("leader");

    // A kubectl write loop through the forwarder (bounded in count and time).
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let kubeconfig = lab.lab_dir().join("kubeconfig");
        std::thread::spawn(move || {
            let start = Instant::now();
            for i in 0..400 {
                if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let name = format!("w-{i}");
                let ok = Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["--request-timeout=5s", "create", "configmap", &name])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if ok {
                    acked.lock().expect("acked").push(name);
                }
            }
        })
    };
    let count = || acked.lock().expect("acked").len();
    wait_for("5 writes before the kill", Duration::from_secs(30), || {
        count() >= 5
    });
    Command::new("kill")
        .args(["-9", &server_pid(&lab, leader).to_string()])
        .status()
        .expect("kill");
    let killed = Instant::now();
    let rest: Vec<usize> = all.iter().copied().filter(|&k| k != leader).collect();
    wait_for("a new leader", Duration::from_secs(10), || {
        leader_among(&lab, &rest).is_some()
    });
    eprintln!("new leader after {:.2} s", killed.elapsed().as_secs_f64());
    let before = count();
    wait_for(
        "10 more writes through the forwarder",
        Duration::from_secs(60),
        || count() >= before + 10,
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let acked: Vec<String> = acked.lock().expect("acked").clone();
    let listed = lab.kubectl_ok(&["get", "configmaps", "-o", "name"]);
    for name in &acked {
        assert!(
            listed.contains(&format!("configmap/{name}\n")),
            "acknowledged {name} lost"
        );
    }
    // The old leader rejoins and catches up: its own API serves every acknowledged write.
    let mut restarted = restart_server(&lab, leader);
    wait_for(
        "the restarted node to catch up",
        Duration::from_secs(60),
        || {
            let out = node_kubectl(&lab, leader, &["get", "configmaps", "-o", "name"]);
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
                && acked
                    .iter()
                    .all(|n| got.contains(&format!("configmap/{n}\n")))
        },
    );

    // Partition: a follower without its underlay link cannot write; the other two can.
    wait_for("a leader", Duration::from_secs(10), || {
        leader_among(&lab, &all).is_some()
    });
    let leader = leader_among(&lab, &all).expect("leader");
    let cut = all
        .iter()
        .copied()
        .find(|&k| k != leader)
        .expect("follower");
    let port = format!("n{cut}");
    let link = |state: &str| {
        let ok = Command::new("ip")
            .args(["-n", UNDERLAY_NS, "link", "set", &port, state])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link set {port} {state}");
    };
    link("down");
    let refused = node_kubectl(&lab, cut, &["create", "configmap", "cut-off"]);
    assert!(
        !refused.status.success(),
        "a cut-off node wrote: {}",
        text(&refused)
    );
    wait_for(
        "a write through the majority",
        Duration::from_secs(30),
        || {
            lab.kubectl("/usr/bin/kubectl", &["create", "configmap", "majority"])
                .status
                .success()
        },
    );
    link("up");
    wait_for(
        "the cut-off node to converge",
        Duration::from_secs(60),
        || {
            node_kubectl(&lab, cut, &["get", "configmap", "majority"])
                .status
                .success()
        },
    );

    // A whole node stops: NotReady, its pods replaced on the others, reachable across hosts.
    lab.kubectl_ok(&[
        "create",
        "deployment",
        "spread",
        &format!("--image={IMAGE}"),
        "--replicas=6",
        "--",
        "sh",
        "-c",
        "hostname > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
    ]);
    let pods = running_pods(&lab, "app=spread", 6);
    let victim = 3;
    assert!(pods.iter().any(|p| p.1 == format!("n{victim}")), "{pods:?}");
    stop_node(&lab, victim);
    wait_for("the stopped node NotReady", Duration::from_secs(60), || {
        let out = lab.kubectl(
            "/usr/bin/kubectl",
            &["get", "node", &format!("n{victim}"), "--no-headers"],
        );
        String::from_utf8_lossy(&out.stdout).contains("NotReady")
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let moved = loop {
        let pods = running_pods(&lab, "app=spread", 6);
        if pods.iter().all(|p| p.1 != format!("n{victim}")) {
            break pods;
        }
        assert!(
            Instant::now() < deadline,
            "pods not replaced: {pods:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_cross_host(&lab, &moved);
    drop(lab);
    let _ = restarted.wait();
}
