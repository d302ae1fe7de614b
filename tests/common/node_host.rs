//! A node host for end-to-end tests: a network namespace the test creates, a single-node
//! `skiff server` (control plane + node agent) running inside it, and a forwarder that makes
//! its API reachable on 127.0.0.1 in the root namespace (kubectl, kube-rs). Pod addresses,
//! the pod bridge and routes exist only inside the namespace. A local registry
//! (Debian's `docker-registry`) can run in the namespace too, holding the busybox image.
//! Drop removes containers, mounts, the namespace and processes, also after a failure.
//! Needs `crate::servers` (tests/common/servers.rs) at the crate root.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::servers::{spawn_tied, BIN};

/// The registry inside every host's namespace.
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const IMAGE: &str = "127.0.0.1:5000/busybox:latest";

/// Whether this run may use root-only features; prints why not (and fails under
/// `SKIFF_E2E_REQUIRED=1`) when it may not.
pub fn root_or_skip(test: &str) -> bool {
    let missing: Vec<&str> = [
        "/usr/sbin/runc",
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
        "/bin/busybox",
    ]
    .into_iter()
    .filter(|p| !Path::new(p).exists())
    .collect();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!("missing {missing:?} (scripts/install-deps.sh installs them)")
    } else {
        "not root".to_string()
    };
    if std::env::var("SKIFF_E2E_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{test}: required end-to-end test cannot run: {why}");
    }
    eprintln!("skipping {test}: {why}");
    false
}

/// Where `ip netns` keeps the namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// A new network namespace `<prefix><pid>x<n>` with loopback up.
pub fn new_netns(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    run(Command::new("ip").args(["netns", "add", &name]));
    run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
    name
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread inside the namespace (sockets it opens live there).
pub fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(ns).expect("open netns");
    std::thread::spawn(move || {
        nix_setns(&file);
        f()
    })
    .join()
    .expect("netns thread")
}

/// HTTP/1.0 GET from inside a network namespace (a host's or a pod's): (status, body).
pub fn http_get_in(
    ns: &Path,
    addr: impl Into<String>,
    path: impl Into<String>,
) -> Option<(u16, String)> {
    let (addr, path) = (addr.into(), path.into());
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    })
}

fn nix_setns(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Accepts on 127.0.0.1 (root namespace) and connects each client to `target` inside the
/// namespace; bytes are copied both ways. Threads end when either side closes.
fn forward(ns: &Path, target: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel::<mpsc::Sender<std::io::Result<TcpStream>>>();
    let file = File::open(ns).expect("open netns");
    // One thread lives in the namespace and dials for the others.
    std::thread::spawn(move || {
        nix_setns(&file);
        for reply in rx {
            let _ = reply.send(TcpStream::connect(target));
        }
    });
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (rtx, rrx) = mpsc::channel();
            if tx.send(rtx).is_err() {
                return;
            }
            let Ok(Ok(upstream)) = rrx.recv() else {
                continue;
            };
            pipe(client, upstream);
        }
    });
    port
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    copy(a, b2);
    copy(b, a2);
}

pub struct NodeHost {
    pub name: String,
    pub netns: PathBuf,
    pub dir: TempDir,
    pub api_port: u16,
    /// Where this host's registry listens (inside its namespace), if it runs one.
    registry_addr: String,
    config: PathBuf,
    server: Option<Child>,
    registry: Option<Child>,
    /// More processes in the namespace (agents), killed on drop.
    extra: Vec<Child>,
}

/// The busybox OCI layout, built once per test process.
fn busybox_layout() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("skiff-busybox-{}", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-busybox-image.sh");
        run(Command::new("bash").arg(script).arg(&dir));
        dir
    })
    .clone()
}

