//! Which nodes should run a daemon pod (upstream's NodeShouldRunDaemonPod), the node a daemon
//! pod is meant for, and the tolerations every daemon pod gets.

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint, Toleration};
use kube::ResourceExt;

use crate::scheduler::filter::{node_matches, toleration_matches};

/// Taints daemon pods tolerate whatever their template says (upstream's
/// AddOrUpdateDaemonPodTolerations), so node trouble never evicts or blocks them.
const AUTO_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Tolerated by host-network daemons only.
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// Same key, operator, value and effect (upstream's Toleration.MatchToleration).
fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| t.operator.clone().unwrap_or_else(|| "Equal".into());
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    s(&a.key) == s(&b.key)
        && op(a) == op(b)
        && s(&a.value) == s(&b.value)
        && s(&a.effect) == s(&b.effect)
}

/// Adds the automatic tolerations, replacing an equal one (which drops e.g. its
/// tolerationSeconds, as upstream does).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let extra = host_network.then_some((NETWORK_UNAVAILABLE, "NoSchedule"));
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in AUTO_TOLERATIONS.iter().copied().chain(extra) {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        match tolerations
            .iter_mut()
            .find(|have| same_toleration(have, &t))
        {
            Some(have) => *have = t,
            None => tolerations.push(t),
        }
    }
}

/// `nodeSelector` and required node affinity, as the scheduler reads them.
pub fn fits_affinity(spec: &PodSpec, node: &Node) -> bool {
    node_matches(spec, node.labels(), &node.name_any())
}

fn untolerated(taints: &[Taint], tolerations: &[Toleration], effects: &[&str]) -> bool {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .any(|t| !tolerations.iter().any(|tol| toleration_matches(tol, t)))
}

/// Whether a daemon pod should run on the node, and whether one already there may stay
/// (it may when only NoSchedule taints are untolerated). `spec` must already carry the
/// automatic tolerations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub run: bool,
    pub keep: bool,
}

pub fn should_run(spec: &PodSpec, node: &Node) -> Verdict {
    let no = Verdict {
        run: false,
        keep: false,
    };
    let name = node.name_any();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return no;
    }
    if !fits_affinity(spec, node) {
        return no;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    if untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return Verdict {
            run: false,
            keep: !untolerated(taints, tolerations, &["NoExecute"]),
        };
    }
    Verdict {
        run: true,
        keep: true,
    }
}

/// What eligibility and status depend on: labels, spec (taints) and condition statuses, so
/// heartbeat-only node updates do not re-reconcile every DaemonSet.
pub fn node_fingerprint(node: &Node) -> String {
    let conditions: Vec<(&str, &str)> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    serde_json::json!([node.labels(), node.spec, conditions]).to_string()
}

/// The node a daemon pod is for: its `nodeName`, or else the node its required affinity
/// names by `metadata.name` (upstream's GetTargetNodeName).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    fn spec(v: Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(v).expect("spec");
        add_daemon_tolerations(&mut s);
        s
    }

    #[test]
    fn automatic_tolerations_are_added_once() {
        let mut s = spec(json!({"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}));
        add_daemon_tolerations(&mut s);
        let ts = s.tolerations.expect("tolerations");
        assert_eq!(ts.len(), AUTO_TOLERATIONS.len());
        assert!(ts.iter().all(|t| t.toleration_seconds.is_none()));
        let hn = spec(json!({"containers": [], "hostNetwork": true}));
        assert!(hn
            .tolerations
            .expect("t")
            .iter()
            .any(|t| t.key.as_deref() == Some(NETWORK_UNAVAILABLE)));
    }

    #[test]
    fn taints_decide_run_and_keep() {
        let s = spec(json!({"containers": []}));
        let plain = node("a", json!({}), json!([]));
        assert!(should_run(&s, &plain).run);
        let no_sched = node(
            "b",
            json!({}),
            json!([{"key": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            should_run(&s, &no_sched),
            Verdict {
                run: false,
                keep: true
            }
        );
        let no_exec = node("c", json!({}), json!([{"key": "x", "effect": "NoExecute"}]));
        assert_eq!(
            should_run(&s, &no_exec),
            Verdict {
                run: false,
                keep: false
            }
        );
        let prefer = node(
            "d",
            json!({}),
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
        );
        assert!(should_run(&s, &prefer).run);
        let tolerant =
            spec(json!({"containers": [], "tolerations": [{"key": "x", "operator": "Exists"}]}));
        assert!(should_run(&tolerant, &no_exec).run);
        let cordoned = node(
            "e",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        assert!(
            should_run(&s, &cordoned).run,
            "daemons tolerate cordoned nodes"
        );
    }

    #[test]
    fn selector_and_required_affinity() {
        let gpu = node("g1", json!({"gpu": "yes", "zone": "3"}), json!([]));
        let cpu = node("c1", json!({"zone": "1"}), json!([]));
        let sel = spec(json!({"containers": [], "nodeSelector": {"gpu": "yes"}}));
        assert!(should_run(&sel, &gpu).run);
        assert!(!should_run(&sel, &cpu).run);
        let aff = |terms: Value| {
            spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let by_name = aff(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c1"]}]}]),
        );
        assert!(should_run(&by_name, &cpu).run);
        assert!(!should_run(&by_name, &gpu).run);
        let gt = aff(
            json!([{"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["2"]}]}]),
        );
        assert!(should_run(&gt, &gpu).run);
        assert!(!should_run(&gt, &cpu).run);
        let either = aff(json!([
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["g1"]}]}]));
        assert!(should_run(&either, &gpu).run && should_run(&either, &cpu).run);
        assert!(
            !should_run(&aff(json!([{}])), &cpu).run,
            "an empty term matches nothing"
        );
        let pinned = spec(json!({"containers": [], "nodeName": "c1"}));
        assert!(should_run(&pinned, &cpu).run && !should_run(&pinned, &gpu).run);
    }

    #[test]
    fn fingerprint_ignores_heartbeats() {
        let n = |hb: &str, taints: Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"taints": taints},
                "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": hb}]}}))
            .expect("node")
        };
        let base = node_fingerprint(&n("2026-01-01T00:00:00Z", json!([])));
        assert_eq!(
            base,
            node_fingerprint(&n("2026-01-01T00:00:09Z", json!([])))
        );
        let tainted = n(
            "2026-01-01T00:00:00Z",
            json!([{"key": "x", "effect": "NoSchedule"}]),
        );
        assert_ne!(base, node_fingerprint(&tainted));
    }

    #[test]
    fn target_node_from_name_or_affinity() {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}}}}}))
        .expect("pod");
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        let mut bound = p.clone();
        if let Some(s) = bound.spec.as_mut() {
            s.node_name = Some("n8".into());
        }
        assert_eq!(target_node(&bound).as_deref(), Some("n8"));
    }
}
