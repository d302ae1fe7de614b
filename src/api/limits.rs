//! kube-apiserver's max-in-flight filter and request timeout: at most
//! `api.max_requests_inflight` reads and `api.max_mutating_requests_inflight` writes are
//! served at once, the next get 429 TooManyRequests with `Retry-After: 1` (clients back off
//! and retry; nothing is half-done because the request never started); requests that take
//! longer than `api.request_timeout_seconds` get 504. Health, version and metrics, and
//! long-running requests (watches, logs, exec, attach, port-forward, proxy) are exempt, as
//! upstream exempts them.
//!
//! Long-running requests have their own limit: at most `api.max_watches_per_user` watches
//! open per client (the authenticated user; for anonymous requests the client's address),
//! the next get 429 with `Retry-After: 1` until one of them ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Semaphore;

use super::request::info::RequestInfo;
use super::status::ApiError;
use crate::config::ApiConfig;

#[derive(Clone)]
pub struct Limiter {
    reads: Option<Arc<Semaphore>>,
    writes: Option<Arc<Semaphore>>,
    timeout: Duration,
    inflight: IntGaugeVec,
    dropped: IntCounterVec,
    watches: Option<Arc<WatchCounts>>,
}

/// Open watches by client key.
struct WatchCounts {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
    rejected: IntCounter,
}

/// One open watch of a client, counted until dropped (the watch's response stream holds it).
pub struct WatchSlot {
    counts: Arc<WatchCounts>,
    key: String,
}

