//! Network namespaces, links and processes of the lab, through iproute2 (`ip netns add` also
//! makes the /run/netns bind mount other tools expect).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LabError;

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String, LabError> {
    let out = cmd.output().map_err(|e| LabError::Command {
        cmd: format!("{cmd:?}"),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: format!("{cmd:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").args(args))
}

pub fn path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// A namespace with loopback up.
pub fn add(name: &str) -> Result<(), LabError> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

pub fn delete(name: &str) -> Result<(), LabError> {
    if exists(name) {
        ip(&["netns", "del", name])?;
    }
    Ok(())
}

/// Processes whose network namespace is `name`.
pub fn pids(name: &str) -> Vec<i32> {
    if !exists(name) {
        return Vec::new();
    }
    ip(&["netns", "pids", name])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Starts `cmd` detached (own session, no terminal) inside namespace `ns` (or the root
/// namespace), output appended to `log`; returns its pid.
pub fn spawn(ns: Option<&str>, mut cmd: Command, log: &Path) -> Result<u32, LabError> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let file = ns.map(|n| File::open(path(n))).transpose()?;
    // SAFETY: setns and setsid are async-signal-safe; the fd outlives the closure's use.
    unsafe {
        cmd.pre_exec(move || {
            use std::os::fd::AsRawFd;
            if let Some(f) = &file {
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| LabError::Command {
        cmd: format!("{cmd:?}"),
        stderr: e.to_string(),
    })?;
    Ok(child.id())
}

pub fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// SIGTERM, then SIGKILL for what is still there after `grace`.
pub fn stop(pids: &[i32], grace: Duration) {
    for &p in pids {
        // SAFETY: plain kill(2) on a pid.
        unsafe { libc::kill(p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        // SAFETY: plain kill(2) on a pid.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

/// Whether `pid` runs `skiff` (or the program named `exe`), so a recycled pid is not killed.
pub fn runs(pid: i32, exe: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            c.split(|&b| b == 0)
                .next()
                .map(|a| String::from_utf8_lossy(a).into_owned())
        })
        .is_some_and(|argv0| {
            Path::new(&argv0)
                .file_name()
                .is_some_and(|f| f.to_string_lossy() == exe)
        })
}
