//! A real container run by runc from a busybox rootfs, deleted when dropped (also when the
//! test fails). Needs root, runc and Debian's busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const RUNC: &str = "/usr/sbin/runc";
pub const BUSYBOX: &str = "/usr/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "sleep", "hostname", "stty", "test", "ps",
];

/// Whether containers can be run here; with `SKIFF_E2E_REQUIRED=1` a missing piece fails.
pub fn available() -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("root")
    } else if !Path::new(RUNC).exists() {
        Some(RUNC)
    } else if !Path::new(BUSYBOX).exists() {
        Some(BUSYBOX)
    } else {
        None
    };
    let Some(missing) = missing else {
        return true;
    };
    assert!(
        std::env::var("SKIFF_E2E_REQUIRED").as_deref() != Ok("1"),
        "container tests need {missing} (SKIFF_E2E_REQUIRED=1)"
    );
    eprintln!("skipping: container tests need {missing}");
    false
}

/// A running container `id` under the runc state directory `root`.
pub struct Container {
    pub root: PathBuf,
    pub id: String,
}

impl Container {
    /// Builds the bundle (busybox rootfs, `/etc/hostname` = `hostname`) and starts
    /// `sleep` in it, detached.
    pub fn run(root: &Path, id: &str, bundle: &Path, hostname: &str) -> Self {
        let c = Container {
            root: root.to_path_buf(),
            id: id.to_string(),
        };
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs/bin");
        std::fs::create_dir_all(rootfs.join("etc")).expect("rootfs/etc");
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet");
        }
        std::fs::write(rootfs.join("etc/hostname"), format!("{hostname}\n")).expect("hostname");
        let out = Command::new(RUNC)
            .arg("spec")
            .arg("--bundle")
            .arg(bundle)
            .output()
            .expect("runc spec");
        assert!(out.status.success(), "runc spec: {out:?}");
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "100000"]);
        spec["hostname"] = hostname.into();
        std::fs::write(&path, spec.to_string()).expect("write config.json");
        let status = Command::new(RUNC)
            .arg("--root")
            .arg(root)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("runc run");
        assert!(status.success(), "runc run {id}: {status}");
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new(RUNC)
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
