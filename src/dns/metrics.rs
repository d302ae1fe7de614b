//! Cluster DNS metrics: answers by response code, forwarded questions, answer latency.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct DnsMetrics {
    /// `skiff_dns_requests_total{rcode}`.
    pub requests: IntCounterVec,
    /// `skiff_dns_forwarded_total`: questions sent upstream.
    pub forwarded: IntCounter,
    /// `skiff_dns_request_duration_seconds`: from question to answer sent.
    pub duration: Histogram,
}

impl DnsMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "skiff_dns_requests_total",
                "DNS questions answered, by response code",
            ),
            &["rcode"],
        )?;
        let forwarded = IntCounter::new(
            "skiff_dns_forwarded_total",
            "DNS questions forwarded to upstream resolvers",
        )?;
        // Cluster answers take microseconds, forwarded ones up to the upstream timeout.
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "skiff_dns_request_duration_seconds",
                "Time from a DNS question to its answer",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(DnsMetrics {
            requests,
            forwarded,
            duration,
        })
    }
}
