//! What every API request handler shares: the store client and the request metrics.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::store::{Health, StoreClient};

pub struct ApiState {
    pub store: StoreClient,
    pub health: Arc<Health>,
    pub metrics: ApiMetrics,
    pub registry: Registry,
    /// tolerationSeconds of the not-ready/unreachable tolerations every pod gets.
    pub toleration_seconds: u64,
    /// Where ClusterIPs and NodePorts come from.
    pub services: super::services::ServiceNetwork,
    /// The RBAC objects, kept current from the store (see `auth::rbac_cache`).
    pub rbac: super::auth::rbac_cache::RbacCache,
    /// TLS to kubelets (pods/log, pods/exec): the cluster CA and this server's certificate.
    pub kubelet_tls: super::proxy::KubeletTls,
    /// Bearer token checks (also the authentication middleware's); its keys (private on
    /// servers) sign TokenRequest tokens.
    pub authn: actix_web::web::Data<super::auth::authn::Authn>,
    /// Services may have `externalIPs` (DenyServiceExternalIPs off).
    pub allow_external_ips: bool,
    /// Pod Security Admission's cluster defaults and exemptions.
    pub pod_security: super::podsecurity::PodSecurity,
}

#[derive(Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    pub watchers: IntGaugeVec,
    pub watch_events: IntCounterVec,
}

impl ApiMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "API requests by verb, resource and HTTP code.",
            ),
            &["verb", "resource", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "apiserver_request_duration_seconds",
                "API request latency (watches excluded).",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            &["verb", "resource"],
        )?;
        let watchers = IntGaugeVec::new(
            Opts::new(
                "apiserver_longrunning_requests",
                "Open watches by resource.",
            ),
            &["verb", "resource"],
        )?;
        let watch_events = IntCounterVec::new(
            Opts::new(
                "apiserver_watch_events_total",
                "Events sent to watchers by resource.",
            ),
            &["resource"],
        )?;
        r.register(Box::new(requests.clone()))?;
        r.register(Box::new(duration.clone()))?;
        r.register(Box::new(watchers.clone()))?;
        r.register(Box::new(watch_events.clone()))?;
        Ok(Self {
            requests,
            duration,
            watchers,
            watch_events,
        })
    }

    pub fn observe(&self, verb: &str, resource: &str, code: u16, started: Instant) {
        self.requests
            .with_label_values(&[verb, resource, &code.to_string()])
            .inc();
        self.duration
            .with_label_values(&[verb, resource])
            .observe(started.elapsed().as_secs_f64());
    }
}
