//! `skiff lab` end to end, as root: `up` builds a three-node replicated cluster in network
//! namespaces that real kubectl (1.27 and 1.33) reaches on 127.0.0.1:6443; the echo chart's
//! pods on every node reach each other across hosts; `up` and `down` are idempotent and `down`
//! leaves no namespace, link, mount, process, file or kubeconfig entry behind.

#[path = "common/node_host.rs"]
#[allow(dead_code)]
mod node_host;
#[path = "common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use node_host::root_or_skip;
use serde_json::Value;
use servers::BIN;

/// One lab at a time: its namespaces and 127.0.0.1 ports are fixed.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

const KUBECTL_OLD: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
const KUBECTL_NEW: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const IMAGE: &str = "10.90.0.1:5000/busybox:latest";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A lab in a temporary directory, removed on drop (also when the test fails).
struct TestLab {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl TestLab {
    fn lab_dir(&self) -> PathBuf {
        self.dir.path().join("lab")
    }

    fn skiff(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("SKIFF_LAB_DIR", self.lab_dir())
            .output()
            .expect("run skiff")
    }

    fn up(&self, extra: &[&str]) -> Output {
        let kc = self.kubeconfig.display().to_string();
        let mut args = vec!["lab", "up", "--kubeconfig", &kc];
        args.extend_from_slice(extra);
        self.skiff(&args)
    }

    fn kubectl(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", "skiff-lab", "--request-timeout=10s"])
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl("/usr/bin/kubectl", args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        (1..=3)
            .map(|k| {
                let p = self.lab_dir().join(format!("n{k}/server.log"));
                let log = std::fs::read_to_string(p).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!(
                    "--- n{k} ---\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.skiff(&["lab", "down"]);
    }
}

const OTHER_CONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: prod\ncurrent-context: prod\nusers:\n- name: prod\n  user:\n    token: keep-me\n";

fn new_lab() -> TestLab {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kube/config");
    std::fs::create_dir_all(kubeconfig.parent().expect("parent")).expect("mkdir");
    std::fs::write(&kubeconfig, OTHER_CONFIG).expect("kubeconfig");
    TestLab { dir, kubeconfig }
}

fn lab_processes(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle).then_some(cmd)
        })
        .collect()
}

fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n == "skiff-ul" || n.starts_with("skiff-n"))
                .collect()
        })
        .unwrap_or_default()
}

