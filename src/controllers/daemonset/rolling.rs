//! RollingUpdate (upstream's rollingUpdate): without surge, delete out-of-date pods within
//! maxUnavailable and let manage create their replacements; with surge, create new pods next
//! to old ones within maxSurge and delete an old pod once its replacement is available.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::view::View;

#[derive(Debug, Default)]
pub struct Step {
    pub delete: Vec<Arc<Pod>>,
    /// Nodes to create a new pod on next to the old one.
    pub create: Vec<String>,
}

/// A node's up-to-date and out-of-date live pod, each if any.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// The one new and one old live pod on a node; `None` if there are more (manage cleans up).
fn new_and_old(v: &View, pods: &[Arc<Pod>]) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if v.is_updated(p) { &mut new } else { &mut old };
        if slot.replace(p.clone()).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// Nodes with pods or that should have one, in name order.
fn nodes(v: &View) -> BTreeSet<&String> {
    v.by_node
        .keys()
        .chain(v.nodes.iter().filter(|(_, vd)| vd.run).map(|(n, _)| n))
        .collect()
}

pub fn plan(v: &View) -> Step {
    if v.max_surge == 0 {
        without_surge(v)
    } else {
        with_surge(v)
    }
}

fn without_surge(v: &View) -> Step {
    let mut unavailable = 0;
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for node in nodes(v) {
        match new_and_old(v, v.pods_on(node)) {
            None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
            Some((Some(new), None)) => {
                if !v.available(&new) {
                    unavailable += 1;
                }
            }
            Some((None, Some(old))) => {
                if !v.available(&old) {
                    // Already down: replacing it costs nothing.
                    replace.push(old);
                } else if unavailable < v.max_unavailable {
                    candidates.push(old);
                }
            }
        }
    }
    let room = v
        .max_unavailable
        .saturating_sub(unavailable)
        .min(candidates.len());
    replace.extend(candidates.into_iter().take(room));
    Step {
        delete: replace,
        create: Vec::new(),
    }
}

fn with_surge(v: &View) -> Step {
    let runs = |n: &str| v.nodes.get(n).is_some_and(|vd| vd.run);
    let mut step = Step::default();
    let mut surging = 0;
    let mut available: usize = 0;
    let mut sunset = Vec::new();
    let mut candidates = Vec::new();
    for node in nodes(v) {
        let Some((new, old)) = new_and_old(v, v.pods_on(node)) else {
            surging += 1;
            continue;
        };
        if old
            .as_ref()
            .or(new.as_ref())
            .is_some_and(|p| v.available(p))
        {
            available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !v.available(&old) => {
                if runs(node) {
                    step.create.push(node.clone());
                } else {
                    step.delete.push(old);
                }
            }
            (None, Some(old)) => {
                if !runs(node) {
                    sunset.push(old);
                } else if surging < v.max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if v.available(&new) {
                    step.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes the DaemonSet left go only while more than enough are available.
    let desired = v.nodes.values().filter(|vd| vd.run).count();
    let spare = available.saturating_sub(desired).min(sunset.len());
    step.delete.extend(sunset.into_iter().take(spare));
    let room = v.max_surge.saturating_sub(surging).min(candidates.len());
    step.create.extend(candidates.into_iter().take(room));
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::daemonset::eligible::Verdict;
    use kube::ResourceExt;
    use serde_json::json;

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let status = if ready {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        } else {
            json!({"phase": "Pending"})
        };
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"controller-revision-hash": hash}},
                "spec": {"nodeName": node, "containers": []}, "status": status}),
            )
            .expect("pod"),
        )
    }

    fn view(pods: Vec<Arc<Pod>>, nodes: &[&str], surge: usize, unavailable: usize) -> View {
        let run = Verdict {
            run: true,
            keep: true,
        };
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
            nodes: nodes.iter().map(|n| (n.to_string(), run)).collect(),
            by_node,
            hash: "new".into(),
            min_ready: 0,
            now: jiff::Timestamp::now(),
            rolling: true,
            max_surge: surge,
            max_unavailable: unavailable,
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn deletes_old_pods_within_max_unavailable() {
        let old = |i: usize| pod(&format!("o{i}"), &format!("n{i}"), "old", true);
        let v = view((1..=4).map(old).collect(), &["n1", "n2", "n3", "n4"], 0, 2);
        assert_eq!(names(&plan(&v).delete), ["o1", "o2"]);
        // One node already replacing (new pod not ready): only one more may go.
        let pods = vec![pod("x1", "n1", "new", false), old(2), old(3), old(4)];
        assert_eq!(
            names(&plan(&view(pods, &["n1", "n2", "n3", "n4"], 0, 2)).delete),
            ["o2"]
        );
        // A node without a pod counts as unavailable too.
        let pods = vec![old(2), old(3)];
        assert_eq!(
            names(&plan(&view(pods, &["n1", "n2", "n3"], 0, 1)).delete),
            Vec::<String>::new()
        );
        // Unavailable old pods are replaced regardless.
        let pods = vec![
            pod("x1", "n1", "new", false),
            pod("o2", "n2", "old", false),
            old(3),
        ];
        assert_eq!(
            names(&plan(&view(pods, &["n1", "n2", "n3"], 0, 1)).delete),
            ["o2"]
        );
    }

    #[test]
    fn surge_creates_first_and_deletes_once_available() {
        let pods = vec![
            pod("o1", "n1", "old", true),
            pod("o2", "n2", "old", true),
            pod("o3", "n3", "old", true),
        ];
        let s = plan(&view(pods, &["n1", "n2", "n3"], 1, 0));
        assert!(s.delete.is_empty());
        assert_eq!(s.create, ["n1"]);
        let pods = vec![
            pod("o1", "n1", "old", true),
            pod("x1", "n1", "new", false),
            pod("o2", "n2", "old", true),
        ];
        let s = plan(&view(pods, &["n1", "n2"], 1, 0));
        assert!(
            s.delete.is_empty() && s.create.is_empty(),
            "surge used up by n1"
        );
        let pods = vec![
            pod("o1", "n1", "old", true),
            pod("x1", "n1", "new", true),
            pod("o2", "n2", "old", true),
        ];
        let s = plan(&view(pods, &["n1", "n2"], 1, 0));
        assert_eq!(
            (names(&s.delete), s.create),
            (vec!["o1".to_string()], vec!["n2".to_string()])
        );
    }
}
