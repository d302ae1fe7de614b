//! Watches: newline-delimited `WatchEvent`s from the local replica's event stream, with
//! synthetic ADDED events for a watch without a resourceVersion, selector transitions as
//! ADDED/DELETED, bookmarks, and `timeoutSeconds`.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use prometheus::IntGauge;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::handlers::{list_objects, Ctx};
use super::object;
use super::resources::Resource;
use super::selectors::{labels_of, FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table;
use crate::store::{Consistency, Event, EventKind, WatchStream};

/// Upstream's minimum request timeout for watches without `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

struct Filter {
    ls: LabelSelector,
    fs: FieldSelector,
    /// The key of the one object watched, for a watch on a name.
    key: Option<String>,
}

impl Filter {
    fn key_matches(&self, key: &str) -> bool {
        self.key.as_deref().is_none_or(|k| k == key)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.ls.matches(&labels_of(obj)) && self.fs.matches(obj)
    }

    fn selects(&self) -> bool {
        !self.ls.is_empty() || !self.fs.is_empty()
    }
}

/// One `WatchEvent` line around an object already in JSON.
fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// Decrements the open-watch gauge when the stream is dropped.
struct Open(IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct State {
    res: &'static Resource,
    filter: Filter,
    table: bool,
    pending: VecDeque<Bytes>,
    events: WatchStream,
    deadline: Instant,
    bookmarks: bool,
    next_bookmark: Instant,
    last_rv: u64,
    sent: prometheus::IntCounter,
    _open: Open,
    /// Counts this watch against its client's `api.max_watches_per_user` until the stream
    /// is dropped (it ends, or the client is gone).
    _slot: Option<super::limits::WatchSlot>,
}

impl State {
    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let object = if self.table && kind != "BOOKMARK" {
            table::for_object(self.res, obj)
        } else {
            obj.clone()
        };
        event_line(kind, object.to_string().as_bytes())
    }

    /// The watch event for a store event, if this watcher sees it.
    fn convert(&mut self, e: Event) -> Option<Bytes> {
        let rev = e.revision();
        self.last_rv = self.last_rv.max(rev);
        if !self.filter.key_matches(&e.kv.key) {
            return None;
        }
        if !self.filter.selects() && !self.table {
            // No selector: the stored bytes go out as they are, with the version added.
            let (kind, kv) = match e.kind {
                EventKind::Put if e.prev.is_some() => ("MODIFIED", &e.kv),
                EventKind::Put => ("ADDED", &e.kv),
                EventKind::Delete => ("DELETED", e.prev.as_ref()?),
            };
            let body = object::kv_json(kv, rev).ok()?;
            self.sent.inc();
            return Some(event_line(kind, &body));
        }
        let parse = |kv: &crate::store::KeyValue| {
            let mut o = object::from_kv(kv).ok()?;
            object::set_rv(&mut o, rev);
            Some(o)
        };
        let prev = e
            .prev
            .as_ref()
            .and_then(parse)
            .filter(|p| self.filter.matches(p));
        let (kind, obj) = match e.kind {
            EventKind::Put => {
                let new = parse(&e.kv)?;
                match (self.filter.matches(&new), prev) {
                    (true, Some(_)) => ("MODIFIED", new),
                    (true, None) => ("ADDED", new),
                    (false, Some(p)) => ("DELETED", p),
                    (false, None) => return None,
                }
            }
            EventKind::Delete => ("DELETED", prev?),
        };
        self.sent.inc();
        Some(self.line(kind, &obj))
    }

    fn bookmark(&mut self) -> Bytes {
        self.next_bookmark = Instant::now() + BOOKMARK_EVERY;
        let obj = json!({
            "kind": self.res.kind,
            "apiVersion": self.res.api_version(),
            "metadata": {"resourceVersion": self.last_rv.to_string()},
        });
        self.line("BOOKMARK", &obj)
    }
}

async fn next_chunk(mut st: State) -> Option<(Result<Bytes, actix_web::Error>, State)> {
    if let Some(b) = st.pending.pop_front() {
        return Some((Ok(b), st));
    }
    loop {
        let bookmark_at = if st.bookmarks {
            st.next_bookmark
        } else {
            st.deadline
        };
        tokio::select! {
            ev = st.events.next() => {
                let ev = ev?;
                if let Some(b) = st.convert(ev) {
                    return Some((Ok(b), st));
                }
            }
            _ = tokio::time::sleep_until(st.deadline) => return None,
            _ = tokio::time::sleep_until(bookmark_at), if st.bookmarks => {
                let b = st.bookmark();
                return Some((Ok(b), st));
            }
        }
    }
}

pub async fn serve(ctx: &Ctx<'_>) -> Result<HttpResponse, ApiError> {
    let slot = super::limits::admit_watch(ctx.req)?;
    let res = ctx.res();
    let filter = Filter {
        ls: LabelSelector::parse(ctx.q.get("labelSelector").unwrap_or(""))?,
        fs: FieldSelector::parse(ctx.q.get("fieldSelector").unwrap_or(""), res.kind)?,
        key: ctx.t.name.as_ref().map(|n| res.key(ctx.ns(), n)),
    };
    let timeout = match ctx.q.get("timeoutSeconds") {
        None | Some("") => DEFAULT_TIMEOUT,
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {t:?}")))?,
        ),
    };
    let table = ctx.wants_table();
    let mut pending = VecDeque::new();
    let after = match ctx.q.get("resourceVersion") {
        None | Some("") | Some("0") => {
            let consistency = if ctx.q.get("resourceVersion") == Some("0") {
                Consistency::Local
            } else {
                Consistency::Linearizable
            };
            let (items, rev, _) = list_objects(ctx, consistency).await?;
            for item in items.iter().filter(|l| filter.key_matches(&l.kv.key)) {
                let line = if table {
                    let object = table::for_object(res, &item.object()?);
                    event_line("ADDED", object.to_string().as_bytes())
                } else {
                    event_line("ADDED", &item.json()?)
                };
                pending.push_back(line);
            }
            rev
        }
        Some(rv) => rv
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?,
    };
    let events = ctx
        .state
        .store
        .watch(&res.scope_prefix(ctx.ns()), Some(after))
        .await
        .map_err(|e| ctx.store_err(e))?;
    let resource = res.plural;
    let gauge = ctx
        .state
        .metrics
        .watchers
        .with_label_values(&["watch", resource]);
    gauge.inc();
    let st = State {
        res,
        filter,
        table,
        pending,
        events,
        deadline: Instant::now() + timeout,
        bookmarks: ctx.q.flag("allowWatchBookmarks"),
        next_bookmark: Instant::now() + BOOKMARK_EVERY,
        last_rv: after,
        sent: ctx
            .state
            .metrics
            .watch_events
            .with_label_values(&[resource]),
        _open: Open(gauge),
        _slot: slot,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(futures_util::stream::unfold(st, next_chunk)))
}
