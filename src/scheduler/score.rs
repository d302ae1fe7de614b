//! Scores (0-100 each): least allocated, balanced allocation, and spreading the pods of one
//! owner across nodes (weighted twice, as upstream's topology spreading).

use super::cache::{NodeInfo, PodFacts, Usage};

fn fraction(used: i64, alloc: i64) -> f64 {
    if alloc <= 0 {
        1.0
    } else {
        (used as f64 / alloc as f64).min(1.0)
    }
}

pub fn score(facts: &PodFacts, node: &NodeInfo, u: &Usage, max_owner_pods: u32) -> f64 {
    let cpu = fraction(
        u.requested.milli_cpu + facts.requests.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let mem = fraction(
        u.requested.memory + facts.requests.memory,
        node.allocatable.memory,
    );
    let least_allocated = ((1.0 - cpu) + (1.0 - mem)) * 50.0;
    let balanced = (1.0 - (cpu - mem).abs()) * 100.0;
    let same_owner = facts.owner.map_or(0, |o| u.owner_pods(o));
    let spread = if max_owner_pods == 0 {
        100.0
    } else {
        100.0 * (1.0 - f64::from(same_owner) / f64::from(max_owner_pods))
    };
    least_allocated + balanced + 2.0 * spread
}
