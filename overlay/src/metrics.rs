//! The overlay's Prometheus metrics, on the process's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct OverlayMetrics {
    /// Remote nodes whose subnet is programmed.
    pub peers: IntGauge,
    pub sync_duration: Histogram,
    pub sync_errors: IntCounter,
    /// `direction`: encap (TAP to UDP) or decap (UDP to TAP).
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    /// `reason`: see `wire::Drop`, or `io`.
    pub drops: IntCounterVec,
}

impl OverlayMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = OverlayMetrics {
            peers: IntGauge::new(
                "overlay_peers_programmed",
                "Remote nodes whose pod subnet the datapath reaches",
            )?,
            sync_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "overlay_route_sync_duration_seconds",
                    "Time to reconcile routes, neighbours and FDB entries with the node set",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14)?),
            )?,
            sync_errors: IntCounter::new(
                "overlay_route_sync_errors_total",
                "Datapath reconciles that failed (retried)",
            )?,
            packets: IntCounterVec::new(
                Opts::new(
                    "overlay_vxlan_user_packets_total",
                    "Frames the user-space VXLAN datapath encapsulated or decapsulated",
                ),
                &["direction"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new(
                    "overlay_vxlan_user_bytes_total",
                    "Inner frame bytes the user-space VXLAN datapath encapsulated or decapsulated",
                ),
                &["direction"],
            )?,
            drops: IntCounterVec::new(
                Opts::new(
                    "overlay_vxlan_user_drops_total",
                    "Frames or datagrams the user-space VXLAN datapath dropped",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.peers.clone()))?;
        registry.register(Box::new(m.sync_duration.clone()))?;
        registry.register(Box::new(m.sync_errors.clone()))?;
        registry.register(Box::new(m.packets.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.drops.clone()))?;
        Ok(m)
    }
}
