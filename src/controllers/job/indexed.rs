//! Indexed completion mode: each pod carries its completion index; an index is done once one
//! of its pods succeeded; `status.completedIndexes` is the compressed range list ("0-2,4").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The completion index of a pod (annotation, else label), if valid.
pub fn index_of(p: &Pod) -> Option<i32> {
    let m = &p.metadata;
    let from =
        |map: &Option<BTreeMap<String, String>>| map.as_ref()?.get(INDEX_KEY)?.parse::<i32>().ok();
    from(&m.annotations)
        .or_else(|| from(&m.labels))
        .filter(|i| *i >= 0)
}

/// Compressed ranges of sorted indexes: consecutive runs as "a-b", lone ones as "a".
pub fn ranges(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in set {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some(r) => {
                out.push(fmt_run(r));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    out.extend(run.map(fmt_run));
    out.join(",")
}

fn fmt_run((a, b): (i32, i32)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// Indexes below `completions` with a succeeded pod.
pub fn succeeded(pods: &[Arc<Pod>], completions: i32) -> BTreeSet<i32> {
    pods.iter()
        .filter(|p| super::backoff::phase(p) == Some("Succeeded"))
        .filter_map(|p| index_of(p))
        .filter(|i| *i < completions)
        .collect()
}

/// What to do with the active pods of an Indexed Job: the active pods to delete (index out
/// of range, already succeeded, a duplicate, or beyond `parallelism`) and the indexes to
/// create pods for (lowest first, filling up to `parallelism`).
pub fn plan(
    active: &[Arc<Pod>],
    done: &BTreeSet<i32>,
    completions: i32,
    parallelism: usize,
) -> (Vec<Arc<Pod>>, Vec<i32>) {
    let mut keep: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut delete = Vec::new();
    for p in active {
        match index_of(p) {
            Some(i) if i < completions && !done.contains(&i) && !keep.contains_key(&i) => {
                keep.insert(i, p.clone());
            }
            _ => delete.push(p.clone()),
        }
    }
    // Too many for parallelism: drop the highest indexes first.
    while keep.len() > parallelism {
        if let Some((_, p)) = keep.pop_last() {
            delete.push(p);
        }
    }
    let room = parallelism - keep.len();
    let create = (0..completions.max(0))
        .filter(|i| !done.contains(i) && !keep.contains_key(i))
        .take(room)
        .collect();
    (delete, create)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(index: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("j-{index}"), "annotations": {INDEX_KEY: index}},
                "status": {"phase": phase},
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn completed_indexes_compress_to_ranges() {
        let s = |v: &[i32]| ranges(&v.iter().copied().collect());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&[3]), "3");
        assert_eq!(s(&[0, 1, 2, 4]), "0-2,4");
        assert_eq!(s(&[1, 3, 5, 7, 8]), "1,3,5,7-8");
        assert_eq!(s(&[0, 1, 2, 3, 4]), "0-4");
    }

    #[test]
    fn succeeded_indexes_ignore_failures_and_out_of_range() {
        let pods = vec![
            pod("0", "Succeeded"),
            pod("1", "Failed"),
            pod("2", "Succeeded"),
            pod("9", "Succeeded"),
            pod("x", "Succeeded"),
        ];
        assert_eq!(succeeded(&pods, 5), [0, 2].into());
    }

    #[test]
    fn plan_fills_lowest_missing_indexes_and_drops_duplicates() {
        let active = vec![
            pod("1", "Running"),
            pod("1", "Running"),
            pod("7", "Running"),
        ];
        let done: BTreeSet<i32> = [0].into();
        let (delete, create) = plan(&active, &done, 5, 3);
        assert_eq!(delete.len(), 2, "a duplicate of 1 and the out-of-range 7");
        assert_eq!(create, [2, 3]);
        let (delete, create) = plan(&active, &done, 5, 0);
        assert_eq!(delete.len(), 3);
        assert!(create.is_empty());
    }
}
