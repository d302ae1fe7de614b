//! Watches: newline-delimited `WatchEvent`s from the local replica's event stream, with
//! synthetic ADDED events for a watch without a resourceVersion, selector transitions as
//! ADDED/DELETED, bookmarks, and `timeoutSeconds`. A watch-list (`sendInitialEvents=true`
//! with `resourceVersionMatch=NotOlderThan`, as client-go's WatchListClient asks) gets the
//! state as ADDED events and then a BOOKMARK annotated `k8s.io/initial-events-end`.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::HttpResponse;
use prometheus::IntGauge;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::object;
use super::request::list::{list_objects, parse_rv, ListRead};
use super::request::{Ctx, View};
use super::resources::Resource;
use super::selectors::{labels_of, FieldSelector, LabelSelector};
use super::status::{ApiError, Cause};
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
    view: View,
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
        let object = if kind == "BOOKMARK" {
            obj.clone()
        } else {
            self.view.render(self.res, obj.clone())
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
        if !self.filter.selects() && self.view == View::Object {
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
        self.line("BOOKMARK", &bookmark(self.res, self.last_rv, false))
    }
}

/// A BOOKMARK's object: the kind with only a resourceVersion, and for the end of a
/// watch-list's initial events upstream's annotation.
fn bookmark(res: &Resource, rv: u64, initial_events_end: bool) -> Value {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        meta["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
    }
    json!({ "kind": res.kind, "apiVersion": res.api_version(), "metadata": meta })
}

const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// `sendInitialEvents`, with upstream's `validateWatchOptions` of the options around it.
fn send_initial_events(ctx: &Ctx<'_>) -> Result<Option<bool>, ApiError> {
    let q = &ctx.q;
    let send = match q.get("sendInitialEvents") {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0" | "") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid sendInitialEvents {other:?}: must be true or false"
            )))
        }
    };
    let matching = q.given("resourceVersionMatch");
    let mut causes = Vec::new();
    if send.is_some() && matching != Some("NotOlderThan") {
        causes.push(Cause::forbidden(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if let Some(m) = matching {
        if send.is_none() {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if m != "NotOlderThan" {
            causes.push(Cause::not_supported(
                "resourceVersionMatch",
                format!("{m:?}"),
                &["NotOlderThan"],
            ));
        }
        if q.given("continue").is_some() {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
    }
    if causes.is_empty() {
        Ok(send)
    } else {
        Err(ApiError::invalid("meta.k8s.io", "ListOptions", "", causes))
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
        fs: FieldSelector::parse(
            ctx.q.get("fieldSelector").unwrap_or(""),
            res.strategy.selectable_fields(),
        )?,
        key: ctx.t.name.as_ref().map(|n| res.key(ctx.ns(), n)),
    };
    let timeout = match ctx.q.get("timeoutSeconds") {
        None | Some("") => DEFAULT_TIMEOUT,
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {t:?}")))?,
        ),
    };
    let view = ctx.view();
    let bookmarks = ctx.q.flag("allowWatchBookmarks");
    let send_initial = send_initial_events(ctx)?;
    let rv = ctx.q.given("resourceVersion");
    let mut pending = VecDeque::new();
    // The state first (ADDED events): a legacy watch from "now" or "any", or a watch-list.
    let initial = match (send_initial, rv) {
        (None, None | Some("0")) | (Some(true), _) => {
            let mut read = ListRead::current(match rv {
                Some("0") => Consistency::Local,
                _ => Consistency::Linearizable,
            });
            if let (Some(true), Some(rv)) = (send_initial, rv.filter(|rv| *rv != "0")) {
                read = read.not_older_than(parse_rv(rv)?);
            }
            Some(list_objects(ctx, &read).await?)
        }
        _ => None,
    };
    let after = match (&initial, rv) {
        (Some(page), _) => {
            for item in page.items.iter().filter(|l| filter.key_matches(&l.kv.key)) {
                let line = if view == View::Object {
                    event_line("ADDED", &item.json()?)
                } else {
                    let object = view.render(res, item.object()?);
                    event_line("ADDED", object.to_string().as_bytes())
                };
                pending.push_back(line);
            }
            if send_initial == Some(true) && bookmarks {
                let end = bookmark(res, page.revision, true);
                pending.push_back(event_line("BOOKMARK", end.to_string().as_bytes()));
            }
            page.revision
        }
        (None, Some(rv)) if rv != "0" => parse_rv(rv)?,
        // sendInitialEvents=false without a version: from the current state on.
        (None, _) => ctx
            .state
            .store
            .revision(Consistency::Linearizable)
            .await
            .map_err(|e| ctx.store_err(e))?,
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
        view,
        pending,
        events,
        deadline: Instant::now() + timeout,
        bookmarks,
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