impl WatchCounts {
    fn acquire(self: &Arc<Self>, key: String) -> Result<WatchSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            self.rejected.inc();
            return Err(ApiError::TooManyRequests);
        }
        *n += 1;
        Ok(WatchSlot {
            counts: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn open(&self, key: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(key).copied().unwrap_or(0)
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Whose watches a request counts against: the authenticated user, else (anonymous) the
/// client's address.
fn watch_key(req: &HttpRequest) -> String {
    let user = super::auth::UserInfo::of(req);
    if !user.is_anonymous() {
        return format!("user:{}", user.username);
    }
    match req.peer_addr() {
        Some(a) => format!("ip:{}", a.ip()),
        None => format!("user:{}", user.username),
    }
}

/// Counts a new watch of the request's client: its slot (`None` without a limit), or 429 when
/// the client has `api.max_watches_per_user` open.
pub fn admit_watch(req: &HttpRequest) -> Result<Option<WatchSlot>, ApiError> {
    let Some(counts) = req
        .app_data::<web::Data<Limiter>>()
        .and_then(|l| l.watches.clone())
    else {
        return Ok(None);
    };
    counts.acquire(watch_key(req)).map(Some)
}

impl Limiter {
    pub fn new(cfg: &ApiConfig, registry: &Registry) -> prometheus::Result<Self> {
        let sem = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        let inflight = IntGaugeVec::new(
            Opts::new(
                "apiserver_current_inflight_requests",
                "Requests being served, by kind (readOnly, mutating).",
            ),
            &["request_kind"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "apiserver_dropped_requests_total",
                "Requests refused with 429 for being over the in-flight limit.",
            ),
            &["request_kind"],
        )?;
        let rejected = IntCounter::new(
            "apiserver_watches_per_user_rejected_total",
            "Watches refused with 429 for being over api.max_watches_per_user.",
        )?;
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        let watches = (cfg.max_watches_per_user > 0).then(|| {
            Arc::new(WatchCounts {
                max: cfg.max_watches_per_user,
                open: Mutex::new(HashMap::new()),
                rejected,
            })
        });
        Ok(Limiter {
            reads: sem(cfg.max_requests_inflight),
            writes: sem(cfg.max_mutating_requests_inflight),
            timeout: Duration::from_secs(cfg.request_timeout_seconds.max(1)),
            inflight,
            dropped,
            watches,
        })
    }
}

/// Upstream's long-running requests (and the endpoints that must answer under load),
/// decided on the parsed request.
fn exempt(req: &ServiceRequest) -> bool {
    let path = req.path();
    if matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/metrics"
    ) {
        return true;
    }
    let method = req.method().as_str();
    RequestInfo::parse(method, path, req.query_string()).long_running()
}

pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limiter = req.app_data::<web::Data<Limiter>>().cloned();
    let Some(limiter) = limiter.filter(|_| !exempt(&req)) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let mutating = !matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let (kind, sem) = if mutating {
        ("mutating", &limiter.writes)
    } else {
        ("readOnly", &limiter.reads)
    };
    let permit = match sem.as_ref().map(|s| s.clone().try_acquire_owned()) {
        Some(Err(_)) => {
            limiter.dropped.with_label_values(&[kind]).inc();
            // The refusal is an error (the request is gone with it): the audit log learns who
            // asked now.
            super::audit::note_user(&req);
            // The body is read (and dropped) first: closing a connection with unread data
            // resets it, and the client would lose the 429 with it.
            let mut req = req;
            super::auth::authn::drain(&mut req).await;
            return Err(ApiError::TooManyRequests.into());
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    let gauge = limiter.inflight.with_label_values(&[kind]);
    gauge.inc();
    let result = tokio::time::timeout(limiter.timeout, next.call(req)).await;
    gauge.dec();
    drop(permit);
    match result {
        Ok(res) => Ok(res?.map_into_boxed_body()),
        Err(_) => Err(ApiError::Timeout.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn long_running_and_health_requests_are_exempt() {
        let ex = |uri: &str| exempt(&TestRequest::with_uri(uri).to_srv_request());
        assert!(ex("/readyz"));
        assert!(ex("/api/v1/pods?watch=true&resourceVersion=1"));
        assert!(ex("/api/v1/watch/pods"));
        assert!(ex("/api/v1/namespaces/d/pods/p/log?follow=true"));
        assert!(ex("/api/v1/namespaces/d/pods/p/exec?command=sh"));
        assert!(
            ex("/api/v1/namespaces/d/pods/p/log"),
            "as upstream: logs are long-running"
        );
        assert!(!ex("/api/v1/pods?watchers=1"));
        // Decided on the parsed request: a write with `?watch=true` or an object named
        // `proxy` is limited like any other.
        let post = TestRequest::post().uri("/api/v1/namespaces/d/configmaps?watch=true");
        assert!(!exempt(&post.to_srv_request()));
        assert!(!ex("/api/v1/namespaces/d/configmaps/proxy"));
        assert!(!ex("/apis/apps/v1/deployments"));
    }

    fn limiter(max_watches: usize) -> (Limiter, Registry) {
        let registry = Registry::new();
        let cfg = ApiConfig {
            max_watches_per_user: max_watches,
            ..ApiConfig::default()
        };
        (Limiter::new(&cfg, &registry).expect("limiter"), registry)
    }

    fn watch_request(limiter: &Limiter, user: Option<&str>, ip: &str) -> HttpRequest {
        use actix_web::HttpMessage;
        let req = TestRequest::with_uri("/api/v1/configmaps?watch=true")
            .peer_addr(format!("{ip}:40000").parse().expect("addr"))
            .app_data(web::Data::new(limiter.clone()))
            .to_http_request();
        if let Some(name) = user {
            req.extensions_mut().insert(crate::api::auth::UserInfo {
                username: name.into(),
                groups: vec![crate::api::auth::AUTHENTICATED.into()],
                ..Default::default()
            });
        }
        req
    }

    fn rejected(registry: &Registry) -> u64 {
        let text = crate::metrics::render(registry);
        let line = text
            .lines()
            .find(|l| l.starts_with("apiserver_watches_per_user_rejected_total "))
            .expect("the rejected counter is exported");
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a count")
    }

    #[test]
    fn watches_are_counted_per_user_and_released_on_drop() {
        let (limiter, registry) = limiter(2);
        let alice = || watch_request(&limiter, Some("alice"), "10.0.0.1");
        let a1 = admit_watch(&alice()).expect("first").expect("a slot");
        let a2 = admit_watch(&alice()).expect("second").expect("a slot");
        let err = admit_watch(&alice())
            .err()
            .expect("a third watch is refused");
        assert_eq!(err.code(), 429);
        assert_eq!(err.status()["details"]["retryAfterSeconds"], 1);
        assert_eq!(rejected(&registry), 1);
        // The same address as another user, and another user at the same address, are not
        // alice.
        let bob = admit_watch(&watch_request(&limiter, Some("bob"), "10.0.0.1"))
            .expect("bob has his own count");
        assert!(bob.is_some());
        let counts = limiter.watches.clone().expect("limited");
        assert_eq!(counts.open("user:alice"), 2);
        drop(a1);
        assert_eq!(counts.open("user:alice"), 1);
        let a3 = admit_watch(&alice()).expect("a slot was released");
        drop((a2, a3, bob));
        assert!(
            counts.open.lock().expect("lock").is_empty(),
            "released keys are forgotten"
        );
        assert_eq!(rejected(&registry), 1);
    }

    #[test]
    fn anonymous_watches_are_counted_per_address() {
        let (limiter, _registry) = limiter(1);
        let here = admit_watch(&watch_request(&limiter, None, "10.0.0.1")).expect("first");
        assert!(here.is_some());
        assert!(admit_watch(&watch_request(&limiter, None, "10.0.0.1")).is_err());
        let there = admit_watch(&watch_request(&limiter, None, "10.0.0.2"));
        assert!(there.expect("another address").is_some());
        let counts = limiter.watches.clone().expect("limited");
        assert_eq!(counts.open("ip:10.0.0.1"), 1);
    }

    #[test]
    fn no_watch_limit_at_zero() {
        let (limiter, _registry) = limiter(0);
        for _ in 0..10 {
            let slot = admit_watch(&watch_request(&limiter, None, "10.0.0.1"));
            assert!(slot.expect("unlimited").is_none());
        }
    }
}
