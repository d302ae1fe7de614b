//! The audit log: one JSON line per request the policy (`policy.rs`, upstream's
//! `audit.k8s.io/v1` Policy) gives a level, reads and long-running ones (exec, attach,
//! port-forward, logs, watches) and the join endpoint included, refused and failed ones too,
//! in upstream's Event format: who, what, from where, and the outcome; the request body at
//! Request level and the response too at RequestResponse. Without a policy file every
//! request but health checks is logged at Metadata, never with bodies (they hold secrets).
//!
//! Requests never wait for the disk: events go through a bounded channel to one writer
//! thread that appends them to the file (mode 0600) and rotates it when it would grow past
//! `api.audit_log_max_size_mb`, keeping `api.audit_log_max_backups` old files (`<path>.1` the
//! newest). When the channel is full the event is dropped, counted
//! (`apiserver_audit_event_dropped_total`) and logged (once per run of drops).
//!
//! [`record`] must be the outermost middleware (the last `.wrap`), so that it also sees the
//! requests refused by authentication and the in-flight limiter, and [`tap`] the innermost
//! (the first `.wrap`): an error answer from a middleware ends the request without a
//! response to read the user from, so the user is noted on the way in.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, SyncSender};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use prometheus::{IntCounter, Registry};
use serde::Serialize;
use tracing::{info, warn};

use super::auth::{Decision, UserInfo};
use super::request::info::RequestInfo;
use super::status::ApiError;
use crate::config::ApiConfig;
use policy::{Level, Policy};

pub mod policy;

/// Events waiting for the writer; more are dropped (and counted).
const QUEUE: usize = 10_000;

/// Error bodies larger than this are not read for their `reason`.
const STATUS_BODY_LIMIT: usize = 64 << 10;

/// One `audit.k8s.io/v1` Event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: String,
    verb: String,
    user: UserInfo,
    #[serde(rename = "sourceIPs")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef>,
    response_status: ResponseStatus,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

/// What a request is about (upstream's `ObjectReference` of an audit event).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    subresource: String,
}

