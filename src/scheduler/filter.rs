//! Filters: can this pod run on this node? Each failing filter gives upstream's reason text.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, Pod, PodSpec, Taint, Toleration,
};

use super::cache::{NodeInfo, PodFacts, Usage};

/// Checks in upstream's plugin order; the first failing plugin's reasons count for the node.
pub fn fits(
    pod: &Pod,
    facts: &PodFacts,
    node: &NodeInfo,
    usage: &Usage,
) -> Result<(), Vec<String>> {
    if node.unschedulable && !tolerates(pod, &unschedulable_taint()) {
        return Err(vec!["node(s) were unschedulable".into()]);
    }
    let spec = pod.spec.as_ref();
    if let Some(want) = spec
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        if want != node.name {
            return Err(vec!["node(s) didn't match the requested node name".into()]);
        }
    }
    let mut taints: Vec<Taint> = node.taints.clone();
    if !node.ready
        && !taints
            .iter()
            .any(|t| t.key.starts_with("node.kubernetes.io/"))
    {
        taints.push(Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
    }
    for t in taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
    {
        if !tolerates(pod, t) {
            let v = t.value.clone().unwrap_or_default();
            return Err(vec![format!(
                "node(s) had untolerated taint {{{}: {v}}}",
                t.key
            )]);
        }
    }
    if !matches_affinity(pod, node) {
        return Err(vec![
            "node(s) didn't match Pod's node affinity/selector".into()
        ]);
    }
    if !facts
        .volume_nodes
        .iter()
        .all(|s| selector_matches(s, &node.labels, &node.name))
    {
        return Err(vec!["node(s) had volume node affinity conflict".into()]);
    }
    if facts
        .host_ports
        .iter()
        .any(|hp| usage.host_ports.contains_key(hp))
    {
        return Err(vec![
            "node(s) didn't have free ports for the requested pod ports".into(),
        ]);
    }
    let mut short = Vec::new();
    if usage.pods + 1 > node.max_pods {
        short.push("Too many pods".to_string());
    }
    if facts.requests.milli_cpu > 0
        && usage.requested.milli_cpu + facts.requests.milli_cpu > node.allocatable.milli_cpu
    {
        short.push("Insufficient cpu".into());
    }
    if facts.requests.memory > 0
        && usage.requested.memory + facts.requests.memory > node.allocatable.memory
    {
        short.push("Insufficient memory".into());
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(short)
    }
}

fn unschedulable_taint() -> Taint {
    Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }
}

pub fn toleration_matches(tol: &Toleration, t: &Taint) -> bool {
    let effect_ok = tol
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == t.effect);
    let key = tol.key.as_deref().unwrap_or("");
    let op = tol.operator.as_deref().unwrap_or("Equal");
    let key_ok = (key.is_empty() && op == "Exists") || key == t.key;
    let value_ok =
        op == "Exists" || tol.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("");
    effect_ok && key_ok && value_ok
}

pub fn tolerates(pod: &Pod, t: &Taint) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .is_some_and(|ts| ts.iter().any(|tol| toleration_matches(tol, t)))
}

fn requirement(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

fn matches_affinity(pod: &Pod, node: &NodeInfo) -> bool {
    pod.spec
        .as_ref()
        .is_none_or(|spec| node_matches(spec, &node.labels, &node.name))
}

/// `nodeSelector` and required node affinity of `spec` against a node's labels and name
/// (terms ORed, requirements ANDed; `metadata.name` is the only field; an empty term matches
/// nothing). Also the DaemonSet controller's test of which nodes run a daemon pod.
pub fn node_matches(spec: &PodSpec, labels: &BTreeMap<String, String>, name: &str) -> bool {
    if let Some(selector) = &spec.node_selector {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| selector_matches(r, labels, name))
}

/// Any of the selector's terms matches the node (a term: all its requirements).
fn selector_matches(
    required: &NodeSelector,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let name = name.to_string();
    required.node_selector_terms.iter().any(|term| {
        let exprs = term
            .match_expressions
            .iter()
            .flatten()
            .all(|r| requirement(r, labels.get(&r.key)));
        let fields = term
            .match_fields
            .iter()
            .flatten()
            .all(|r| r.key == "metadata.name" && requirement(r, Some(&name)));
        let empty = term.match_expressions.as_ref().is_none_or(|e| e.is_empty())
            && term.match_fields.as_ref().is_none_or(|f| f.is_empty());
        !empty && exprs && fields
    })
}
