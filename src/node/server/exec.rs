//! `GET|POST /exec/{namespace}/{pod}/{container}?command=..`: a WebSocket
//! (`*.channel.k8s.io`) running `runc exec` in the container, with stdio on channels 0-2, the
//! exit status on channel 3 and terminal resizes on channel 4.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::time::Duration;

use actix_web::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::channel::{self, frame, Outcome, Protocol, Size};
use super::tty::{self, Terminal};
use super::{ContainerPath, NodeServer, ServerError};

/// How long a command whose client went away gets between SIGTERM and SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);
/// How long output may keep flowing after the command exited (a background child may hold
/// the pipes open).
const DRAIN: Duration = Duration::from_secs(5);
/// kubectl writes stdin in chunks of at most 32 KiB; leave room.
const MAX_FRAME: usize = 1 << 20;

/// The query of an exec request (upstream's `PodExecOptions`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    pub fn parse(query: &str) -> Result<Self, ServerError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| ServerError::BadRequest(format!("invalid query: {e}")))?
            .into_inner();
        let flag = |v: &str| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True");
        let mut o = ExecOptions::default();
        for (k, v) in pairs {
            match k.as_str() {
                "command" => o.command.push(v),
                "stdin" => o.stdin = flag(&v),
                "stdout" => o.stdout = flag(&v),
                "stderr" => o.stderr = flag(&v),
                "tty" => o.tty = flag(&v),
                _ => {}
            }
        }
        if o.command.is_empty() {
            return Err(ServerError::BadRequest(
                "you must specify at least 1 command".into(),
            ));
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(ServerError::BadRequest(
                "you must specify at least one of stdin, stdout, stderr".into(),
            ));
        }
        // A terminal has one output stream.
        if o.tty {
            o.stderr = false;
        }
        Ok(o)
    }
}

fn is_websocket(req: &HttpRequest) -> bool {
    req.headers()
        .get("upgrade")
        .and_then(|u| u.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

pub async fn exec(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<NodeServer>,
    path: ContainerPath,
) -> Result<HttpResponse, ServerError> {
    let opts = ExecOptions::parse(req.query_string())?;
    if !is_websocket(&req) {
        return Err(ServerError::BadRequest(
            "exec needs a WebSocket upgrade (v5.channel.k8s.io); SPDY is not supported".into(),
        ));
    }
    let offered = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|h| h.to_str().ok());
    let proto = Protocol::negotiate(offered).map_err(ServerError::BadRequest)?;
    let (ns, pod, container) = path.into_inner();
    let (_, current) = st.lookup(&ns, &pod, &container).await?;
    let (mut resp, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ServerError::BadRequest(format!("WebSocket handshake: {e}")))?;
    if let Some(p) = proto {
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p.name()));
    }
    tracing::debug!(pod = %format!("{ns}/{pod}"), %container, command = ?opts.command, "exec");
    let job = Job {
        proto: proto.unwrap_or(Protocol::V1),
        opts,
        runtime: st.runtime.clone(),
        root: st.dirs.runc_root(),
        id: current.id,
    };
    let stream = stream.max_frame_size(MAX_FRAME).aggregate_continuations();
    actix_web::rt::spawn(job.run(session, stream));
    Ok(resp)
}

/// One exec session.
struct Job {
    proto: Protocol,
    opts: ExecOptions,
    runtime: PathBuf,
    root: PathBuf,
    /// runc container id.
    id: String,
}

type Reader = Box<dyn AsyncRead + Unpin>;
type Writer = Box<dyn AsyncWrite + Unpin>;

/// A running `runc exec` and its streams.
struct Started {
    child: Child,
    stdin: Option<Writer>,
    outputs: Vec<(u8, Reader)>,
    terminal: Option<Rc<Terminal>>,
}

impl Job {
    async fn run(self, mut session: Session, stream: AggregatedMessageStream) {
        let outcome = match self.start().await {
            Ok(started) => self.drive(started, &session, stream).await,
            Err(message) => {
                tracing::warn!(id = %self.id, "exec: {message}");
                Outcome::Failed(message)
            }
        };
        if let Some(p) = channel::status_payload(self.proto, &outcome, &self.opts.command) {
            let _ = session.binary(frame(channel::ERROR, &p)).await;
        }
        let _ = session.close(Some(channel::normal_close())).await;
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root").arg(&self.root).arg("exec");
        if self.opts.tty {
            cmd.args(["--tty", "--env", "TERM=xterm"]);
        }
        cmd.arg(&self.id)
            .args(&self.opts.command)
            .kill_on_drop(true);
        cmd
    }

