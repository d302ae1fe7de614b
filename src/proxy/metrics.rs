//! The proxy's metrics (kube-proxy's names where one exists).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ProxyMetrics {
    pub sync_duration: Histogram,
    pub sync_errors: IntCounter,
    pub services: IntGauge,
    pub endpoints: IntGauge,
    pub rules: IntGauge,
    pub lb_addresses: IntGauge,
}

impl ProxyMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let sync_duration = Histogram::with_opts(
            HistogramOpts::new(
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "Render and apply of the nftables table.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let m = ProxyMetrics {
            sync_duration,
            sync_errors: IntCounter::with_opts(Opts::new(
                "skiff_proxy_sync_errors_total",
                "Syncs whose nft transaction failed.",
            ))?,
            services: IntGauge::with_opts(Opts::new(
                "skiff_proxy_service_ports",
                "Service ports with a virtual IP in the table.",
            ))?,
            endpoints: IntGauge::with_opts(Opts::new(
                "skiff_proxy_endpoints",
                "Ready endpoints in the table.",
            ))?,
            rules: IntGauge::with_opts(Opts::new(
                "kubeproxy_sync_proxy_rules_nftables_rules",
                "Rules in per-service chains of the last applied table.",
            ))?,
            lb_addresses: IntGauge::with_opts(Opts::new(
                "skiff_proxy_load_balancer_addresses",
                "LoadBalancer addresses this node answers for.",
            ))?,
        };
        r.register(Box::new(m.sync_duration.clone()))?;
        r.register(Box::new(m.sync_errors.clone()))?;
        r.register(Box::new(m.services.clone()))?;
        r.register(Box::new(m.endpoints.clone()))?;
        r.register(Box::new(m.rules.clone()))?;
        r.register(Box::new(m.lb_addresses.clone()))?;
        Ok(m)
    }
}
