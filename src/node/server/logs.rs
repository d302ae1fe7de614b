//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log from its CRI log
//! file, optionally followed as it grows.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::crilog::{LogLine, Parser};
use super::{ContainerPath, NodeServer, ServerError};
use crate::node::layout::{ContainerRecord, NodeDirs};

/// How often a followed log is checked for growth and for its container ending.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 64 * 1024;

/// The query of a log request (upstream's `PodLogOptions`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<u64>,
}

/// Go's `strconv.ParseBool`, which upstream uses for these flags.
fn parse_bool(key: &str, v: &str) -> Result<bool, ServerError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ServerError::BadRequest(format!(
            "{key}: invalid boolean {v:?}"
        ))),
    }
}

fn parse_int(key: &str, v: &str) -> Result<i64, ServerError> {
    v.parse()
        .map_err(|_| ServerError::BadRequest(format!("{key}: invalid integer {v:?}")))
}

impl LogOptions {
    pub fn parse(query: &str) -> Result<Self, ServerError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| ServerError::BadRequest(format!("invalid query: {e}")))?
            .into_inner();
        let mut o = LogOptions::default();
        for (k, v) in &pairs {
            match k.as_str() {
                "follow" => o.follow = parse_bool(k, v)?,
                "previous" => o.previous = parse_bool(k, v)?,
                "timestamps" => o.timestamps = parse_bool(k, v)?,
                "tailLines" => {
                    let n = parse_int(k, v)?;
                    let n = usize::try_from(n).map_err(|_| {
                        ServerError::BadRequest(format!(
                            "tailLines: Invalid value: {n}: must be greater than or equal to 0"
                        ))
                    })?;
                    o.tail = Some(n);
                }
                "limitBytes" => {
                    let n = parse_int(k, v)?;
                    if n <= 0 {
                        return Err(ServerError::BadRequest(format!(
                            "limitBytes: Invalid value: {n}: must be greater than 0"
                        )));
                    }
                    o.limit_bytes = u64::try_from(n).ok();
                }
                "sinceSeconds" => {
                    let n = parse_int(k, v)?;
                    if n <= 0 {
                        return Err(ServerError::BadRequest(format!(
                            "sinceSeconds: Invalid value: {n}: must be greater than 0"
                        )));
                    }
                    let since = jiff::Timestamp::now()
                        .checked_sub(jiff::SignedDuration::from_secs(n))
                        .unwrap_or(jiff::Timestamp::MIN);
                    o.since = Some(since);
                }
                "sinceTime" => {
                    let t = v.parse().map_err(|e| {
                        ServerError::BadRequest(format!("sinceTime: invalid time {v:?}: {e}"))
                    })?;
                    o.since = Some(t);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

pub async fn container_logs(
    req: HttpRequest,
    st: web::Data<NodeServer>,
    path: ContainerPath,
) -> Result<HttpResponse, ServerError> {
    let opts = LogOptions::parse(req.query_string())?;
    let (ns, pod, container) = path.into_inner();
    let (rec, current) = st.lookup(&ns, &pod, &container).await?;
    let previous_missing = || {
        ServerError::BadRequest(format!(
            "previous terminated container \"{container}\" in pod \"{pod}\" not found"
        ))
    };
    let attempt = if opts.previous {
        current
            .attempt
            .checked_sub(1)
            .ok_or_else(previous_missing)?
    } else {
        current.attempt
    };
    let file = st.dirs.log_path(&rec.uid, &container, attempt);
    if opts.previous && !file.exists() {
        return Err(previous_missing());
    }
    // A previous container has ended: there is nothing to follow.
    let watch = (opts.follow && !opts.previous).then(|| Watch {
        dirs: st.dirs.clone(),
        uid: rec.uid.clone(),
        container: container.clone(),
        current,
    });
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    actix_web::rt::spawn(async move {
        if let Err(e) = stream_log(file, opts, watch, tx).await {
            tracing::warn!(pod = %format!("{ns}/{pod}"), %container, "reading log: {e}");
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, io::Error>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .streaming(body))
}

/// The container a follow ends with.
struct Watch {
    dirs: NodeDirs,
    uid: String,
    container: String,
    current: ContainerRecord,
}

impl Watch {
    /// The container exited, was replaced by a restart, or its pod is gone.
    fn ended(&self) -> bool {
        match self.dirs.read_record(&self.uid) {
            Err(_) => true,
            Ok(r) => {
                r.containers.get(&self.container) != Some(&self.current)
                    || self
                        .dirs
                        .bundle(&self.uid, &self.current.id)
                        .join("exit")
                        .exists()
            }
        }
    }
}

/// Renders lines to the response, honouring `sinceSeconds`/`sinceTime` and `limitBytes`.
struct Sink {
    tx: mpsc::Sender<Bytes>,
    timestamps: bool,
    since: Option<jiff::Timestamp>,
    remaining: Option<u64>,
}

impl Sink {
    /// `false`: stop, the client is gone or the byte limit is reached.
    async fn send<'a>(&mut self, lines: impl IntoIterator<Item = &'a LogLine>) -> bool {
        let mut buf = Vec::new();
        for l in lines {
            if let Some(since) = self.since {
                if l.timestamp().is_none_or(|t| t < since) {
                    continue;
                }
            }
            l.render(self.timestamps, &mut buf);
        }
        if buf.is_empty() {
            return !self.tx.is_closed();
        }
        let mut more = true;
        if let Some(rem) = self.remaining.as_mut() {
            let len = buf.len() as u64;
            if len >= *rem {
                buf.truncate(usize::try_from(*rem).unwrap_or(usize::MAX));
                more = false;
            }
            *rem = rem.saturating_sub(len);
        }
        self.tx.send(Bytes::from(buf)).await.is_ok() && more
    }
}

async fn open(path: &PathBuf) -> io::Result<Option<tokio::fs::File>> {
    match tokio::fs::File::open(path).await {
        Ok(f) => Ok(Some(f)),
        // Not written yet: the container has not started.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads what `file` has beyond its position into whole lines.
async fn read_new(
    file: &mut tokio::fs::File,
    parser: &mut Parser,
    buf: &mut [u8],
) -> io::Result<Vec<LogLine>> {
    let mut lines = Vec::new();
    loop {
        let n = file.read(buf).await?;
        if n == 0 {
            return Ok(lines);
        }
        parser.feed(&buf[..n], &mut lines);
        if lines.len() >= 1024 {
            return Ok(lines);
        }
    }
}

async fn stream_log(
    path: PathBuf,
    opts: LogOptions,
    watch: Option<Watch>,
    tx: mpsc::Sender<Bytes>,
) -> io::Result<()> {
    let mut sink = Sink {
        tx,
        timestamps: opts.timestamps,
        since: opts.since,
        remaining: opts.limit_bytes,
    };
    let mut parser = Parser::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut file = open(&path).await?;
    // What the file holds now; only the last `tailLines` are kept when asked.
    let mut tail: Option<VecDeque<LogLine>> = opts.tail.map(|_| VecDeque::new());
    if let Some(f) = file.as_mut() {
        loop {
            let lines = read_new(f, &mut parser, &mut buf).await?;
            if lines.is_empty() {
                break;
            }
            match (tail.as_mut(), opts.tail) {
                (Some(t), Some(n)) => {
                    for l in lines {
                        if t.len() == n {
                            t.pop_front();
                        }
                        if n > 0 {
                            t.push_back(l);
                        }
                    }
                }
                _ => {
                    if !sink.send(&lines).await {
                        return Ok(());
                    }
                }
            }
        }
    }
    if let Some(t) = tail {
        if !sink.send(&t).await {
            return Ok(());
        }
    }
    let Some(watch) = watch else {
        return Ok(());
    };
    let mut tick = tokio::time::interval(FOLLOW_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Checked before reading, so that the last read drains what was written before the end.
        let ended = watch.ended();
        if file.is_none() {
            file = open(&path).await?;
        }
        if let Some(f) = file.as_mut() {
            loop {
                let lines = read_new(f, &mut parser, &mut buf).await?;
                if lines.is_empty() {
                    break;
                }
                if !sink.send(&lines).await {
                    return Ok(());
                }
            }
        }
        if ended || sink.tx.is_closed() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_options() {
        let o = LogOptions::parse(
            "follow=true&tailLines=10&timestamps=1&previous=false&limitBytes=5&container=x",
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail, o.limit_bytes), (Some(10), Some(5)));
        let o = LogOptions::parse("sinceTime=2026-11-28T18:34:09Z").unwrap();
        assert_eq!(o.since.map(|t| t.as_second()), Some(1_795_890_849));
        assert!(LogOptions::parse("tailLines=-1").is_err());
        assert!(LogOptions::parse("follow=maybe").is_err());
        assert!(LogOptions::parse("limitBytes=0").is_err());
    }
}