/// The outcome: the status code, and for failures the Status' reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResponseStatus {
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Who asked and what authorization said, as far as the middlewares inside got.
#[derive(Default)]
struct Seen {
    user: Option<UserInfo>,
    decision: Option<Decision>,
    /// What admission plugins added (PodSecurity's policy and violations).
    annotations: Vec<(&'static str, String)>,
}

/// Put into an audited request's extensions; [`note_user`] fills it.
struct Slot(Rc<RefCell<Seen>>);

fn now() -> String {
    format!("{:.6}", jiff::Timestamp::now())
}

/// The object of a resource request, as an audit event names it.
fn object_ref(info: &RequestInfo) -> Option<ObjectRef> {
    info.resource_request.then(|| ObjectRef {
        resource: info.resource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        api_group: info.group.clone(),
        api_version: info.version.clone(),
        subresource: info.subresource.clone(),
    })
}

fn header<'a>(req: &'a ServiceRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `X-Forwarded-For`, `X-Real-Ip`, then the connection's peer, as upstream lists them.
fn source_ips(req: &ServiceRequest) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    let forwarded = header(req, "x-forwarded-for").into_iter();
    let candidates = forwarded
        .flat_map(|h| h.split(','))
        .chain(header(req, "x-real-ip"))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .chain(req.peer_addr().map(|a| a.ip()));
    for ip in candidates {
        let ip = ip.to_string();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    ips
}

/// The upstream reason for a status code, when the answer's body did not say.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

impl Event {
    /// The event of a request, before it is served.
    fn begin(req: &ServiceRequest, info: &RequestInfo) -> Event {
        let request_uri = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.path().to_string(), |p| p.as_str().to_string());
        let received = now();
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: uuid::Uuid::new_v4().to_string(),
            stage: "ResponseComplete",
            request_uri,
            verb: info.verb.clone(),
            user: UserInfo::anonymous(),
            source_ips: source_ips(req),
            user_agent: header(req, "user-agent").unwrap_or_default().to_string(),
            object_ref: object_ref(info),
            request_object: None,
            response_object: None,
            response_status: ResponseStatus::default(),
            stage_timestamp: received.clone(),
            request_received_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// Completes the event with the outcome. `answered`: a response came back (rather than
    /// an error from a middleware that stopped the request, such as the in-flight limiter).
    fn finish(&mut self, seen: Seen, code: u16, reason: Option<String>, answered: bool) {
        self.user = seen.user.unwrap_or_else(UserInfo::anonymous);
        if code == 101 {
            // An upgraded connection (exec, attach, port-forward) goes on after this.
            self.stage = "ResponseStarted";
        }
        self.response_status = if code >= 400 {
            ResponseStatus {
                code,
                status: Some("Failure"),
                reason: Some(reason.unwrap_or_else(|| reason_for(code).into())),
            }
        } else {
            ResponseStatus {
                code,
                ..Default::default()
            }
        };
        // Without an authorizer's word in the request, whatever was answered (and not
        // refused as unauthenticated or forbidden) was allowed.
        let decision = match seen.decision {
            Some(Decision::Allow) => Some("allow"),
            Some(_) => Some("forbid"),
            None if code == 403 => Some("forbid"),
            None if answered && code != 401 => Some("allow"),
            None => None,
        };
        if let Some(d) = decision {
            self.annotations
                .insert("authorization.k8s.io/decision", d.into());
        }
        self.annotations.extend(seen.annotations);
        self.stage_timestamp = now();
    }
}

/// Copies the request's user (and authorization decision) into its audit slot, if it has one:
/// for middlewares that end a request with an error, after which it cannot be read.
pub fn note_user(req: &ServiceRequest) {
    let ext = req.extensions();
    let Some(Slot(seen)) = ext.get::<Slot>() else {
        return;
    };
    let mut seen = seen.borrow_mut();
    if let Some(user) = ext.get::<UserInfo>() {
        seen.user = Some(user.clone());
    }
    if let Some(d) = ext.get::<Decision>() {
        seen.decision = Some(d.clone());
    }
}

/// Adds an annotation to the request's audit event, if it is audited.
pub fn annotate(req: &actix_web::HttpRequest, key: &'static str, value: String) {
    if let Some(Slot(seen)) = req.extensions().get::<Slot>() {
        seen.borrow_mut().annotations.push((key, value));
    }
}

/// The innermost middleware: notes the user once every other middleware has run.
pub async fn tap(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    note_user(&req);
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The answer's body when it is one piece (not a stream), with the Status reason of an
/// error answer and, when `keep`, the body as JSON for a RequestResponse event.
fn inspect(
    res: ServiceResponse<BoxBody>,
    keep: bool,
) -> (
    ServiceResponse<BoxBody>,
    Option<String>,
    Option<serde_json::Value>,
) {
    let failed = res.status().as_u16() >= 400;
    if !failed && !keep {
        return (res, None, None);
    }
    let (req, res) = res.into_parts();
    let (res, body) = res.into_parts();
    let (body, reason, object) = match body.try_into_bytes() {
        Ok(bytes) => {
            let parsed = (keep || bytes.len() <= STATUS_BODY_LIMIT)
                .then(|| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
                .flatten();
            let reason = parsed
                .as_ref()
                .filter(|_| failed)
                .and_then(|v| v.get("reason")?.as_str().map(String::from))
                .filter(|r| !r.is_empty());
            (BoxBody::new(bytes), reason, parsed.filter(|_| keep))
        }
        Err(body) => (body, None, None),
    };
    (
        ServiceResponse::new(req, res.set_body(body)),
        reason,
        object,
    )
}

/// Reads the request body (for a Request-level event) and puts it back for the handlers.
async fn keep_body(req: &mut ServiceRequest) -> Result<web::Bytes, ApiError> {
    let bytes = super::body::read(req.take_payload()).await?;
    req.set_payload(actix_web::dev::Payload::from(bytes.clone()));
    Ok(bytes)
}

/// The audit middleware: one event per request the policy logs, whatever its outcome.
pub async fn record(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(auditor) = req.app_data::<web::Data<Auditor>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let info = RequestInfo::parse(req.method().as_str(), req.path(), req.query_string());
    let path = req.path().to_string();
    let mut event = Event::begin(&req, &info);
    // Bodies are read ahead only when some rule could log them.
    let body = if auditor.policy.logs_bodies() {
        Some(keep_body(&mut req).await?)
    } else {
        None
    };
    let slot = Rc::new(RefCell::new(Seen::default()));
    req.extensions_mut().insert(Slot(slot.clone()));
    note_user(&req);
    let level_of = |seen: &Seen| {
        let user = seen.user.clone().unwrap_or_else(UserInfo::anonymous);
        auditor.policy.level(&user, &info, &path)
    };
    match next.call(req).await {
        Ok(res) => {
            let res = res.map_into_boxed_body();
            {
                let ext = res.request().extensions();
                let mut seen = slot.borrow_mut();
                if let Some(user) = ext.get::<UserInfo>() {
                    seen.user = Some(user.clone());
                }
                if let Some(d) = ext.get::<Decision>() {
                    seen.decision = Some(d.clone());
                }
            }
            let (level, omit) = level_of(&slot.borrow());
            let code = res.status().as_u16();
            let (mut res, reason, response) = inspect(res, level >= Level::RequestResponse);
            if let Ok(id) = HeaderValue::from_str(&event.audit_id) {
                res.headers_mut()
                    .insert(HeaderName::from_static("audit-id"), id);
            }
            event.finish(slot.take(), code, reason, true);
            event.response_object = response;
            auditor.submit(event, level, &omit, body.as_deref());
            Ok(res)
        }
        Err(e) => {
            let (level, omit) = level_of(&slot.borrow());
            let code = e.as_response_error().status_code().as_u16();
            let reason = e.as_error::<ApiError>().map(|a| a.reason().to_string());
            event.finish(slot.take(), code, reason, false);
            auditor.submit(event, level, &omit, body.as_deref());
            Err(e)
        }
    }
}

/// The audit backend: a queue to the writer thread.
#[derive(Clone)]
pub struct Auditor {
    tx: SyncSender<Event>,
    policy: std::sync::Arc<Policy>,
    events: IntCounter,
    dropped: IntCounter,
    /// Drops are logged once per run of them.
    dropping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Auditor {
    /// Opens the log at `api.audit_log_path` (resolved: not empty) and starts its writer.
    pub fn start(cfg: &ApiConfig, registry: &Registry) -> io::Result<Auditor> {
        if cfg.audit_log_path.is_empty() {
            return Err(io::Error::other("api.audit_log_path: no audit log path"));
        }
        let path = PathBuf::from(&cfg.audit_log_path);
        let max_bytes = cfg.audit_log_max_size_mb.saturating_mul(1 << 20).max(1);
        let log = LogFile::open(&path, max_bytes, cfg.audit_log_max_backups)
            .map_err(|e| io::Error::new(e.kind(), format!("audit log {}: {e}", path.display())))?;
        let policy = Policy::load(&cfg.audit_policy_file).map_err(io::Error::other)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (auditor, errors) = Auditor::new(tx, policy, registry)?;
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_events(rx, log, errors))?;
        info!(path = %path.display(), "audit log");
        Ok(auditor)
    }

    fn new(
        tx: SyncSender<Event>,
        policy: Policy,
        registry: &Registry,
    ) -> io::Result<(Auditor, IntCounter)> {
        let counter = |name: &str, help: &str| -> io::Result<IntCounter> {
            let c = IntCounter::new(name, help).map_err(io::Error::other)?;
            registry
                .register(Box::new(c.clone()))
                .map_err(io::Error::other)?;
            Ok(c)
        };
        let events = counter(
            "apiserver_audit_event_total",
            "Audit events generated (requests the audit policy logs).",
        )?;
        let dropped = counter(
            "apiserver_audit_event_dropped_total",
            "Audit events dropped because the audit log writer fell behind.",
        )?;
        let errors = counter(
            "apiserver_audit_error_total",
            "Audit events that could not be written to the audit log.",
        )?;
        Ok((
            Auditor {
                tx,
                policy: std::sync::Arc::new(policy),
                events,
                dropped,
                dropping: Default::default(),
            },
            errors,
        ))
    }

    /// Queues an event at `level` (with the request `body` from Request level on), unless
    /// the level is None or its stage is omitted; drops (counts and logs) it when the writer
    /// is behind.
    fn submit(&self, mut event: Event, level: Level, omit: &[String], body: Option<&[u8]>) {
        if level == Level::None || omit.iter().any(|s| s == event.stage) {
            return;
        }
        event.level = level.name();
        if level >= Level::Request {
            event.request_object = body.filter(|b| !b.is_empty()).map(|b| {
                serde_json::from_slice(b).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(b).into_owned())
                })
            });
        }
        self.events.inc();
        use std::sync::atomic::Ordering;
        if self.tx.try_send(event).is_err() {
            self.dropped.inc();
            if !self.dropping.swap(true, Ordering::Relaxed) {
                warn!("audit log writer is behind: events are being dropped (apiserver_audit_event_dropped_total)");
            }
        } else if self.dropping.swap(false, Ordering::Relaxed) {
            info!("audit log writer caught up");
        }
    }
}

