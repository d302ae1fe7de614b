//! RollingUpdate: scale the new ReplicaSet up within maxSurge, the old ones down within
//! maxUnavailable (upstream's rolling.go).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::replicasets::{self, available, replicas};
use super::DeploymentController;
use crate::controllers::runtime::ReconcileError;

fn resolve(v: Option<&IntOrString>, total: i32, round_up: bool, default_pct: i32) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: f64 = s
                .trim_end_matches('%')
                .parse()
                .unwrap_or(f64::from(default_pct));
            let exact = pct * f64::from(total) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
        None => {
            let exact = f64::from(default_pct) * f64::from(total) / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) in pods: surge rounded up, unavailable down; never both 0.
pub fn max_surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let total = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ru = spec
        .and_then(|s| s.strategy.as_ref())
        .filter(|s| s.type_.as_deref() != Some("Recreate"))
        .and_then(|s| s.rolling_update.as_ref());
    let Some(ru) = ru else { return (0, 0) };
    let surge = resolve(ru.max_surge.as_ref(), total, true, 25);
    let unavailable = resolve(ru.max_unavailable.as_ref(), total, false, 25);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable.min(total))
}

pub async fn rollout(
    c: &DeploymentController,
    d: &Deployment,
    new: &ReplicaSet,
    olds: &[Arc<ReplicaSet>],
    revision: i64,
) -> Result<bool, ReconcileError> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (surge, unavailable) = max_surge_and_unavailable(d);
    let all_replicas: i32 = olds.iter().map(|r| replicas(r)).sum::<i32>() + replicas(new);

    // Scale up the new ReplicaSet as far as the surge allows.
    let new_count = replicas(new);
    let target = if new_count > want {
        want
    } else if new_count < want {
        let room = (want + surge - all_replicas).max(0);
        new_count + room.min(want - new_count)
    } else {
        want
    };
    if target != new_count {
        replicasets::update(c, d, new, target, revision).await?;
        return Ok(true);
    }

    // Scale down old ReplicaSets as far as availability allows.
    let old_total: i32 = olds.iter().map(|r| replicas(r)).sum();
    if old_total == 0 {
        return Ok(false);
    }
    let min_available = want - unavailable;
    let new_unavailable = (replicas(new) - available(new)).max(0);
    let mut max_scale_down = all_replicas - min_available - new_unavailable;
    if max_scale_down <= 0 {
        return Ok(false);
    }
    let mut sorted: Vec<&Arc<ReplicaSet>> = olds.iter().filter(|r| replicas(r) > 0).collect();
    sorted.sort_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut changed = false;
    // First the unhealthy replicas of old sets: scaling them down costs no availability.
    let mut after: Vec<i32> = sorted.iter().map(|r| replicas(r)).collect();
    for (i, rs) in sorted.iter().enumerate() {
        if max_scale_down <= 0 {
            break;
        }
        let unhealthy = (after[i] - available(rs)).max(0);
        let cut = unhealthy.min(max_scale_down);
        after[i] -= cut;
        max_scale_down -= cut;
    }
    // Then available ones, while enough stay available.
    let total_available: i32 = sorted
        .iter()
        .zip(&after)
        .map(|(r, a)| available(r).min(*a))
        .sum::<i32>()
        + available(new);
    let mut can_remove = (total_available - min_available)
        .max(0)
        .min(max_scale_down.max(0));
    for a in after.iter_mut() {
        if can_remove <= 0 {
            break;
        }
        let cut = (*a).min(can_remove);
        *a -= cut;
        can_remove -= cut;
    }
    for (rs, a) in sorted.iter().zip(after) {
        if a != replicas(rs) {
            let rev = replicasets::revision(rs);
            changed |= replicasets::update(c, d, rs, a, rev).await?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({"spec": {"replicas": replicas, "selector": {}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}))
        .expect("deployment")
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        assert_eq!(
            max_surge_and_unavailable(&d(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(
            max_surge_and_unavailable(&d(10, json!(1), json!(0))),
            (1, 0)
        );
        assert_eq!(
            max_surge_and_unavailable(&d(3, json!(0), json!("10%"))),
            (0, 1),
            "never both 0"
        );
    }
}
