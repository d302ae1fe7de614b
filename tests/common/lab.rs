//! The `skiff lab` of tests/lab.rs, tests/services.rs and tests/workloads.rs: one lab per test
//! in a temporary directory (removed on drop, also when the test fails), real kubectl against
//! it, and the helpers those tests share. Needs `crate::node_host` and `crate::servers` at the
//! crate root.
//!
//! The lab is secure by default: its API and metrics ports are HTTPS with certificates from
//! the cluster CA node 1 creates (`<lab>/n1/data/pki/ca.crt`), and everything but health
//! needs a token. The helpers here verify that CA and present the admin token
//! (`<lab>/n1/data/pki/admin.token`), as the lab's kubeconfig does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::servers::BIN;

/// One lab at a time: its namespaces and 127.0.0.1 ports are fixed.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The tests' lab has its own name and ports (`skiff lab up --name ... --api-port ...`), so
/// `make test` runs while the `make lab` lab (`skiff-*`, 6443, 9101.., 9090) is up.
pub const NAME: &str = "skt";
pub const UNDERLAY_NS: &str = "skt-ul";
pub const CONTEXT: &str = "skt-lab";
pub const API_PORT: u16 = 16443;
/// Node 1's metrics port on 127.0.0.1; node K's is this + K - 1.
pub const METRICS_PORT: u16 = 19101;
pub const PROMETHEUS_PORT: u16 = 19090;

/// Node K's network namespace.
pub fn node_ns(k: usize) -> String {
    format!("{NAME}-n{k}")
}

/// Node K's metrics port on 127.0.0.1 (the forwarder).
pub fn metrics_port(k: usize) -> u16 {
    METRICS_PORT + k as u16 - 1
}

pub const KUBECTL_OLD: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";

pub const KUBECTL_NEW: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub const IMAGE: &str = "10.90.0.1:5000/busybox:latest";

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A lab in a temporary directory, removed on drop (also when the test fails).
pub struct TestLab {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// Environment of `skiff` runs (config overrides such as `SKIFF_CONTROLLERS__...` reach
    /// the lab's servers through `lab up`).
    pub env: Vec<(String, String)>,
    /// Held until the lab is down: one lab at a time (its namespaces and ports are fixed).
    _one: std::sync::MutexGuard<'static, ()>,
}

impl TestLab {
    pub fn lab_dir(&self) -> PathBuf {
        self.dir.path().join("lab")
    }

    pub fn skiff(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("SKIFF_LAB_DIR", self.lab_dir())
            .env("SKIFF_LAB_NAME", NAME)
            .output()
            .expect("run skiff")
    }

    pub fn up(&self, extra: &[&str]) -> Output {
        let kc = self.kubeconfig.display().to_string();
        let ports = [API_PORT, METRICS_PORT, PROMETHEUS_PORT].map(|p| p.to_string());
        let mut args = vec!["lab", "up", "--kubeconfig", &kc];
        args.extend(["--api-port", &ports[0], "--metrics-port", &ports[1]]);
        args.extend(["--prometheus-port", &ports[2]]);
        args.extend_from_slice(extra);
        self.skiff(&args)
    }

