//! `skiff shim`: one small process per container, the way containerd's shim works. It
//! detaches from the agent (so containers survive an agent restart), becomes the subreaper of
//! the container, runs `runc create` + `runc start` with the container's stdout/stderr on
//! pipes, reports `ok PID` (or the error) on its stdout to the agent, then writes the
//! container's output to a CRI-format log file and, when the container exits, its exit code
//! to `<bundle>/exit`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

pub struct ShimArgs {
    pub runtime: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub log: PathBuf,
}

/// What the shim leaves in `<bundle>/exit`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    #[serde(rename = "exitCode")]
    pub exit_code: i32,
    /// Set when a signal ended the process.
    pub signal: Option<i32>,
    #[serde(rename = "finishedAt")]
    pub finished_at: String,
}

pub fn exit_path(bundle: &Path) -> PathBuf {
    bundle.join("exit")
}

/// Largest log line written in one piece; longer lines are split into `P` (partial) records.
const MAX_LINE: usize = 16 * 1024;

fn now_nanos() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        .to_string()
}

/// Copies one stream into the log, a CRI record (`TIME STREAM F|P TEXT`) per line.
fn pump(src: OwnedFd, stream: &'static str, log: Arc<Mutex<File>>) {
    let mut reader = BufReader::with_capacity(MAX_LINE, File::from(src));
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let full = line.last() == Some(&b'\n');
        if full {
            line.pop();
        }
        let tag = if full { "F" } else { "P" };
        let mut rec = format!("{} {stream} {tag} ", now_nanos()).into_bytes();
        rec.extend_from_slice(&line);
        rec.push(b'\n');
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(&rec);
        }
    }
}

fn report(status: &mut File, msg: &str) {
    let _ = writeln!(status, "{msg}");
}

/// Runs the shim. Returns the process exit code for the *first* process (the agent's child):
/// it exits at once, the forked shim carries on.
pub fn run(a: ShimArgs) -> i32 {
    // SAFETY: called from `main` before any thread exists.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            println!("error: fork: {e}");
            return 1;
        }
    }
    let _ = setsid();
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // stdout is the agent's status pipe; keep it as a File and point fd 1 elsewhere so no
    // child holds the pipe open.
    let Ok(dup) = nix::unistd::dup(std::io::stdout()) else {
        return 1;
    };
    let mut status = File::from(dup);
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1, which this process owns.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    match start(&a) {
        Ok((pid, pumps)) => {
            report(&mut status, &format!("ok {pid}"));
            drop(status);
            wait(&a, pid, pumps);
            0
        }
        Err(msg) => {
            report(&mut status, &format!("error: {}", msg.replace('\n', " ")));
            1
        }
    }
}

type Pumps = Vec<std::thread::JoinHandle<()>>;

fn start(a: &ShimArgs) -> Result<(i32, Pumps), String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.log)
        .map_err(|e| format!("log {}: {e}", a.log.display()))?;
    let log = Arc::new(Mutex::new(log));
    let (out_r, out_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let pid_file = a.bundle.join("pid");
    let runc = |args: &[&str]| {
        let mut c = Command::new(&a.runtime);
        c.arg("--root").arg(&a.root).args(args);
        c
    };
    let created = runc(&["create", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(&a.bundle)
        .arg(&a.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status()
        .map_err(|e| format!("{}: {e}", a.runtime.display()))?;
    if !created.success() {
        // runc's own error went to the stderr pipe; nothing else writes there yet.
        drop(out_r);
        let mut msg = String::new();
        let _ = File::from(err_r).read_to_string(&mut msg);
        return Err(format!("runc create: {}", last_runc_message(&msg)));
    }
    let pumps = vec![
        {
            let log = log.clone();
            std::thread::spawn(move || pump(out_r, "stdout", log))
        },
        std::thread::spawn(move || pump(err_r, "stderr", log)),
    ];
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or("runc create wrote no pid")?;
    let out = runc(&["start", &a.id])
        .output()
        .map_err(|e| format!("runc start: {e}"))?;
    if !out.status.success() {
        let _ = runc(&["delete", "-f", &a.id]).status();
        return Err(format!(
            "runc start: {}",
            last_runc_message(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    Ok((pid, pumps))
}

/// runc prints JSON log lines or plain text; the last line carries the reason.
fn last_runc_message(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed");
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("msg").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| line.trim().to_string())
}

/// Reaps everything reparented to the shim until the container's init exits.
fn wait(a: &ShimArgs, pid: i32, pumps: Pumps) {
    let (code, signal) = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => break (c, None),
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => {
                break (128 + s as i32, Some(s as i32))
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // ECHILD: the init is not our child (should not happen); report unknown.
            Err(_) => break (255, None),
        }
    };
    for p in pumps {
        let _ = p.join();
    }
    let rec = ExitRecord {
        exit_code: code,
        signal,
        finished_at: crate::api_time_now(),
    };
    if let Ok(bytes) = serde_json::to_vec(&rec) {
        let path = exit_path(&a.bundle);
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(tmp, path);
        }
    }
}
