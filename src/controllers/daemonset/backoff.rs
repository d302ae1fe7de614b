//! Back-off for recreating failed daemon pods, per DaemonSet and node: a node that keeps
//! rejecting a pod must not make the controller fight it in a hot loop (upstream's
//! failedPodsBackoff: 1 s doubling to 15 min).

use std::collections::HashMap;
use std::time::{Duration, Instant};

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct Backoff {
    /// Last failure and the current delay, by `ds-key/node`.
    entries: HashMap<String, (Instant, Duration)>,
}

impl Backoff {
    /// Time left before the next recreation may happen, if still backing off.
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let (at, delay) = self.entries.get(key)?;
        let until = *at + *delay;
        (now < until).then(|| until - now)
    }

    /// Records a failure: the delay doubles, starting over after a long quiet spell.
    pub fn next(&mut self, key: &str, now: Instant) {
        self.entries
            .retain(|_, (at, _)| now.duration_since(*at) <= 2 * MAX);
        let delay = match self.entries.get(key) {
            Some((_, d)) => (*d * 2).min(MAX),
            None => INITIAL,
        };
        self.entries.insert(key.to_string(), (now, delay));
    }

    /// The DaemonSet is gone.
    pub fn forget(&mut self, ds_key: &str) {
        let prefix = format!("{ds_key}/");
        self.entries.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_expires() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.remaining("ns/ds/n1", t0).is_none());
        b.next("ns/ds/n1", t0);
        assert_eq!(b.remaining("ns/ds/n1", t0), Some(INITIAL));
        b.next("ns/ds/n1", t0);
        assert_eq!(b.remaining("ns/ds/n1", t0), Some(2 * INITIAL));
        assert!(b.remaining("ns/ds/n1", t0 + 3 * INITIAL).is_none());
        b.forget("ns/ds");
        assert!(b.remaining("ns/ds/n1", t0).is_none());
    }
}
