//! kube-apiserver's max-in-flight filter and request timeout: at most
//! `api.max_requests_inflight` reads and `api.max_mutating_requests_inflight` writes are
//! served at once, the next get 429 TooManyRequests with `Retry-After: 1` (clients back off
//! and retry; nothing is half-done because the request never started); requests that take
//! longer than `api.request_timeout_seconds` get 504. Health, version and metrics, and
//! long-running requests (watches, log follows, exec, attach, port-forward, proxy) are exempt,
//! as upstream exempts them.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Semaphore;

use futures_util::StreamExt;

use super::status::ApiError;
use crate::config::ApiConfig;

/// Most of a refused request's body read before answering (a larger one closes the
/// connection).
const DRAIN_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub struct Limiter {
    reads: Option<Arc<Semaphore>>,
    writes: Option<Arc<Semaphore>>,
    timeout: Duration,
    inflight: IntGaugeVec,
    dropped: IntCounterVec,
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
        registry.register(Box::new(inflight.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(Limiter {
            reads: sem(cfg.max_requests_inflight),
            writes: sem(cfg.max_mutating_requests_inflight),
            timeout: Duration::from_secs(cfg.request_timeout_seconds.max(1)),
            inflight,
            dropped,
        })
    }
}

/// Upstream's long-running requests (and the endpoints that must answer under load).
fn exempt(req: &ServiceRequest) -> bool {
    let path = req.path();
    if matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/metrics"
    ) {
        return true;
    }
    let query = req.query_string();
    let flag = |name: &str| {
        query.split('&').any(|kv| {
            kv.strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| v == "true" || v == "1")
        })
    };
    path.contains("/watch/")
        || flag("watch")
        || (path.ends_with("/log") && flag("follow"))
        || ["/exec", "/attach", "/portforward"]
            .iter()
            .any(|s| path.ends_with(s))
        || path.split('/').any(|s| s == "proxy")
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
            // The body is read (and dropped) first: closing a connection with unread data
            // resets it, and the client would lose the 429 with it.
            let mut req = req;
            let (_, payload) = req.parts_mut();
            let mut left = DRAIN_LIMIT;
            while let Some(Ok(chunk)) = payload.next().await {
                left = left.saturating_sub(chunk.len());
                if left == 0 {
                    break;
                }
            }
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
        assert!(!ex("/api/v1/namespaces/d/pods/p/log"));
        assert!(!ex("/api/v1/pods?watchers=1"));
        assert!(!ex("/apis/apps/v1/deployments"));
    }
}