    async fn start(&self) -> Result<Started, String> {
        let mut cmd = self.command();
        let spawn_err = |e: io::Error| format!("running {}: {e}", self.runtime.display());
        if !self.opts.tty {
            let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
            cmd.stdin(pipe(self.opts.stdin))
                .stdout(pipe(self.opts.stdout))
                .stderr(pipe(self.opts.stderr));
            let mut child = cmd.spawn().map_err(spawn_err)?;
            let mut outputs: Vec<(u8, Reader)> = Vec::new();
            if let Some(o) = child.stdout.take() {
                outputs.push((channel::STDOUT, Box::new(o)));
            }
            if let Some(e) = child.stderr.take() {
                outputs.push((channel::STDERR, Box::new(e)));
            }
            let stdin = child.stdin.take().map(|i| Box::new(i) as Writer);
            return Ok(Started {
                child,
                stdin,
                outputs,
                terminal: None,
            });
        }
        let term_err = |e: io::Error| format!("terminal: {e}");
        let (terminal, slave) = tty::open().map_err(term_err)?;
        cmd.stdin(slave.stdio().map_err(term_err)?)
            .stdout(slave.stdio().map_err(term_err)?)
            .stderr(slave.stdio().map_err(term_err)?);
        // SAFETY: the hook only makes async-signal-safe system calls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(tty::make_controlling);
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        // Only runc may hold the slave: the master reads EIO (the end) once runc is gone.
        drop(cmd);
        drop(slave);
        let mut outputs: Vec<(u8, Reader)> = Vec::new();
        if self.opts.stdout {
            outputs.push((
                channel::STDOUT,
                Box::new(terminal.file().map_err(term_err)?),
            ));
        }
        let stdin = if self.opts.stdin {
            Some(Box::new(terminal.file().map_err(term_err)?) as Writer)
        } else {
            None
        };
        Ok(Started {
            child,
            stdin,
            outputs,
            terminal: Some(Rc::new(terminal)),
        })
    }

    /// Relays the streams until the command exits (or the client leaves), then its status.
    async fn drive(
        &self,
        mut p: Started,
        session: &Session,
        stream: AggregatedMessageStream,
    ) -> Outcome {
        // As upstream: an empty frame on the first output channel says the streams are ready.
        if let Some((ch, _)) = p.outputs.first() {
            let _ = session.clone().binary(frame(*ch, &[])).await;
        }
        let pumps: Vec<_> = p
            .outputs
            .drain(..)
            .map(|(ch, r)| actix_web::rt::spawn(pump(ch, r, session.clone())))
            .collect();
        let mut input = actix_web::rt::spawn(read_client(
            stream,
            session.clone(),
            p.stdin.take(),
            p.terminal.clone(),
            self.proto,
        ));
        let status = tokio::select! {
            s = p.child.wait() => s,
            _ = &mut input => {
                tracing::debug!(id = %self.id, "exec client left; stopping the command");
                terminate(&mut p.child).await
            }
        };
        for pump in pumps {
            let abort = pump.abort_handle();
            if tokio::time::timeout(DRAIN, pump).await.is_err() {
                abort.abort();
            }
        }
        input.abort();
        match status {
            Ok(s) => Outcome::Exited(exit_code(s)),
            Err(e) => Outcome::Failed(format!("waiting for runc exec: {e}")),
        }
    }
}

/// The shell's convention: 128 + the signal for a killed command.
fn exit_code(s: ExitStatus) -> i32 {
    s.code()
        .or_else(|| s.signal().map(|sig| 128 + sig))
        .unwrap_or(1)
}

/// SIGTERM (runc forwards it to the command), then SIGKILL after a grace period.
async fn terminate(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(TERMINATE_GRACE, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            child.kill().await?;
            child.wait().await
        }
    }
}

/// Copies one output stream to its channel until it ends.
async fn pump(ch: u8, mut r: Reader, mut session: Session) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if session.binary(frame(ch, &buf[..n])).await.is_err() {
                    return;
                }
            }
            // A terminal master reads EIO once the command's side is closed: its end.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return,
            Err(e) => {
                tracing::debug!("exec output channel {ch}: {e}");
                return;
            }
        }
    }
}

/// Handles the client's messages (stdin, resize, stream close, pings) until it leaves.
async fn read_client(
    mut stream: AggregatedMessageStream,
    mut session: Session,
    mut stdin: Option<Writer>,
    terminal: Option<Rc<Terminal>>,
    proto: Protocol,
) {
    while let Some(msg) = stream.recv().await {
        match msg {
            Ok(AggregatedMessage::Binary(data)) => {
                let Some((&ch, payload)) = data.split_first() else {
                    continue;
                };
                match ch {
                    channel::STDIN => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(payload).await.is_err() || w.flush().await.is_err() {
                                // The command closed its stdin: drop what follows.
                                stdin = None;
                            }
                        }
                    }
                    channel::RESIZE => {
                        let (Some(t), Ok(size)) =
                            (terminal.as_ref(), serde_json::from_slice::<Size>(payload))
                        else {
                            continue;
                        };
                        if let Err(e) = t.resize(size) {
                            tracing::debug!("exec resize: {e}");
                        }
                    }
                    channel::CLOSE
                        if proto == Protocol::V5 && payload.first() == Some(&channel::STDIN) =>
                    {
                        if let Some(mut w) = stdin.take() {
                            if terminal.is_some() {
                                // A terminal stays open: end-of-file is its ^D.
                                let _ = w.write_all(&[0x04]).await;
                                let _ = w.flush().await;
                            } else {
                                let _ = w.shutdown().await;
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(AggregatedMessage::Ping(p)) => {
                if session.pong(&p).await.is_err() {
                    return;
                }
            }
            Ok(AggregatedMessage::Close(_)) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("exec client stream: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_exec_query() {
        let o = ExecOptions::parse(
            "command=sh&command=-c&command=cat%3B+exit+3&container=c&stdin=true&stdout=true&stderr=true",
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "cat; exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let t = ExecOptions::parse("command=sh&stdin=1&stdout=1&stderr=1&tty=1").unwrap();
        assert!(t.tty && !t.stderr);
        assert!(ExecOptions::parse("stdout=1").is_err());
        assert!(ExecOptions::parse("command=ls").is_err());
    }
}
