//! Pod failure back-off: after `n` failures since the last success, a replacement pod waits
//! 10 s × 2^(n-1), at most 6 minutes, counted from the last failure (as upstream's
//! backoffRecord). Derived from the Job's finished pods, which the controller keeps.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

const BASE: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(6 * 60);

/// The back-off after `failures` consecutive failures (none for 0).
pub fn delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    BASE.saturating_mul(1u32 << (failures - 1).min(20)).min(MAX)
}

pub fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

/// When a finished pod finished: its last container termination, else its last condition
/// change, else its creation.
pub fn finished_at(p: &Pod) -> Option<Timestamp> {
    let st = p.status.as_ref();
    let terminated = st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let condition = || {
        st.and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
            .max()
    };
    terminated
        .or_else(condition)
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// (failures after the last success, time of the last failure) among `pods`.
pub fn failures_since_success<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> (u32, Option<Timestamp>) {
    let mut finished: Vec<(Timestamp, bool)> = pods
        .into_iter()
        .filter_map(|p| match phase(p) {
            Some("Succeeded") => Some((finished_at(p)?, true)),
            Some("Failed") => Some((finished_at(p)?, false)),
            _ => None,
        })
        .collect();
    finished.sort();
    let after: Vec<Timestamp> = finished
        .iter()
        .rev()
        .take_while(|(_, ok)| !ok)
        .map(|(t, _)| *t)
        .collect();
    (after.len() as u32, after.first().copied())
}

/// How long a new pod must still wait at `now`.
pub fn remaining<'a>(pods: impl IntoIterator<Item = &'a Pod>, now: Timestamp) -> Duration {
    let (n, last) = failures_since_success(pods);
    let Some(last) = last else {
        return Duration::ZERO;
    };
    let elapsed = now
        .duration_since(last)
        .as_millis()
        .clamp(0, u64::MAX as i128) as u64;
    delay(n).saturating_sub(Duration::from_millis(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, finished: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": phase, "containerStatuses": [{"name": "c", "ready": false,
                "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 1, "finishedAt": finished}}}]},
        }))
        .expect("pod")
    }

    #[test]
    fn delays_double_from_ten_seconds_and_cap_at_six_minutes() {
        let d: Vec<u64> = (0..7).map(|n| delay(n).as_secs()).collect();
        assert_eq!(d, [0, 10, 20, 40, 80, 160, 320]);
        assert_eq!(delay(7), MAX);
        assert_eq!(delay(100), MAX);
    }

    #[test]
    fn a_success_resets_the_count() {
        let pods = [
            pod("Failed", "2026-01-01T00:00:00Z"),
            pod("Succeeded", "2026-01-01T00:01:00Z"),
            pod("Failed", "2026-01-01T00:02:00Z"),
            pod("Failed", "2026-01-01T00:03:00Z"),
        ];
        let (n, last) = failures_since_success(&pods);
        assert_eq!(n, 2);
        assert_eq!(
            last.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T00:03:00Z")
        );
        let now: Timestamp = "2026-01-01T00:03:05Z".parse().expect("time");
        assert_eq!(remaining(&pods, now), Duration::from_secs(15));
        let later: Timestamp = "2026-01-01T00:04:00Z".parse().expect("time");
        assert_eq!(remaining(&pods, later), Duration::ZERO);
    }
}
