//! One scheduling decision: filter a sample of nodes (as many feasible ones as upstream's
//! percentageOfNodesToScore asks for), score them, take the best.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use rand::Rng;

use super::cache::{Cache, PodFacts};
use super::filter;
use super::score;

/// Why a pod fits no node: reason -> number of nodes, as upstream's FitError.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nodes == 0 {
            return write!(f, "no nodes available to schedule pods");
        }
        // Sorted as strings, count first, as upstream does.
        let mut reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        reasons.sort();
        write!(
            f,
            "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.",
            reasons.join(", "),
            n = self.nodes
        )
    }
}

/// How many feasible nodes to find before scoring (upstream's adaptive percentage).
pub fn feasible_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let pct = (50 - nodes as i64 / 125).max(5) as usize;
    (nodes * pct / 100).max(100)
}

pub fn schedule(cache: &mut Cache, pod: &Pod, facts: &PodFacts) -> Result<String, FitError> {
    let n = cache.slots.len();
    let want = feasible_to_find(n);
    let mut feasible: Vec<usize> = Vec::with_capacity(want.min(n));
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let start = if n == 0 { 0 } else { cache.next_start % n };
    let mut processed = 0;
    for i in 0..n {
        let idx = (start + i) % n;
        processed += 1;
        let slot = &cache.slots[idx];
        match filter::fits(pod, facts, &slot.info, &slot.usage) {
            Ok(()) => {
                feasible.push(idx);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    cache.next_start = start + processed;
    if feasible.is_empty() {
        return Err(FitError { nodes: n, reasons });
    }
    let max_owner = facts
        .owner
        .map(|o| {
            feasible
                .iter()
                .map(|&i| cache.slots[i].usage.owner_pods(o))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let mut rng = rand::thread_rng();
    let (mut best, mut best_score, mut ties) = (feasible[0], f64::MIN, 0u32);
    for &i in &feasible {
        let slot = &cache.slots[i];
        let s = score::score(facts, &slot.info, &slot.usage, max_owner);
        if s > best_score + 1e-9 {
            (best, best_score, ties) = (i, s, 1);
        } else if (s - best_score).abs() <= 1e-9 {
            // Reservoir choice among equal scores.
            ties += 1;
            if rng.gen_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    Ok(cache.slots[best].info.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(
        name: &str,
        cpu: &str,
        labels: serde_json::Value,
        taints: serde_json::Value,
    ) -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("node")
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": spec}))
            .expect("pod")
    }

    #[test]
    fn unschedulable_message_counts_reasons_like_upstream() {
        let mut c = Cache::default();
        c.upsert_node(&node("a", "1", json!({}), json!([])));
        c.upsert_node(&node(
            "b",
            "1",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        ));
        c.upsert_node(&node("c", "1", json!({"disk": "ssd"}), json!([])));
        c.upsert_node(&node("d", "4", json!({"disk": "hdd"}), json!([])));
        let p = pod(
            json!({"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "x", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        let err = schedule(&mut c, &p, &PodFacts::of(&p)).expect_err("fits nowhere");
        assert_eq!(
            err.to_string(),
            "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: db}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn picks_the_least_loaded_node_and_spreads_an_owner() {
        let mut c = Cache::default();
        for n in ["a", "b", "c"] {
            c.upsert_node(&node(n, "4", json!({}), json!([])));
        }
        let facts = PodFacts::of(&pod(
            json!({"containers": [{"name": "x", "resources": {"requests": {"cpu": "1"}}}]}),
        ))
        .with_owner("rs");
        let p = pod(json!({"containers": [{"name": "x"}]}));
        let mut used = std::collections::HashSet::new();
        for i in 0..3 {
            let n = schedule(&mut c, &p, &facts).expect("fits");
            c.assume(&format!("p{i}"), &n, facts.clone());
            used.insert(n);
        }
        assert_eq!(used.len(), 3, "three pods of one owner on three nodes");
    }
}