impl NodeHost {
    /// Namespace, registry with the busybox image, and a server whose config gets `extra`
    /// appended inside its `[node]` table.
    pub fn start(extra_node: &str) -> NodeHost {
        let name = new_netns("skt");
        let mut host = NodeHost::create(name, Some(REGISTRY));
        host.write_config(&format!(
            "node_name = \"n1\"\ndata_dir = \"{data}\"\npeer_listen_addr = \"127.0.0.1:2380\"\nhttp_listen_addr = \"127.0.0.1:9101\"\napi_addr = \"127.0.0.1:6443\"\n[overlay]\nenabled = false\n[node]\npod_cidr = \"10.244.0.0/24\"\nrun_dir = \"{run}\"\ninsecure_registries = [\"{REGISTRY}\"]\nlease_renew_seconds = 2\nstatus_update_seconds = 2\n{extra_node}\n",
            data = host.dir.path().join("data").display(),
            run = host.dir.path().join("run").display(),
        ));
        host.start_server();
        host
    }

    /// A host in the namespace `name` (made by `new_netns`; dropped with the host), with a
    /// registry holding the busybox image at `registry` if given. The server starts once a
    /// config is written.
    pub fn create(name: String, registry: Option<&str>) -> NodeHost {
        let netns = netns_path(&name);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        let api_port = forward(&netns, "127.0.0.1:6443");
        let mut host = NodeHost {
            name,
            netns,
            dir,
            api_port,
            registry_addr: registry.unwrap_or_default().to_string(),
            config,
            server: None,
            registry: None,
            extra: Vec::new(),
        };
        if registry.is_some() {
            host.start_registry();
        }
        host
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("config");
    }

