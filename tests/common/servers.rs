//! A cluster of real `skiff server` processes on loopback, each started from its own config
//! file, with kubeconfigs and kube-rs clients for each.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

#[path = "tls.rs"]
pub mod tls;

/// The cluster token of test clusters: server 1 creates the CA, the others join with it.
pub const TOKEN: &str = "skiff-test-token-0123456789abcdef";

pub const BIN: &str = env!("CARGO_BIN_EXE_skiff");

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Children are forked from one thread that lives as long as the test process and are
/// killed by the kernel when it goes (PR_SET_PDEATHSIG), so a shared cluster never outlives
/// its test binary, whatever way it ends.
pub fn spawn_tied(cmd: Command) -> Child {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                use std::os::unix::process::CommandExt;
                // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .expect("keeper")
        .send((cmd, tx))
        .expect("keeper thread");
    rx.recv()
        .expect("keeper reply")
        .expect("spawn skiff server")
}

pub struct Node {
    pub name: String,
    pub config: PathBuf,
    pub api: u16,
    /// Health and metrics (`http_listen_addr`).
    pub http: u16,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Servers {
    pub dir: TempDir,
    pub nodes: Vec<Node>,
}

/// Whether `GET /readyz` on the port answers 200 (over TLS).
pub fn ready(port: u16) -> bool {
    tls::ready(port)
}

impl Servers {
    /// Starts `n` servers forming one cluster; `extra` is appended to every config file.
    /// Without a `[node]` table in `extra` the node agent is off (no pods, no host changes).
    pub fn start(n: usize, extra: &str) -> Self {
        let node_off = if extra.contains("[node]") {
            ""
        } else {
            "node.enabled = false\n"
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = skiff::store::free_loopback_ports(3 * n).expect("free ports");
        let members: Vec<String> = (0..n)
            .map(|i| format!("\"n{}=127.0.0.1:{}\"", i + 1, ports[3 * i]))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let config = dir.path().join(format!("{name}.toml"));
            // Servers after the first join through it (they start together and retry).
            let join = if i == 0 {
                String::new()
            } else {
                format!("server_url = \"https://127.0.0.1:{}\"\n", ports[2])
            };
            let text = format!(
                "{node_off}node_name = \"{name}\"\ndata_dir = \"{data}\"\ninitial_cluster = [{members}]\npeer_listen_addr = \"127.0.0.1:{peer}\"\nhttp_listen_addr = \"127.0.0.1:{http}\"\napi_addr = \"127.0.0.1:{api}\"\n{extra}\n[security]\ntoken = \"{TOKEN}\"\n{join}",
                data = dir.path().join(&name).display(),
                members = members.join(", "),
                peer = ports[3 * i],
                http = ports[3 * i + 1],
                api = ports[3 * i + 2],
            );
            std::fs::write(&config, text).expect("write config");
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                config,
                api: ports[3 * i + 2],
                http: ports[3 * i + 1],
                child: None,
            });
        }
        let mut s = Servers { dir, nodes };
        for i in 0..n {
            s.spawn(i);
        }
        for i in 0..n {
            s.wait_ready(i);
        }
        s
    }

    pub fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", "info,raft=warn")
            .stdout(Stdio::null())
            .stderr(log);
        node.child = Some(spawn_tied(cmd));
    }

    pub fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ready(self.nodes[i].api) {
                return;
            }
            if let Some(Ok(Some(status))) = self.nodes[i].child.as_mut().map(Child::try_wait) {
                panic!(
                    "server {} exited: {status}\n{}",
                    self.nodes[i].name,
                    self.log(i)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server {} not ready within 30 s\n{}",
            self.nodes[i].name,
            self.log(i)
        );
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `kubectl ARGS` again until `check` accepts (succeeded, output), for 30 s at most (RBAC
    /// and controllers follow the store asynchronously); the accepted output.
    pub fn kubectl_until(&self, args: &[&str], check: impl Fn(bool, &str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (good, out) = self.kubectl(args);
            if check(good, &out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {}: still {out}",
                args.join(" ")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kubectl ARGS` (`/usr/bin/kubectl`) against server 0: (succeeded, stdout + stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig(0))
            .args(args)
            .output()
            .expect("kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    pub fn url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.nodes[i].api)
    }

    /// A kubeconfig file for server `i`, written by `skiff kubeconfig`.
    pub fn kubeconfig(&self, i: usize) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{}", self.nodes[i].name));
        if !path.exists() {
            let out = Command::new(BIN)
                .args(["kubeconfig", "--config"])
                .arg(&self.nodes[i].config)
                .output()
                .expect("skiff kubeconfig");
            assert!(out.status.success(), "skiff kubeconfig failed");
            std::fs::write(&path, out.stdout).expect("write kubeconfig");
        }
        path
    }

    /// A kube-rs client of server `i` as the admin.
    pub fn client(&self, i: usize) -> kube::Client {
        tls::admin_client(&self.data_dir(i), &self.url(i))
    }

    /// `GET path` on server `i` as the admin, without a client's retries: (status, JSON body).
    pub fn get(&self, i: usize, path: &str) -> (u16, serde_json::Value) {
        let (code, body) = tls::get(self.nodes[i].api, path, Some(&self.admin_token()))
            .unwrap_or_else(|| panic!("GET {path} on server {i}: no answer"));
        (code, serde_json::from_str(&body).unwrap_or_default())
    }

    /// Server `i`'s Prometheus metrics (from its API port, as the admin); empty when down.
    pub fn metrics(&self, i: usize) -> String {
        tls::get(self.nodes[i].api, "/metrics", Some(&self.admin_token()))
            .filter(|(code, _)| *code == 200)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The replica whose metrics say it leads.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.metrics(i)
                .lines()
                .any(|l| l == "skiff_raft_is_leader 1")
        })
    }

    /// The admin token (valid on every server of the cluster).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir(0).join("pki/admin.token"))
            .expect("admin token")
            .trim()
            .to_string()
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