/// The writer thread: appends every queued event, flushing when the queue is empty; ends
/// when the server (every sender) is gone.
fn write_events(rx: Receiver<Event>, mut log: LogFile, errors: IntCounter) {
    let mut failing = false;
    let mut report = |r: io::Result<()>| match r {
        Ok(()) if failing => {
            failing = false;
            info!("audit log writable again");
        }
        Ok(()) => {}
        Err(e) => {
            errors.inc();
            if !failing {
                failing = true;
                warn!(error = %e, "audit log write failed; events are lost until it recovers");
            }
        }
    };
    let mut line = Vec::with_capacity(1024);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(event) = next {
            line.clear();
            let written = serde_json::to_writer(&mut line, &event)
                .map_err(io::Error::other)
                .and_then(|()| log.write_line(&line));
            report(written);
            next = rx.try_recv().ok();
        }
        report(log.flush());
    }
    let _ = log.flush();
}

/// The audit log file, rotated by size.
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    backups: usize,
    out: Option<BufWriter<File>>,
    size: u64,
}

impl LogFile {
    pub fn open(path: &Path, max_bytes: u64, backups: usize) -> io::Result<LogFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut log = LogFile {
            path: path.to_path_buf(),
            max_bytes,
            backups,
            out: None,
            size: 0,
        };
        log.reopen()?;
        Ok(log)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        // An existing file keeps its mode on open: audit logs are for the owner only.
        file.set_permissions(Permissions::from_mode(0o600))?;
        self.size = file.metadata()?.len();
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    fn backup(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// `<path>` becomes `<path>.1`, `<path>.1` becomes `<path>.2`, ..., the oldest beyond
    /// `backups` is overwritten; a new `<path>` is started.
    fn rotate(&mut self) -> io::Result<()> {
        let flushed = match self.out.take() {
            Some(mut out) => out.flush(),
            None => Ok(()),
        };
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        let moved = if self.backups == 0 {
            ignore_missing(std::fs::remove_file(&self.path))
        } else {
            (1..self.backups)
                .rev()
                .try_for_each(|i| {
                    ignore_missing(std::fs::rename(self.backup(i), self.backup(i + 1)))
                })
                .and_then(|()| ignore_missing(std::fs::rename(&self.path, self.backup(1))))
        };
        // Whatever failed, writing goes on (into the old file if it could not be moved).
        let reopened = self.reopen();
        flushed.and(moved).and(reopened)
    }

    /// Appends one line (a newline is added), rotating first if it would not fit.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        if self.out.is_none() {
            self.reopen()?;
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("audit log not open"))?;
        let written = out.write_all(line).and_then(|()| out.write_all(b"\n"));
        if written.is_err() {
            // Start over with a fresh handle next time (the file may have been replaced).
            self.out = None;
        }
        written?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::{self, TestRequest};
    use actix_web::{App, HttpResponse, ResponseError};
    use serde_json::Value;
    use std::time::{Duration, Instant};