    pub fn kubectl(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", CONTEXT, "--request-timeout=10s"])
            .args(args)
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl("/usr/bin/kubectl", args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Node 1's PKI: the cluster CA and the admin token.
    pub fn pki(&self) -> PathBuf {
        self.lab_dir().join("n1/data/pki")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.pki().join("ca.crt")).expect("ca.crt")
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.pki().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string()
    }

    /// `GET path` on 127.0.0.1:`port` (the forwarder) over TLS verified with the cluster CA,
    /// with `token` if given: (status, body), None when the connection or handshake fails.
    pub fn https_get(&self, port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
        https_get(&self.ca_pem(), port, path, token)
    }

    pub fn logs(&self) -> String {
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

pub const OTHER_CONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: prod\ncurrent-context: prod\nusers:\n- name: prod\n  user:\n    token: keep-me\n";

/// For `test`, a lab that `skiff lab up EXTRA` started (the test fails with the logs
/// otherwise) and `up`'s output; `None` when the test is skipped (not root).
pub fn lab_for(test: &str, extra: &[&str]) -> Option<(TestLab, String)> {
    lab_with_env(test, extra, &[])
}

/// `lab_for` with `env` set for `skiff lab up` (and so for the lab's servers).
pub fn lab_with_env(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Option<(TestLab, String)> {
    if !crate::node_host::root_or_skip(test) {
        return None;
    }
    Some(started_lab(extra, env))
}

fn started_lab(extra: &[&str], env: &[(&str, &str)]) -> (TestLab, String) {
    let mut lab = new_lab();
    lab.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = lab.up(extra);
    assert!(
        out.status.success(),
        "lab up: {}\n{}",
        text(&out),
        lab.logs()
    );
    let said = text(&out);
    (lab, said)
}

/// A busybox pod `client` (label role=client) on node 1, running; its name.
pub fn run_client(lab: &TestLab) -> String {
    lab.kubectl_ok(&[
        "run",
        "client",
        &format!("--image={IMAGE}"),
        "--restart=Never",
        "-l",
        "role=client",
        "--overrides={\"spec\":{\"nodeName\":\"n1\"}}",
        "--",
        "sleep",
        "3600",
    ]);
    running_pods(lab, "role=client", 1)[0].0.clone()
}

pub fn new_lab() -> TestLab {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kube/config");
    std::fs::create_dir_all(kubeconfig.parent().expect("parent")).expect("mkdir");
    std::fs::write(&kubeconfig, OTHER_CONFIG).expect("kubeconfig");
    TestLab {
        dir,
        kubeconfig,
        env: Vec::new(),
        _one: LAB.lock().unwrap_or_else(|e| e.into_inner()),
    }
}

pub fn lab_processes(dir: &Path) -> Vec<String> {
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

pub fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n == UNDERLAY_NS || n.starts_with(&format!("{NAME}-n")))
                .collect()
        })
        .unwrap_or_default()
}

/// Pods of `selector` as (name, node, ip), once `want` of them run.
pub fn running_pods(lab: &TestLab, selector: &str, want: usize) -> Vec<(String, String, String)> {
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
pub fn assert_cross_host(lab: &TestLab, pods: &[(String, String, String)]) {
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

/// `GET path` on 127.0.0.1:`port` over TLS, trusting only `ca_pem` (the name checked is
/// 127.0.0.1, which every lab certificate carries).
pub fn https_get(
    ca_pem: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = std::sync::Arc::new(skiff::pki::tls::client_config(ca_pem, None).ok()?);
    let name = rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
    let conn = rustls::ClientConnection::new(config, name).ok()?;
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(tls, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n").ok()?;
    let mut buf = Vec::new();
    // A close without close_notify is an error to rustls; what arrived still counts.
    let _ = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Plain HTTP/1.0 GET on 127.0.0.1 in the root namespace (Prometheus' own port; every Skiff
/// port is HTTPS): the body if 200.
pub fn local_get(port: u16, path: &str) -> Option<String> {
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

pub fn install_echo(lab: &TestLab, replicas: usize) {
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

/// Node K's metrics through the forwarder, HTTPS with the admin token.
pub fn metrics_of(lab: &TestLab, k: usize) -> Option<String> {
    let token = lab.admin_token();
    lab.https_get(metrics_port(k), "/metrics", Some(&token))
        .filter(|(c, _)| *c == 200)
        .map(|(_, body)| body)
}

pub fn is_leader(lab: &TestLab, k: usize) -> bool {
    metrics_of(lab, k).is_some_and(|m| m.lines().any(|l| l == "skiff_raft_is_leader 1"))
}

pub fn leader_among(lab: &TestLab, nodes: &[usize]) -> Option<usize> {
    nodes.iter().copied().find(|&k| is_leader(lab, k))
}

/// kubectl inside node K's namespace, against that node's own API server: the lab's
/// kubeconfig (CA, admin token) with the server 127.0.0.1:6443 of that namespace.
pub fn node_kubectl(lab: &TestLab, k: usize, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node_ns(k)))
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(lab.lab_dir().join("kubeconfig"))
        .args(["--server", "https://127.0.0.1:6443", "--request-timeout=5s"])
        .args(args)
        .output()
        .expect("nsenter kubectl")
}

pub fn server_pid(lab: &TestLab, k: usize) -> i32 {
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
pub fn stop_node(lab: &TestLab, k: usize) {
    let pids = Command::new("ip")
        .args(["netns", "pids", &node_ns(k)])
        .output()
        .expect("ip netns pids");
    for pid in String::from_utf8_lossy(&pids.stdout).lines() {
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    }
    let run = lab.lab_dir().join(format!("n{k}/run"));
    for entry in std::fs::read_dir(&run).expect("run dir").flatten() {
        skiff::node::runtime::delete_all(&entry.path().join("runc"));
    }
}

/// Starts node K's server again, as `skiff lab up` did (`down` stops it with the namespace).
pub fn restart_server(lab: &TestLab, k: usize) -> std::process::Child {
    let dir = lab.lab_dir().join(format!("n{k}"));
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("server.log"))
        .expect("server log");
    Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node_ns(k)))
        .arg(BIN)
        .args(["server", "--config"])
        .arg(dir.join("config.toml"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("restart server")
}

pub fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `kubectl apply -f -` of `yaml` in the lab.
pub fn apply(lab: &TestLab, yaml: &str) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(lab.lab_dir().join("kubeconfig"))
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
}
