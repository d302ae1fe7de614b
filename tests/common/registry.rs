//! A real OCI registry (Debian's `docker-registry`) on a free loopback port with its storage in
//! a temporary directory, and the busybox test image built by scripts/build-busybox-image.sh.
//!
//! Include with `#[path = "common/registry.rs"] mod registry;`. One registry per test: it is
//! tied to the thread that starts it (PR_SET_PDEATHSIG), so it cannot outlive its test even if
//! the test process is killed, and it is stopped on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/build-busybox-image.sh"
);
const BUSYBOX: &str = "/bin/busybox";

fn on_path(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether the tools the registry tests need are installed. When one is missing the test
/// should return early (the reason is printed), unless `SKIFF_E2E_REQUIRED=1`: then it fails.
pub fn available() -> bool {
    let missing: Vec<&str> = ["docker-registry", "skopeo", BUSYBOX, "python3"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("SKIFF_E2E_REQUIRED").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{missing:?} required (SKIFF_E2E_REQUIRED=1) but not installed (scripts/install-deps.sh)"
    );
    eprintln!("skipping: {missing:?} not installed (scripts/install-deps.sh installs them)");
    false
}

/// The busybox image as built by the script: an OCI layout directory, the same as a tar, and
/// its manifest digest.
pub struct BusyboxImage {
    pub layout: PathBuf,
    pub tar: PathBuf,
    pub digest: String,
}

/// Builds the image into `out` (the layout; the tar is `out.tar`) with `reference` as its
/// `org.opencontainers.image.ref.name`.
pub fn build_busybox(out: &Path, reference: &str) -> BusyboxImage {
    let run = Command::new(SCRIPT)
        .arg(out)
        .arg(reference)
        .output()
        .expect("run build-busybox-image.sh");
    assert!(
        run.status.success(),
        "build-busybox-image.sh failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let digest = String::from_utf8_lossy(&run.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "script printed {digest:?}");
    let mut tar = out.as_os_str().to_owned();
    tar.push(".tar");
    BusyboxImage {
        layout: out.to_path_buf(),
        tar: PathBuf::from(tar),
        digest,
    }
}

/// The image tagged `latest` (what `oci:LAYOUT:latest` names), built once per test process.
/// It lives in cargo's per-target scratch directory under a key of the script and the busybox
/// binary, so test processes share it and nothing is left per run.
pub fn busybox() -> &'static BusyboxImage {
    static IMAGE: OnceLock<BusyboxImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(std::fs::read(SCRIPT).expect("read the script"));
        h.update(std::fs::read(BUSYBOX).expect("read busybox"));
        let key: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = scratch.join(format!("busybox-image-{key}"));
        if !done.join("digest").exists() {
            // Built aside and renamed, so a concurrent test process never sees half of it.
            let mine = scratch.join(format!("busybox-image-{key}.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&mine);
            std::fs::create_dir_all(&mine).expect("scratch dir");
            let img = build_busybox(&mine.join("layout"), "latest");
            std::fs::write(mine.join("digest"), &img.digest).expect("write digest");
            if std::fs::rename(&mine, &done).is_err() {
                // Another process finished first (same bytes).
                let _ = std::fs::remove_dir_all(&mine);
            }
        }
        let digest = std::fs::read_to_string(done.join("digest")).expect("read digest");
        BusyboxImage {
            layout: done.join("layout"),
            tar: done.join("layout.tar"),
            digest,
        }
    })
}

/// The busybox OCI layout tar (its index names the image only by the tag `latest`).
pub fn busybox_layout() -> PathBuf {
    busybox().tar.clone()
}

pub struct Registry {
    pub port: u16,
    dir: TempDir,
    child: Child,
}

/// A raw HTTP/1.0 exchange with the registry: (status, headers lowercased, body).
pub fn http(port: u16, method: &str, path: &str, headers: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_lowercase(), body.to_string()))
}

fn free_port() -> u16 {
    skiff::store::free_loopback_ports(1).expect("free port")[0]
}

impl Registry {
    pub fn start() -> Registry {
        // The port is free when chosen but may be taken before the registry binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: skiff-tests\n",
                    dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log);
            {
                use std::os::unix::process::CommandExt;
                // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
            }
            let child = cmd.spawn().expect("spawn docker-registry");
            let mut reg = Registry { port, dir, child };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if http(port, "GET", "/v2/", "").is_some_and(|(s, _, _)| s == 200) {
                    return reg;
                }
                if let Ok(Some(status)) = reg.child.try_wait() {
                    let log = reg.log();
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("docker-registry exited: {status}\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "docker-registry not answering on port {port} within 15 s\n{}",
                    reg.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("docker-registry could not get a free port in 3 tries");
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes the busybox image as `repo_tag` (`busybox:latest`); returns its full reference.
    pub fn push_busybox(&self, repo_tag: &str) -> String {
        let reference = format!("{}/{repo_tag}", self.host());
        let out = Command::new("skopeo")
            .args(["copy", "--insecure-policy", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", busybox().layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        reference
    }

    /// The registry's `Docker-Content-Digest` for `repo:tag`.
    pub fn manifest_digest(&self, repo: &str, tag: &str) -> String {
        let accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n";
        let (status, head, _) = http(
            self.port,
            "HEAD",
            &format!("/v2/{repo}/manifests/{tag}"),
            accept,
        )
        .expect("HEAD manifest");
        assert_eq!(status, 200, "HEAD {repo}:{tag}: {head}");
        head.lines()
            .find_map(|l| l.strip_prefix("docker-content-digest:"))
            .map(|d| d.trim().to_string())
            .expect("Docker-Content-Digest header")
    }

    /// Deletes a blob from a repository; returns the HTTP status.
    pub fn delete_blob(&self, repo: &str, digest: &str) -> u16 {
        http(
            self.port,
            "DELETE",
            &format!("/v2/{repo}/blobs/{digest}"),
            "",
        )
        .expect("DELETE blob")
        .0
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