    fn info_of(req: &ServiceRequest) -> RequestInfo {
        RequestInfo::parse(req.method().as_str(), req.path(), req.query_string())
    }

    fn line(event: &Event) -> Value {
        let text = serde_json::to_string(event).expect("serialize");
        assert!(!text.contains('\n'), "one line per event");
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn request_paths_name_verbs_and_objects() {
        let obj = |method, path| {
            let info = RequestInfo::parse(method, path, "");
            (info.verb.clone(), object_ref(&info))
        };
        let (verb, o) = obj("POST", "/api/v1/namespaces/default/configmaps");
        let o = o.expect("an object");
        assert_eq!(verb, "create");
        assert_eq!(
            (o.resource.as_str(), o.namespace.as_str(), o.name.as_str()),
            ("configmaps", "default", "")
        );
        assert_eq!((o.api_group.as_str(), o.api_version.as_str()), ("", "v1"));
        let (verb, o) = obj("PUT", "/apis/apps/v1/namespaces/d/deployments/web/scale");
        let o = o.expect("an object");
        assert_eq!(verb, "update");
        assert_eq!(
            (o.resource.as_str(), o.name.as_str(), o.subresource.as_str()),
            ("deployments", "web", "scale")
        );
        assert_eq!(o.api_group, "apps");
        let (verb, o) = obj("POST", "/api/v1/namespaces/d/pods/p/eviction");
        assert_eq!(
            (verb.as_str(), o.expect("object").subresource.as_str()),
            ("create", "eviction")
        );
        let (verb, o) = obj("POST", "/api/v1/namespaces/d/serviceaccounts/sa/token");
        assert_eq!(
            (verb.as_str(), o.expect("object").subresource.as_str()),
            ("create", "token")
        );
        let (verb, o) = obj("DELETE", "/api/v1/namespaces/d/pods");
        assert_eq!(verb, "deletecollection");
        assert_eq!(o.expect("object").namespace, "d");
        let (verb, o) = obj("DELETE", "/api/v1/namespaces/gone");
        let o = o.expect("object");
        assert_eq!(verb, "delete");
        assert_eq!(
            (o.resource.as_str(), o.namespace.as_str(), o.name.as_str()),
            ("namespaces", "gone", "gone")
        );
        let (_, o) = obj("PUT", "/api/v1/namespaces/gone/finalize");
        let o = o.expect("object");
        assert_eq!(
            (o.resource.as_str(), o.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let (verb, o) = obj("PATCH", "/api/v1/nodes/n1/status");
        let o = o.expect("object");
        assert_eq!(verb, "patch");
        assert_eq!(
            (
                o.namespace.as_str(),
                o.name.as_str(),
                o.subresource.as_str()
            ),
            ("", "n1", "status")
        );
        assert_eq!(obj("POST", "/apis/apps"), ("post".to_string(), None));
    }

    #[test]
    fn an_event_line_reads_like_upstream() {
        let req = TestRequest::with_uri(
            "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
        )
        .method(actix_web::http::Method::POST)
        .peer_addr("10.1.2.3:5555".parse().expect("addr"))
        .insert_header(("User-Agent", "kubectl/v1.33.0"))
        .insert_header(("X-Forwarded-For", "192.0.2.7, not-an-ip"))
        .to_srv_request();
        let mut event = Event::begin(&req, &info_of(&req));
        let user = UserInfo {
            username: "admin".into(),
            uid: "u-1".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            ..Default::default()
        };
        let seen = Seen {
            user: Some(user),
            ..Default::default()
        };
        event.finish(seen, 409, Some("AlreadyExists".into()), true);
        let v = line(&event);
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(v["level"], "Metadata");
        assert_eq!(v["stage"], "ResponseComplete");
        assert_eq!(v["auditID"].as_str().map(str::len), Some(36), "a uuid");
        assert_eq!(
            v["requestURI"],
            "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create"
        );
        assert_eq!(v["verb"], "create");
        assert_eq!(v["user"]["username"], "admin");
        assert_eq!(v["user"]["uid"], "u-1");
        assert_eq!(v["user"]["groups"][0], "system:masters");
        assert_eq!(v["sourceIPs"], serde_json::json!(["192.0.2.7", "10.1.2.3"]));
        assert_eq!(v["userAgent"], "kubectl/v1.33.0");
        assert_eq!(
            v["objectRef"],
            serde_json::json!({"resource": "configmaps", "namespace": "default", "apiVersion": "v1"})
        );
        assert_eq!(
            v["responseStatus"],
            serde_json::json!({"code": 409, "status": "Failure", "reason": "AlreadyExists"})
        );
        assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "allow");
        for ts in ["requestReceivedTimestamp", "stageTimestamp"] {
            let text = v[ts].as_str().expect("a timestamp");
            // RFC 3339 in UTC with microseconds: 2006-01-02T15:04:05.000000Z
            assert_eq!(text.len(), 27, "{ts}: {text}");
            assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
            text.parse::<jiff::Timestamp>().expect("parses");
        }
        assert!(v.get("requestObject").is_none() && v.get("responseObject").is_none());

        // A success has no failure fields; a 403 is a forbid; a refusal before authorization
        // has no decision.
        let mut ok = Event::begin(&req, &info_of(&req));
        ok.finish(Seen::default(), 201, None, true);
        let v = line(&ok);
        assert_eq!(v["responseStatus"], serde_json::json!({"code": 201}));
        assert_eq!(v["user"]["username"], "system:anonymous");
        let mut forbidden = Event::begin(&req, &info_of(&req));
        forbidden.finish(Seen::default(), 403, None, true);
        let v = line(&forbidden);
        assert_eq!(v["annotations"]["authorization.k8s.io/decision"], "forbid");
        assert_eq!(v["responseStatus"]["reason"], "Forbidden");
        let mut refused = Event::begin(&req, &info_of(&req));
        refused.finish(Seen::default(), 429, None, false);
        let v = line(&refused);
        assert!(v.get("annotations").is_none(), "{v}");
        assert_eq!(v["responseStatus"]["reason"], "TooManyRequests");
    }

    fn backups(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_log_rotates_by_size_and_keeps_backups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("logs/audit.log");
        // 10 bytes a line: three fit in 30 bytes.
        let mut log = LogFile::open(&path, 30, 2).expect("open");
        for i in 0..10u8 {
            let text = format!("line-{i:03}"); // 9 bytes + newline
            log.write_line(text.as_bytes()).expect("write");
        }
        log.flush().expect("flush");
        assert_eq!(
            backups(&dir.path().join("logs")),
            vec!["audit.log", "audit.log.1", "audit.log.2"]
        );
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(&path), "line-009\n");
        assert_eq!(
            read(&dir.path().join("logs/audit.log.1")),
            "line-006\nline-007\nline-008\n"
        );
        assert_eq!(
            read(&dir.path().join("logs/audit.log.2")),
            "line-003\nline-004\nline-005\n"
        );
        for name in ["audit.log", "audit.log.1", "audit.log.2"] {
            let mode = std::fs::metadata(dir.path().join("logs").join(name))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }

        // Reopening appends to what is there, and counts it towards the limit.
        drop(log);
        let mut log = LogFile::open(&path, 30, 0).expect("reopen");
        log.write_line(b"line-010").expect("write");
        log.write_line(b"line-011").expect("write");
        log.write_line(b"line-012").expect("write");
        log.flush().expect("flush");
        assert_eq!(
            read(&path),
            "line-012\n",
            "no backups: the full log is removed"
        );
        assert_eq!(
            read(&dir.path().join("logs/audit.log.1")),
            "line-006\nline-007\nline-008\n",
            "backups of an earlier setting are left alone"
        );
    }

    #[test]
    fn an_existing_log_is_made_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "old\n").expect("write");
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        let _log = LogFile::open(&path, 1 << 20, 1).expect("open");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let registry = Registry::new();
        let (tx, rx) = mpsc::sync_channel(1);
        let (auditor, _errors) =
            Auditor::new(tx, Policy::default_policy(), &registry).expect("auditor");
        let req = TestRequest::with_uri("/api/v1/namespaces/d/configmaps")
            .method(actix_web::http::Method::POST)
            .to_srv_request();
        for _ in 0..3 {
            let event = Event::begin(&req, &info_of(&req));
            auditor.submit(event, Level::Metadata, &[], None);
        }
        assert_eq!(auditor.events.get(), 3);
        assert_eq!(auditor.dropped.get(), 2);
        assert!(rx.try_recv().is_ok());
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("apiserver_audit_event_dropped_total 2"),
            "{text}"
        );
        assert!(text.contains("apiserver_audit_event_total 3"), "{text}");
    }

    /// Waits for the writer thread to have written `n` lines.
    fn lines(path: &Path, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(Instant::now() < deadline, "{n} audit lines, got {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn refuse(
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        if req.path().ends_with("/refused") {
            note_user(&req); // as the in-flight limiter does
            return Err(ApiError::TooManyRequests.into());
        }
        if req.path().ends_with("/slow") {
            // As the limiter's timeout: the request is dropped with its answer unread.
            drop(next.call(req).await);
            return Err(ApiError::Timeout.into());
        }
        Ok(next.call(req).await?.map_into_boxed_body())
    }

    async fn authenticate(
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        req.extensions_mut().insert(UserInfo {
            username: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        });
        Ok(next.call(req).await?.map_into_boxed_body())
    }

    #[actix_web::test]
    async fn the_middleware_logs_outcomes_and_users_without_bodies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let cfg = ApiConfig {
            audit_log_path: path.display().to_string(),
            ..ApiConfig::default()
        };
        let auditor = Auditor::start(&cfg, &Registry::new()).expect("auditor");
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(tap))
                .wrap(actix_web::middleware::from_fn(refuse))
                .wrap(actix_web::middleware::from_fn(authenticate))
                .wrap(actix_web::middleware::from_fn(record))
                .app_data(web::Data::new(auditor))
                .default_service(web::to(|req: actix_web::HttpRequest| async move {
                    match req.path() {
                        p if p.ends_with("/exists") => {
                            ApiError::already_exists(Default::default()).error_response()
                        }
                        _ => HttpResponse::Created().body(r#"{"data":{"k":"c2VjcmV0"}}"#),
                    }
                })),
        )
        .await;
        let call = |method: actix_web::http::Method, uri: &str| {
            TestRequest::with_uri(uri)
                .method(method)
                .set_payload(r#"{"data":{"k":"c2VjcmV0"}}"#)
                .to_request()
        };
        use actix_web::http::Method;
        let res =
            test::call_service(&app, call(Method::POST, "/api/v1/namespaces/d/secrets")).await;
        assert_eq!(res.status(), 201);
        assert!(res.headers().contains_key("audit-id"));
        let res = test::call_service(&app, call(Method::GET, "/api/v1/namespaces/d/secrets")).await;
        assert_eq!(res.status(), 201, "the test handler answers GETs too");
        let res = test::call_service(
            &app,
            call(Method::POST, "/api/v1/namespaces/d/secrets/exists"),
        )
        .await;
        assert_eq!(res.status(), 409);
        let body = test::read_body(res).await;
        assert!(
            String::from_utf8_lossy(&body).contains("AlreadyExists"),
            "the error body is passed on"
        );
        let refused = test::try_call_service(
            &app,
            call(Method::DELETE, "/api/v1/namespaces/d/secrets/refused"),
        )
        .await;
        assert!(refused.is_err(), "the limiter's error is passed on");
        let slow = test::try_call_service(
            &app,
            call(Method::PUT, "/apis/apps/v1/namespaces/d/deployments/slow"),
        )
        .await;
        assert!(slow.is_err(), "the timeout is passed on");

        let lines = lines(&path, 5);
        assert_eq!(lines.len(), 5, "reads too: {lines:?}");
        let summary: Vec<(&str, u64, Option<&str>, &str)> = lines
            .iter()
            .map(|l| {
                (
                    l["verb"].as_str().unwrap_or_default(),
                    l["responseStatus"]["code"].as_u64().unwrap_or_default(),
                    l["responseStatus"]["reason"].as_str(),
                    l["user"]["username"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("create", 201, None, "alice"),
                ("list", 201, None, "alice"),
                ("create", 409, Some("AlreadyExists"), "alice"),
                ("delete", 429, Some("TooManyRequests"), "alice"),
                ("update", 504, Some("Timeout"), "alice"),
            ]
        );
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("c2VjcmV0"), "no bodies in the log: {text}");
    }

    #[actix_web::test]
    async fn a_policy_logs_bodies_at_request_and_response_levels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let policy = dir.path().join("policy.yaml");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  resources: [{group: \"\", resources: [configmaps]}]\n- level: Request\n  verbs: [create]\n- level: None\n",
        )
        .expect("policy");
        let cfg = ApiConfig {
            audit_log_path: path.display().to_string(),
            audit_policy_file: policy.display().to_string(),
            ..ApiConfig::default()
        };
        let auditor = Auditor::start(&cfg, &Registry::new()).expect("auditor");
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(tap))
                .wrap(actix_web::middleware::from_fn(authenticate))
                .wrap(actix_web::middleware::from_fn(record))
                .app_data(web::Data::new(auditor))
                .default_service(web::to(|body: web::Bytes| async move {
                    HttpResponse::Created().body(body)
                })),
        )
        .await;
        use actix_web::http::Method;
        for (method, uri) in [
            (Method::POST, "/api/v1/namespaces/d/configmaps"),
            (Method::POST, "/api/v1/namespaces/d/pods"),
            (Method::PUT, "/api/v1/namespaces/d/pods/p"),
        ] {
            let req = TestRequest::with_uri(uri)
                .method(method)
                .set_payload(r#"{"kind":"X","n":1}"#)
                .to_request();
            let res = test::call_service(&app, req).await;
            let echoed = test::read_body(res).await;
            assert_eq!(
                &echoed[..],
                br#"{"kind":"X","n":1}"#,
                "the handler reads the body"
            );
        }
        let lines = lines(&path, 2);
        assert_eq!(lines.len(), 2, "the update is None: {lines:?}");
        assert_eq!(lines[0]["level"], "RequestResponse");
        assert_eq!(lines[0]["requestObject"]["n"], 1);
        assert_eq!(lines[0]["responseObject"]["kind"], "X");
        assert_eq!(lines[1]["level"], "Request");
        assert_eq!(lines[1]["requestObject"]["n"], 1);
        assert!(lines[1].get("responseObject").is_none());
    }
}
