//! The pod a DaemonSet runs on a node: its template with the automatic tolerations and the
//! revision hash label, owned by the DaemonSet, pinned to the node by required node affinity
//! (`matchFields metadata.name In [node]`) so the scheduler binds it, as upstream since 1.12.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec,
};
use kube::ResourceExt;

use super::eligible::add_daemon_tolerations;
use crate::controllers::pods::{from_template, owner_ref};
use crate::controllers::revisions::HASH_LABEL;

/// Set on DaemonSets by upstream's API server; pods then carry it as a label.
const GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
const GENERATION_LABEL: &str = "pod-template-generation";

/// Upstream's CreatePodTemplate.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let spec = t.spec.get_or_insert_with(Default::default);
    add_daemon_tolerations(spec);
    let labels = t
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    if let Some(g) = ds.annotations().get(GENERATION_ANNOTATION) {
        labels.insert(GENERATION_LABEL.into(), g.clone());
    }
    if !hash.is_empty() {
        labels.insert(HASH_LABEL.into(), hash.into());
    }
    t
}

/// Replaces the required node selector with one naming the node: the controller has
/// already checked the rest of the affinity (upstream's ReplaceDaemonSetPodNodeNameNodeAffinity).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    a
}

pub fn pod_for(ds: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let owner = owner_ref("apps/v1", "DaemonSet", &ds.metadata);
    let mut pod = from_template(template, owner, ds.namespace());
    pod.metadata.generate_name = Some(format!("{}-", ds.name_any()));
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::daemonset::eligible::target_node;
    use serde_json::json;

    #[test]
    fn pods_are_labelled_tolerant_and_pinned() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "agent", "namespace": "ns", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "k", "operator": "Exists"}]}]}}}}}}}))
        .expect("ds");
        let t = pod_template(&ds, "abc");
        let pod = pod_for(&ds, &t, "n2");
        assert_eq!(
            pod.labels().get(HASH_LABEL).map(String::as_str),
            Some("abc")
        );
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("a"));
        assert_eq!(target_node(&pod).as_deref(), Some("n2"));
        let spec = pod.spec.expect("spec");
        let terms = spec
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms;
        assert_eq!(terms.len(), 1, "the old terms are replaced");
        assert!(spec.tolerations.is_some_and(|t| t.len() >= 6));
        let owner = pod.metadata.owner_references.expect("owner");
        assert_eq!(
            (owner[0].kind.as_str(), owner[0].uid.as_str()),
            ("DaemonSet", "u1")
        );
    }
}
