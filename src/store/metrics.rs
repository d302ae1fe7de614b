//! Prometheus metrics of one store replica.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::error::StoreError;

#[derive(Clone)]
pub struct StoreMetrics {
    pub term: IntGauge,
    pub leader_id: IntGauge,
    pub is_leader: IntGauge,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    pub proposals: IntCounter,
    pub proposals_failed: IntCounter,
    pub proposal_seconds: Histogram,
    pub leader_changes: IntCounter,
    pub snapshots_saved: IntCounter,
    pub snapshots_installed: IntCounter,
    pub keys: IntGauge,
    pub revision: IntGauge,
    pub watchers: IntGauge,
    /// Peer connections refused or failed in TLS (handshake or peer check), by `direction`
    /// (`inbound`: accepted here, `outbound`: dialled from here).
    pub peer_tls_handshake_failures: IntCounterVec,
}

fn gauge(r: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::with_opts(Opts::new(name, help))?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl StoreMetrics {
    pub fn register(r: &Registry) -> Result<Self, StoreError> {
        Self::try_register(r).map_err(|e| StoreError::Storage(format!("metrics: {e}")))
    }

    fn try_register(r: &Registry) -> Result<Self, prometheus::Error> {
        let proposal_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "skiff_raft_proposal_duration_seconds",
                "Time from proposing a write to applying it on the proposing replica.",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14)?),
        )?;
        r.register(Box::new(proposal_seconds.clone()))?;
        let peer_tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "skiff_raft_peer_tls_handshake_failures_total",
                "Raft peer connections that failed the TLS handshake or the peer certificate check.",
            ),
            &["direction"],
        )?;
        r.register(Box::new(peer_tls_handshake_failures.clone()))?;
        for direction in ["inbound", "outbound"] {
            peer_tls_handshake_failures.with_label_values(&[direction]);
        }
        Ok(Self {
            term: gauge(r, "skiff_raft_term", "Current Raft term.")?,
            leader_id: gauge(
                r,
                "skiff_raft_leader_id",
                "Raft id of the known leader (0: none).",
            )?,
            is_leader: gauge(
                r,
                "skiff_raft_is_leader",
                "1 if this replica is the Raft leader.",
            )?,
            commit_index: gauge(
                r,
                "skiff_raft_commit_index",
                "Highest log index known committed.",
            )?,
            applied_index: gauge(r, "skiff_raft_applied_index", "Highest log index applied.")?,
            proposals: counter(
                r,
                "skiff_raft_proposals_total",
                "Writes proposed on this replica.",
            )?,
            proposals_failed: counter(
                r,
                "skiff_raft_proposals_failed_total",
                "Writes proposed here that failed (dropped, timed out or rejected at apply).",
            )?,
            proposal_seconds,
            leader_changes: counter(r, "skiff_raft_leader_changes_total", "Leader changes seen.")?,
            snapshots_saved: counter(
                r,
                "skiff_raft_snapshots_saved_total",
                "Snapshots written to disk.",
            )?,
            snapshots_installed: counter(
                r,
                "skiff_raft_snapshots_installed_total",
                "Snapshots received from a leader and installed.",
            )?,
            keys: gauge(r, "skiff_store_keys", "Keys in the state machine.")?,
            revision: gauge(r, "skiff_store_revision", "Store revision.")?,
            watchers: gauge(r, "skiff_store_watchers", "Open watches on this replica.")?,
            peer_tls_handshake_failures,
        })
    }
}