/// Pods of `selector` as (name, node, ip), once `want` of them run.
fn running_pods(lab: &TestLab, selector: &str, want: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = lab.kubectl_ok(&["get", "pods", "-l", selector, "-o", "json"]);
        let list: Value = serde_json::from_str(&out).expect("pod list json");
        let pods: Vec<(String, String, String)> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter_map(|p| {
                Some((
                    p["metadata"]["name"].as_str()?.to_string(),
                    p["spec"]["nodeName"].as_str()?.to_string(),
                    p["status"]["podIP"].as_str()?.to_string(),
                ))
            })
            .collect();
        if pods.len() == want {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "{}/{want} pods of {selector} running\n{}",
            pods.len(),
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// From a pod on each node, HTTP to a pod on every other node answers with that pod's name.
fn assert_cross_host(lab: &TestLab, pods: &[(String, String, String)]) {
    let nodes: std::collections::BTreeSet<&String> = pods.iter().map(|p| &p.1).collect();
    for from_node in &nodes {
        let from = pods.iter().find(|p| &&p.1 == from_node).expect("pod");
        for to in pods.iter().filter(|p| &&p.1 != from_node) {
            let url = format!("http://{}:8080/", to.2);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let out = lab.kubectl(
                    "/usr/bin/kubectl",
                    &[
                        "exec", &from.0, "--", "timeout", "5", "wget", "-q", "-O-", &url,
                    ],
                );
                if out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&to.0) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} on {} -> {} on {} ({url}): {}",
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                    text(&out)
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[test]
fn lab_up_serves_kubectl_and_cross_host_pods_and_down_leaves_nothing() {
    if !root_or_skip("lab") {
        return;
    }
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = new_lab();
    let out = lab.up(&[]);
    assert!(
        out.status.success(),
        "lab up: {}\n{}",
        text(&out),
        lab.logs()
    );
    assert!(text(&out).contains("3 nodes Ready"), "{}", text(&out));
    let state = std::fs::read_to_string(lab.lab_dir().join("lab.json")).expect("state");

    // `up` on a running lab says so and changes nothing.
    let again = lab.up(&[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already running"), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(lab.lab_dir().join("lab.json")).expect("state"),
        state
    );

    // Real kubectl, old and new, through 127.0.0.1:6443: three Ready nodes with pod CIDRs.
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
        format!("3\n{IMAGE} 10.90.0.1:5000 skiff-n1 skiff-n2 skiff-n3\n"),
        "{}",
        text(&out)
    );

    // `lab status`: every node running, exactly one leader.
    let status = lab.skiff(&["lab", "status"]);
    let st = text(&status);
    assert!(status.status.success(), "{st}");
    assert_eq!(st.matches(" leader ").count(), 1, "{st}");
    assert_eq!(st.matches(" running ").count(), 3, "{st}");

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
    let links = Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(
        !links.contains(" br0:") && !links.contains("skiff.1"),
        "links left:\n{links}"
    );
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

/// HTTP/1.0 GET on 127.0.0.1 in the root namespace: the body if 200.
fn local_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.split_whitespace()
        .nth(1)
        .is_some_and(|c| c == "200")
        .then(|| body.to_string())
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
    local_get(9090, &format!("/api/v1/query?query={}", encode(q)))
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// Active targets that are up: (job, pod or node label).
fn up_targets() -> Vec<(String, String)> {
    let Some(body) = local_get(9090, "/api/v1/targets?state=active") else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
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

fn install_echo(lab: &TestLab, replicas: usize) {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/echo");
    let out = Command::new(BIN)
        .args(["chart", "install", "echo"])
        .arg(&chart)
        .args([
            "--set",
            &format!("replicas={replicas}"),
            "--set",
            &format!("image={IMAGE}"),
        ])
        .env("KUBECONFIG", lab.lab_dir().join("kubeconfig"))
        .output()
        .expect("skiff chart install");
    assert!(out.status.success(), "chart install: {}", text(&out));
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
    if !root_or_skip("lab prometheus") {
        return;
    }
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = new_lab();
    let out = lab.up(&["--prometheus"]);
    assert!(
        out.status.success(),
        "lab up: {}\n{}",
        text(&out),
        lab.logs()
    );
    install_echo(&lab, 6);
    let pods = running_pods(&lab, "app=echo", 6);
    let nodes: std::collections::BTreeSet<&String> = pods.iter().map(|p| &p.1).collect();
    assert_eq!(nodes.len(), 3, "echo pods not on every node: {pods:?}");
    // The bound: within 30 s of the pods running.
    assert_scraped(&lab, 6, Duration::from_secs(30));
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

fn metrics_of(k: usize) -> Option<String> {
    local_get(9100 + k as u16, "/metrics")
}

fn is_leader(k: usize) -> bool {
    metrics_of(k).is_some_and(|m| m.lines().any(|l| l == "skiff_raft_is_leader 1"))
}

fn leader_among(nodes: &[usize]) -> Option<usize> {
    nodes.iter().copied().find(|&k| is_leader(k))
}

/// kubectl inside node K's namespace, against that node's own API server.
fn node_kubectl(k: usize, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/skiff-n{k}"))
        .args([
            "kubectl",
            "--server",
            "http://127.0.0.1:6443",
            "--request-timeout=5s",
        ])
        .args(args)
        .output()
        .expect("nsenter kubectl")
}

fn server_pid(lab: &TestLab, k: usize) -> i32 {
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.lab_dir().join("lab.json")).expect("state"),
    )
    .expect("state json");
    state["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p[0] == format!("n{k}"))
        .and_then(|p| p[1].as_i64())
        .expect("server pid") as i32
}

/// Kills every process in node K's namespace (its server and container shims) and its
/// containers: the machine is off.
fn stop_node(lab: &TestLab, k: usize) {
    let pids = Command::new("ip")
        .args(["netns", "pids", &format!("skiff-n{k}")])
        .output()
        .expect("ip netns pids");
    for pid in String::from_utf8_lossy(&pids.stdout).lines() {
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    }
    let run = lab.lab_dir().join(format!("n{k}/run"));
    for entry in std::fs::read_dir(&run).expect("run dir").flatten() {
        let root = entry.path().join("runc");
        let list = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output();
        for id in list
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
        {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "-f", id])
                .output();
        }
    }
}

/// Starts node K's server again, as `skiff lab up` did (`down` stops it with the namespace).
fn restart_server(lab: &TestLab, k: usize) -> std::process::Child {
    let dir = lab.lab_dir().join(format!("n{k}"));
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("server.log"))
        .expect("server log");
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/skiff-n{k}"))
        .arg(BIN)
        .args(["server", "--config"])
        .arg(dir.join("config.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("restart server")
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lab_survives_leader_loss_partition_and_node_loss() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    if !root_or_skip("lab failures") {
        return;
    }
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let lab = new_lab();
    let out = lab.up(&[]);
    assert!(
        out.status.success(),
        "lab up: {}\n{}",
        text(&out),
        lab.logs()
    );
    let all = [1, 2, 3];
    wait_for("a leader", Duration::from_secs(10), || {
        leader_among(&all).is_some()
    });
    let leader = leader_among(&all).expect("leader");

    // A kubectl write loop through 127.0.0.1:6443 (bounded in count and time).
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
        leader_among(&rest).is_some()
    });
    eprintln!("new leader after {:.2} s", killed.elapsed().as_secs_f64());
    let before = count();
    wait_for(
        "10 more writes through 127.0.0.1:6443",
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
            let out = node_kubectl(leader, &["get", "configmaps", "-o", "name"]);
            let got = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
                && acked
                    .iter()
                    .all(|n| got.contains(&format!("configmap/{n}\n")))
        },
    );

    // Partition: a follower without its underlay link cannot write; the other two can.
    wait_for("a leader", Duration::from_secs(10), || {
        leader_among(&all).is_some()
    });
    let leader = leader_among(&all).expect("leader");
    let cut = all
        .iter()
        .copied()
        .find(|&k| k != leader)
        .expect("follower");
    let port = format!("n{cut}");
    let link = |state: &str| {
        let ok = Command::new("ip")
            .args(["-n", "skiff-ul", "link", "set", &port, state])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link set {port} {state}");
    };
    link("down");
    let refused = node_kubectl(cut, &["create", "configmap", "cut-off"]);
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
            node_kubectl(cut, &["get", "configmap", "majority"])
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
