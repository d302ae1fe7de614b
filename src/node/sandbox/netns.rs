//! Named network namespaces, the way `ip netns` keeps them: a bind mount of a thread's
//! `/proc/thread-self/ns/net` onto a file, so the namespace outlives every process in it and
//! containers can join it by path.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::SandboxError;

fn sys(what: &str, path: &Path, e: nix::Error) -> SandboxError {
    SandboxError::Sys(format!("{what} {}: {e}", path.display()))
}

/// Creates the namespace at `path` (idempotent: an existing namespace is kept).
pub fn create(path: &Path) -> Result<(), SandboxError> {
    if is_mounted(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let target = path.to_path_buf();
    // unshare() changes the calling thread only; a scratch thread keeps ours untouched.
    std::thread::spawn(move || -> Result<(), SandboxError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare", &target, e))?;
        mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| sys("bind mount", &target, e))
    })
    .join()
    .map_err(|_| SandboxError::Sys("netns thread panicked".into()))?
    .inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

/// Whether `path` is a namespace bind mount (and not the empty file left by a crash).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|p| p == want))
}

/// Unmounts and removes the namespace file; missing is fine.
pub fn remove(path: &Path) -> Result<(), SandboxError> {
    if is_mounted(path) {
        umount2(path, MntFlags::MNT_DETACH).map_err(|e| sys("umount", path, e))?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Runs `f` on a thread that has entered the namespace at `path`: sockets (netlink too)
/// created there belong to that namespace.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, SandboxError> + Send + 'static,
) -> Result<T, SandboxError> {
    let ns = File::open(path)?;
    let path: PathBuf = path.to_path_buf();
    std::thread::spawn(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| sys("setns", &path, e))?;
        f()
    })
    .join()
    .map_err(|_| SandboxError::Sys("netns thread panicked".into()))?
}
