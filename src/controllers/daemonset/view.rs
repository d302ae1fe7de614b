//! What one reconcile sees: every node with its verdict, the DaemonSet's pods grouped by the
//! node they are for, the current revision hash, and the rollout settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::eligible::{should_run, target_node, Verdict};
use super::template::pod_template;
use crate::controllers::revisions::HASH_LABEL;

pub type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;

pub struct View {
    /// Every known node, by name.
    pub nodes: BTreeMap<String, Verdict>,
    /// Pods (terminating and finished ones too) by the node they are for.
    pub by_node: NodePods,
    pub hash: String,
    pub min_ready: i64,
    pub now: jiff::Timestamp,
    pub rolling: bool,
    pub max_surge: usize,
    pub max_unavailable: usize,
}

/// An int, or a percentage of `total` rounded up (DaemonSets round both limits up).
pub fn scaled(v: Option<&IntOrString>, total: usize, default: usize) -> usize {
    match v {
        Some(IntOrString::Int(i)) => (*i).max(0) as usize,
        Some(IntOrString::String(s)) => match s.trim_end_matches('%').parse::<f64>() {
            Ok(pct) => (pct * total as f64 / 100.0).ceil().max(0.0) as usize,
            Err(_) => default,
        },
        None => default,
    }
}

impl View {
    pub fn new(ds: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], hash: &str) -> View {
        let spec = ds.spec.clone().unwrap_or_default();
        let template = pod_template(ds, hash).spec.unwrap_or_default();
        let nodes: BTreeMap<String, Verdict> = nodes
            .iter()
            .map(|n| (n.name_any(), should_run(&template, n)))
            .collect();
        let mut by_node = NodePods::new();
        for p in pods {
            if let Some(n) = target_node(p) {
                by_node.entry(n).or_default().push(p.clone());
            }
        }
        let strategy = spec.update_strategy.unwrap_or_default();
        let rolling = strategy.type_.as_deref() != Some("OnDelete");
        let ru = strategy.rolling_update.unwrap_or_default();
        let desired = nodes.values().filter(|v| v.run).count();
        let max_surge = scaled(ru.max_surge.as_ref(), desired, 0);
        let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), desired, 1);
        // An impossible 0/0 falls back to upstream's default of one at a time.
        if desired > 0 && max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        View {
            nodes,
            by_node,
            hash: hash.to_string(),
            min_ready: i64::from(spec.min_ready_seconds.unwrap_or(0)),
            now: jiff::Timestamp::now(),
            rolling,
            max_surge,
            max_unavailable,
        }
    }

    pub fn pods_on(&self, node: &str) -> &[Arc<Pod>] {
        self.by_node
            .get(node)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn is_updated(&self, p: &Pod) -> bool {
        p.labels().get(HASH_LABEL) == Some(&self.hash)
    }

    pub fn available(&self, p: &Pod) -> bool {
        crate::controllers::pods::is_available(p, self.min_ready, self.now)
    }

    /// Surge replacement is on: RollingUpdate with a maxSurge above 0.
    pub fn surges(&self) -> bool {
        self.rolling && self.max_surge > 0
    }
}

/// Scheduled pods first, then oldest first, then by name (upstream's
/// podByCreationTimestampAndPhase).
pub fn oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        let unscheduled = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty);
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (unscheduled, created, p.name_any())
    });
}
