//! The ingress controller's Prometheus metrics, on the process's registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct IngressMetrics {
    /// `code`: the HTTP status sent to the client.
    pub requests: IntCounterVec,
    /// Until the response head is sent.
    pub duration: Histogram,
    /// Host/path routes in the current table.
    pub routes: IntGauge,
}

impl IngressMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = IngressMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "skiff_ingress_requests_total",
                    "HTTP requests the ingress proxy answered, by status code",
                ),
                &["code"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "skiff_ingress_request_duration_seconds",
                    "Time from a request's arrival to its response head",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            )?,
            routes: IntGauge::new(
                "skiff_ingress_routes",
                "Host and path routes of the ingress controller's table",
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.routes.clone()))?;
        Ok(m)
    }
}
