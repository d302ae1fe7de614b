//! Per node, what the pods should be (upstream's podsShouldBeOnNode): a pod where one should
//! run, none where none may stay, failed pods replaced (with back-off), extra pods removed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::backoff::Backoff;
use super::view::{oldest_first, View};
use crate::controllers::pods::is_ready;

#[derive(Default)]
pub struct Plan {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    /// Pods on nodes that no longer exist: nobody will finish their graceful deletion.
    pub force_delete: Vec<Arc<Pod>>,
    /// Failed pods among `delete`, for events.
    pub failed: Vec<Arc<Pod>>,
    /// Look again when a back-off ends.
    pub retry: Option<Duration>,
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn live(pods: &[Arc<Pod>]) -> impl Iterator<Item = &Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
}

pub fn plan(v: &View, backoff: &mut Backoff, ds_key: &str, now: Instant) -> Plan {
    let mut out = Plan::default();
    for (node, verdict) in &v.nodes {
        let pods = v.pods_on(node);
        if verdict.run && pods.is_empty() {
            out.create.push(node.clone());
        } else if verdict.keep {
            let mut running = Vec::new();
            for p in live(pods) {
                match phase(p) {
                    Some("Failed") => {
                        let key = format!("{ds_key}/{node}");
                        if let Some(wait) = backoff.remaining(&key, now) {
                            out.retry = Some(out.retry.map_or(wait, |r| r.min(wait)));
                            continue;
                        }
                        backoff.next(&key, now);
                        out.failed.push(p.clone());
                        out.delete.push(p.clone());
                    }
                    Some("Succeeded") => out.delete.push(p.clone()),
                    _ => running.push(p.clone()),
                }
            }
            out.delete.extend(extra(v, running));
        } else {
            out.delete.extend(live(pods).cloned());
        }
    }
    for (node, pods) in &v.by_node {
        if !v.nodes.contains_key(node) {
            out.force_delete.extend(pods.iter().cloned());
        }
    }
    out
}

/// Pods beyond the one a node should run. Without surge all but the oldest; with surge an
/// old and a new pod may overlap until the new one is available (or the old one not ready).
fn extra(v: &View, mut running: Vec<Arc<Pod>>) -> Vec<Arc<Pod>> {
    if running.len() <= 1 {
        return Vec::new();
    }
    oldest_first(&mut running);
    if !v.surges() {
        return running.split_off(1);
    }
    let mut doomed = Vec::new();
    let (mut new, mut old) = (None, None);
    for p in running {
        let slot = if v.is_updated(&p) { &mut new } else { &mut old };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            doomed.push(p);
        }
    }
    if let (Some(new), Some(old)) = (new, old) {
        if !is_ready(&old) || v.available(&new) {
            doomed.push(old);
        }
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::daemonset::eligible::Verdict;
    use kube::ResourceExt;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "creationTimestamp": created,
                "labels": {"controller-revision-hash": "h"}},
                "spec": {"nodeName": node, "containers": []}, "status": {"phase": phase}}),
            )
            .expect("pod"),
        )
    }

    fn view(pods: Vec<Arc<Pod>>, nodes: &[(&str, bool, bool)]) -> View {
        let mut by_node = crate::controllers::daemonset::view::NodePods::new();
        for p in pods {
            let n = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            by_node.entry(n).or_default().push(p);
        }
        View {
            nodes: nodes
                .iter()
                .map(|(n, run, keep)| {
                    (
                        n.to_string(),
                        Verdict {
                            run: *run,
                            keep: *keep,
                        },
                    )
                })
                .collect(),
            by_node,
            hash: "h".into(),
            min_ready: 0,
            now: jiff::Timestamp::now(),
            rolling: true,
            max_surge: 0,
            max_unavailable: 1,
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn creates_missing_deletes_extra_and_ineligible() {
        let t = |d: &str| format!("2026-01-0{d}T00:00:00Z");
        let pods = vec![
            pod("new", "a", "Running", &t("2")),
            pod("old", "a", "Running", &t("1")),
            pod("tainted", "c", "Running", &t("1")),
            pod("kept", "d", "Running", &t("1")),
            pod("orphan", "gone", "Running", &t("1")),
        ];
        let v = view(
            pods,
            &[
                ("a", true, true),
                ("b", true, true),
                ("c", false, false),
                ("d", false, true),
            ],
        );
        let p = plan(&v, &mut Backoff::default(), "ns/ds", Instant::now());
        assert_eq!(p.create, ["b"]);
        assert_eq!(names(&p.delete), ["new", "tainted"], "the oldest stays");
        assert_eq!(names(&p.force_delete), ["orphan"]);
    }

    #[test]
    fn failed_pods_are_deleted_with_backoff() {
        let v = view(
            vec![pod("f", "a", "Failed", "2026-01-01T00:00:00Z")],
            &[("a", true, true)],
        );
        let mut b = Backoff::default();
        let now = Instant::now();
        let p = plan(&v, &mut b, "ns/ds", now);
        assert_eq!(
            (names(&p.delete), names(&p.failed)),
            (vec!["f".to_string()], vec!["f".to_string()])
        );
        assert!(
            p.create.is_empty(),
            "not while the failed pod is still there"
        );
        let again = plan(&v, &mut b, "ns/ds", now);
        assert!(
            again.delete.is_empty() && again.retry.is_some(),
            "backing off"
        );
    }
}
