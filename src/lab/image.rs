//! The lab's registry (Debian's `docker-registry`) in the underlay namespace, preloaded with
//! the busybox image built offline by scripts/build-busybox-image.sh (embedded, so the binary
//! works outside the source tree).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{self, run};
use super::plan::{IMAGE, REGISTRY};
use super::LabError;

const BUILD_SCRIPT: &str = include_str!("../../scripts/build-busybox-image.sh");

/// Starts the registry in the underlay namespace `ul`; returns its pid.
pub fn start_registry(dir: &Path, ul: &str) -> Result<u32, LabError> {
    let root = dir.join("registry");
    std::fs::create_dir_all(&root)?;
    let cfg = root.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REGISTRY}\n",
            root.join("data").display()
        ),
    )?;
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&cfg);
    let pid = netns::spawn(Some(ul), cmd, &root.join("registry.log"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let probe = format!("http://{REGISTRY}/v2/");
    loop {
        let ok = Command::new("nsenter")
            .arg(format!("--net={}", netns::path(ul).display()))
            .args(["busybox", "wget", "-q", "-O", "/dev/null", &probe])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "registry not answering on {REGISTRY} within 20 s (see {})",
                root.join("registry.log").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds the busybox image and pushes it as `IMAGE` from the underlay namespace `ul`.
pub fn preload(dir: &Path, ul: &str) -> Result<(), LabError> {
    let layout = dir.join("busybox");
    let script = dir.join("build-busybox-image.sh");
    std::fs::write(&script, BUILD_SCRIPT)?;
    run(Command::new("bash").arg(&script).arg(&layout))?;
    run(Command::new("nsenter")
        .arg(format!("--net={}", netns::path(ul).display()))
        .args([
            "skopeo",
            "copy",
            "--quiet",
            "--insecure-policy",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{IMAGE}")))?;
    Ok(())
}
