//! The container runtime: runc driven through per-container shims, OCI bundles built with
//! `oci-spec`, root filesystems as overlay mounts of the image's layers.

pub mod bundle;
pub mod devices;
pub mod rootfs;
pub mod seccomp;
pub mod shim;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

pub use shim::ExitRecord;

#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The container could not be created or started (bad command, missing binary, ...).
    #[error("{0}")]
    Start(String),
    #[error("runc {op}: {message}")]
    Runc { op: &'static str, message: String },
    #[error("bundle: {0}")]
    Bundle(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Force-deletes every container under a runc state root (teardown: `skiff lab down`,
/// tests); errors are ignored, what cannot be removed stays listed by `runc list`.
pub fn delete_all(root: &Path) {
    let Ok(out) = std::process::Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output()
    else {
        return;
    };
    for id in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(root)
            .args(["delete", "-f", id])
            .output();
    }
}

#[derive(Clone, Debug)]
pub struct Runtime {
    pub runc: PathBuf,
    pub root: PathBuf,
    /// This executable (the shim is `skiff shim`).
    pub exe: PathBuf,
}

/// `runc state` / `runc list` entries.
#[derive(Clone, Debug, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub status: String,
}

impl Runtime {
    pub fn new(runc: PathBuf, root: PathBuf) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&root)?;
        let exe = std::env::current_exe()?;
        Ok(Runtime { runc, root, exe })
    }

    fn runc(&self) -> Command {
        let mut c = Command::new(&self.runc);
        c.arg("--root").arg(&self.root).kill_on_drop(false);
        c
    }

    /// Starts the container of `bundle` through a new shim; returns the container's PID once
    /// its process runs.
    pub async fn start(&self, id: &str, bundle: &Path, log: &Path) -> Result<i32, RuntimeError> {
        let mut child = Command::new(&self.exe)
            .arg("shim")
            .arg("--runtime")
            .arg(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(bundle)
            .arg("--log")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(bundle.join("shim.log"))?)
            .spawn()?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            // EOF comes when the detached shim has reported and closed its end.
            stdout.read_to_string(&mut out).await?;
        }
        let _ = child.wait().await;
        let line = out.lines().next().unwrap_or("").trim();
        match line.strip_prefix("ok ") {
            Some(pid) => pid
                .parse()
                .map_err(|_| RuntimeError::Start(format!("shim said {line:?}"))),
            None => Err(RuntimeError::Start(
                line.strip_prefix("error: ")
                    .unwrap_or("the shim exited without a report")
                    .to_string(),
            )),
        }
    }

    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let out = self.runc().args(["kill", id, signal]).output().await?;
        if out.status.success() {
            return Ok(());
        }
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // A container that already stopped cannot be signalled: nothing to do.
        if message.contains("not running") || message.contains("does not exist") {
            return Ok(());
        }
        Err(RuntimeError::Runc {
            op: "kill",
            message,
        })
    }

    /// Removes the container from runc (killing it if still running); missing is fine.
    pub async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let out = self.runc().args(["delete", "-f", id]).output().await?;
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if out.status.success() || message.contains("does not exist") {
            return Ok(());
        }
        Err(RuntimeError::Runc {
            op: "delete",
            message,
        })
    }

    pub async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let out = self
            .runc()
            .args(["list", "--format", "json"])
            .output()
            .await?;
        if !out.status.success() {
            return Err(RuntimeError::Runc {
                op: "list",
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // runc prints `null` when there are none.
        Ok(
            serde_json::from_slice::<Option<Vec<ContainerState>>>(&out.stdout)
                .map_err(|e| RuntimeError::Runc {
                    op: "list",
                    message: e.to_string(),
                })?
                .unwrap_or_default(),
        )
    }
}

/// The exit record, once the container has exited.
pub fn exited(bundle: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(shim::exit_path(bundle)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl Runtime {
    /// Runs `cmd` in the container (probes): Ok on exit status 0, else the output.
    pub async fn exec_status(&self, id: &str, cmd: &[String]) -> Result<(), String> {
        if cmd.is_empty() {
            return Err("exec probe has no command".into());
        }
        let out = self
            .runc()
            .args(["exec", id])
            .args(cmd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Err(format!(
            "command {cmd:?} exited with {}: {}",
            out.status.code().unwrap_or(-1),
            text.trim()
        ))
    }
}
