//! The `skiff` binary: configuration layers and errors, health and metrics, data dir checks.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "common/tls.rs"]
#[allow(dead_code)]
mod tls;

const BIN: &str = env!("CARGO_BIN_EXE_skiff");

fn skiff(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run skiff")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    skiff::store::free_loopback_ports(1).expect("free port")[0]
}

/// An HTTPS GET (every port of a server speaks TLS): (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    tls::get(port, path, None)
}

struct Server {
    child: Child,
    http: u16,
    log: std::path::PathBuf,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let (peer, http) = (free_port(), free_port());
        let mut args = vec![
            "server".to_string(),
            "--node-name=n1".into(),
            format!("--data-dir={}", data_dir.display()),
            format!("--peer-listen-addr=127.0.0.1:{peer}"),
            format!("--http-listen-addr=127.0.0.1:{http}"),
            format!("--api-addr=127.0.0.1:{}", free_port()),
            // The node agent is tested in tests/node.rs, inside a network namespace.
            "--set=node.enabled=false".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = data_dir.with_extension("log");
        let child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn skiff server");
        Server { child, http, log }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some((200, _)) = http_get(self.http, "/readyz") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("server exited early: {status}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server not ready within 15 s");
    }

    /// SIGTERM, then the exit status (None if it had to be killed).
    fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn version_prints_the_package_version() {
    let o = skiff(&["version"], &[]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("skiff {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn config_layers_apply_defaults_file_env_flags_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("skiff.toml");
    std::fs::write(
        &file,
        "node_name = \"n1\"\nhttp_listen_addr = \"127.0.0.1:1111\"\n[raft]\ntick_ms = 70\nelection_ticks = 30\n",
    )
    .expect("write config");
    let o = skiff(
        &[
            "server",
            "--config",
            file.to_str().expect("utf-8 path"),
            "--http-listen-addr",
            "127.0.0.1:3333",
            "--print-config",
        ],
        &[
            ("SKIFF_HTTP_LISTEN_ADDR", "127.0.0.1:2222"),
            ("SKIFF_RAFT__ELECTION_TICKS", "20"),
            ("SKIFF_E2E_REQUIRED", "1"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: toml::Table = String::from_utf8_lossy(&o.stdout)
        .parse()
        .expect("TOML output");
    assert_eq!(
        cfg["http_listen_addr"].as_str(),
        Some("127.0.0.1:3333"),
        "flag beats env and file"
    );
    assert_eq!(
        cfg["raft"]["election_ticks"].as_integer(),
        Some(20),
        "env beats file"
    );
    assert_eq!(
        cfg["raft"]["tick_ms"].as_integer(),
        Some(70),
        "file beats default"
    );
    assert_eq!(
        cfg["raft"]["heartbeat_ticks"].as_integer(),
        Some(1),
        "default"
    );
    assert_eq!(cfg["node_name"].as_str(), Some("n1"));
}

#[test]
fn unknown_keys_and_bad_values_fail_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    /// (what, flags, environment, config file text)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "unknown key in file",
            vec![],
            vec![],
            "[raft]\ntick_msx = 5\n",
        ),
        (
            "bad value in file",
            vec![],
            vec![],
            "[raft]\ntick_ms = \"fast\"\n",
        ),
        (
            "bad value in env",
            vec![],
            vec![("SKIFF_RAFT__TICK_MS", "fast")],
            "",
        ),
        ("bad flag value", vec!["--raft-tick-ms", "fast"], vec![], ""),
        (
            "unknown --set key",
            vec!["--set", "raft.tick_msx=5"],
            vec![],
            "",
        ),
    ];
    for (name, flags, env, file_text) in cases {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, file_text).expect("write config");
        let mut args = vec![
            "server",
            "--config",
            file.to_str().expect("utf-8 path"),
            "--node-name",
            "n1",
        ];
        args.extend(flags);
        let o = skiff(&args, &env);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{name}: one line expected: {err}"
        );
        let key = if name.contains("unknown") {
            "raft.tick_msx"
        } else {
            "raft.tick_ms"
        };
        assert!(
            err.contains(&format!("`{key}`")),
            "{name}: key not named: {err}"
        );
    }
    let o = skiff(
        &[
            "server",
            "--node-name",
            "n1",
            "--initial-cluster",
            "n2=127.0.0.1:1",
        ],
        &[],
    );
    assert!(stderr(&o).contains("initial_cluster"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn server_reports_health_and_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(&dir.path().join("data"), &[]);
    s.wait_ready();
    assert_eq!(http_get(s.http, "/healthz").map(|r| r.0), Some(200));
    // Metrics need credentials; the admin token is in the data dir.
    assert_eq!(http_get(s.http, "/metrics").map(|r| r.0), Some(401));
    let token = std::fs::read_to_string(dir.path().join("data/pki/admin.token")).expect("token");
    let (code, metrics) = tls::get(s.http, "/metrics", Some(token.trim())).expect("metrics");
    assert_eq!(code, 200);
    for needle in [
        "skiff_raft_is_leader 1",
        "skiff_raft_leader_id 1",
        "skiff_raft_term 1",
        "skiff_raft_proposal_duration_seconds_bucket",
        "skiff_store_revision ",
        "skiff_store_keys ",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    assert_eq!(s.terminate(), Some(0), "clean exit on SIGTERM");
}

/// Creates a data dir holding a log and a snapshot, by running a server on it once.
fn initialized_data_dir(root: &Path) -> std::path::PathBuf {
    let data = root.join("base");
    let mut s = Server::start(&data, &["--raft-snapshot-interval=1"]);
    s.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(data.join("snap"))
        .map(|d| d.count())
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "no snapshot written");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.terminate(), Some(0));
    data
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn first_file(dir: &Path, ext: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

/// The newest (by name: index-term) file with extension `ext`: the one a replica loads.
fn last_file(dir: &Path, ext: &str) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
        .pop()
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(bytes).expect("write");
}

#[test]
fn damaged_or_foreign_data_dir_makes_the_server_exit_with_a_clear_message() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = initialized_data_dir(root.path());
    // The untouched copy starts fine: the damage below is what makes the others fail.
    let ok = root.path().join("ok");
    copy_dir(&base, &ok);
    let mut s = Server::start(&ok, &[]);
    s.wait_ready();
    assert_eq!(s.terminate(), Some(0));

    type Damage = fn(&Path);
    let cases: [(&str, Damage, &[&str], &str); 5] = [
        (
            "raft log header",
            |d| overwrite(&first_file(&d.join("raft"), "raftlog"), 0, b"garbage!"),
            &[],
            "raft log is damaged",
        ),
        (
            "raft log record",
            |d| {
                overwrite(
                    &first_file(&d.join("raft"), "raftlog"),
                    100,
                    b"\xff\xff\xff\xff",
                )
            },
            &[],
            "raft log is damaged",
        ),
        (
            "snapshot",
            |d| overwrite(&last_file(&d.join("snap"), "snap"), 14, b"\x00\x01\x02"),
            &[],
            "snapshot",
        ),
        (
            "skiff.json",
            |d| std::fs::write(d.join("skiff.json"), b"{not json").expect("write"),
            &[],
            "skiff.json is corrupt",
        ),
        (
            "other cluster",
            |_| {},
            &["--cluster-name=other"],
            "belongs to member n1 of cluster",
        ),
    ];
    for (name, damage, flags, message) in cases {
        let dir = root.path().join(name.replace(' ', "-"));
        copy_dir(&base, &dir);
        damage(&dir);
        let mut args = vec![
            "server".to_string(),
            "--node-name=n1".into(),
            format!("--data-dir={}", dir.display()),
            format!("--peer-listen-addr=127.0.0.1:{}", free_port()),
            format!("--http-listen-addr=127.0.0.1:{}", free_port()),
            format!("--api-addr=127.0.0.1:{}", free_port()),
            // The node agent is tested in tests/node.rs, inside a network namespace.
            "--set=node.enabled=false".into(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let o = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "off")
            .output()
            .expect("run");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: panic: {err}");
        let last = err.trim().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("skiff: error: ") && last.contains(message),
            "{name}: {err}"
        );
    }
    let stranger = root.path().join("stranger");
    std::fs::create_dir_all(&stranger).expect("mkdir");
    std::fs::write(stranger.join("notes.txt"), b"mine").expect("write");
    let o = skiff(
        &[
            "server",
            "--node-name=n1",
            &format!("--data-dir={}", stranger.display()),
        ],
        &[("RUST_LOG", "off")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a skiff data dir"),
        "{}",
        stderr(&o)
    );
}