    /// Starts `skiff agent` NAME in the namespace, against this host's API, with its own
    /// pod subnet and bridge; `index` picks distinct ports and subnet.
    pub fn start_agent(&mut self, name: &str, index: u8) {
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "node_name = \"{name}\"\ndata_dir = \"{data}\"\nhttp_listen_addr = \"127.0.0.1:{http}\"\n[node]\naddress = \"127.0.0.1\"\npod_cidr = \"10.244.{index}.0/24\"\nbridge = \"cni{index}\"\nlisten_addr = \"127.0.0.1:{kubelet}\"\nrun_dir = \"{run}\"\ninsecure_registries = [\"{REGISTRY}\"]\nlease_renew_seconds = 2\nstatus_update_seconds = 2\n[overlay]\nenabled = false\n[proxy]\nenabled = false\n[dns]\nenabled = false\n[ingress]\nenabled = false\n",
                data = self.dir.path().join(name).display(),
                http = 9101 + index as u16,
                kubelet = 10250 + index as u16,
                run = self.dir.path().join("run").display(),
            ),
        )
        .expect("agent config");
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log");
        let mut cmd = Command::new(BIN);
        let token = std::fs::read_to_string(self.dir.path().join("data/token")).expect("token");
        cmd.args(["agent", "--server", "https://127.0.0.1:6443", "--config"])
            .arg(&config)
            .env("SKIFF_TOKEN", token.trim())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        let child = self.tied_in_ns(cmd);
        self.extra.push(child);
    }

    fn tied_in_ns(&self, mut cmd: Command) -> Child {
        use std::os::unix::process::CommandExt;
        let file = File::open(&self.netns).expect("open netns");
        // SAFETY: setns is async-signal-safe; the fd stays open for the closure's lifetime.
        unsafe {
            cmd.pre_exec(move || {
                use std::os::fd::AsRawFd;
                if libc::setns(file.as_fd().as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        spawn_tied(cmd)
    }

    fn start_registry(&mut self) {
        let dir = self.dir.path().join("registry");
        std::fs::create_dir_all(&dir).expect("registry dir");
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n",
                dir.join("data").display(),
                self.registry_addr,
            ),
        )
        .expect("registry config");
        let mut cmd = Command::new("/usr/bin/docker-registry");
        cmd.arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.registry = Some(self.tied_in_ns(cmd));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.http_ok(&self.registry_addr, "/v2/") {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let layout = busybox_layout();
        run(Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["skopeo", "copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/busybox:latest", self.registry_addr)));
    }

    /// GET inside the namespace answers 200.
    pub fn http_ok(&self, addr: &str, path: &str) -> bool {
        self.http_get(addr, path)
            .is_some_and(|(code, _)| code == 200)
    }

    /// HTTP/1.0 GET from the node's namespace: (status, body).
    pub fn http_get(
        &self,
        addr: impl Into<String>,
        path: impl Into<String>,
    ) -> Option<(u16, String)> {
        http_get_in(&self.netns, addr, path)
    }

    /// An HTTPS GET from the node's namespace answers 200 (`token`: bearer token).
    pub fn https_ok(&self, addr: &str, path: &str, token: Option<&str>) -> bool {
        self.https_get(addr, path, token)
            .is_some_and(|(code, _)| code == 200)
    }

    /// An HTTPS GET from the node's namespace: (status, body).
    pub fn https_get(&self, addr: &str, path: &str, token: Option<&str>) -> Option<(u16, String)> {
        let (addr, path, token) = (addr.to_string(), path.to_string(), token.map(String::from));
        in_netns(&self.netns, move || {
            crate::servers::tls::get_at(&addr, &path, token.as_deref())
        })
    }

    /// The node's Prometheus metrics (as the admin).
    pub fn metrics(&self) -> Option<(u16, String)> {
        self.https_get("127.0.0.1:9101", "/metrics", self.admin_token().as_deref())
    }

    /// The server's admin token, once its PKI exists.
    pub fn admin_token(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("data/pki/admin.token"))
            .ok()
            .map(|t| t.trim().to_string())
    }

    pub fn start_server(&mut self) {
        self.spawn_server();
        self.wait_ready();
    }

    /// Starts the server without waiting (members of one cluster need each other to be ready).
    pub fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log");
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info,raft=warn")
            .stdout(Stdio::null())
            .stderr(log);
        self.server = Some(self.tied_in_ns(cmd));
    }

    /// Ready, and the bootstrap namespaces exist (created just after the API starts).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.https_ok("127.0.0.1:9101", "/readyz", None)
            || !self.https_ok(
                "127.0.0.1:6443",
                "/api/v1/namespaces/default",
                self.admin_token().as_deref(),
            )
        {
            if let Some(Ok(Some(st))) = self.server.as_mut().map(Child::try_wait) {
                panic!("server exited: {st}\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the server (containers keep running in their shims).
    pub fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn client(&self) -> kube::Client {
        crate::servers::tls::admin_client(&self.dir.path().join("data"), &self.url())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        if !path.exists() {
            let out = Command::new(BIN)
                .args(["kubeconfig", "--server", &self.url(), "--config"])
                .arg(&self.config)
                .output()
                .expect("skiff kubeconfig");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&path, out.stdout).expect("kubeconfig");
        }
        path
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("data/node")
    }
}

impl Drop for NodeHost {
    fn drop(&mut self) {
        self.kill_server();
        for mut c in self.extra.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Every node of this host keeps its runc state under run/<node>/runc.
        let roots: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("run"))
            .map(|d| d.flatten().map(|e| e.path().join("runc")).collect())
            .unwrap_or_default();
        for root in roots {
            skiff::node::runtime::delete_all(&root);
        }
        if let Some(mut r) = self.registry.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        // Pod namespaces (named by pod UID) and rootfs overlays of every node of this host.
        let uids: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().join("node/pods"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flat_map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()))
            .collect();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.path().display().to_string();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            let ours =
                m.starts_with(&prefix) || uids.iter().any(|u| m == format!("/run/skiff/netns/{u}"));
            if ours {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
        for u in &uids {
            let _ = std::fs::remove_file(format!("/run/skiff/netns/{u}"));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Polls the pod until `f` holds (returns its value) or fails with the last status seen.
pub async fn wait_pod<T>(
    api: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    secs: u64,
    f: impl Fn(&k8s_openapi::api::core::v1::Pod) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        if let Ok(p) = api.get(name).await {
            if let Some(v) = f(&p) {
                return v;
            }
            last = p.status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("pod {name}: condition not reached in {secs}s; last status: {last:#?}");
}

pub fn phase(p: &k8s_openapi::api::core::v1::Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}
