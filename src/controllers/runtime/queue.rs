//! The work queue of object keys: deduplicated, one reconcile per key at a time, and
//! per-key exponential back-off after failures (as client-go's rate-limited queue).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct WorkQueue {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    /// Added again while running: queued once the running reconcile ends.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

impl WorkQueue {
    pub fn add(&mut self, key: String) {
        if self.running.contains(&key) {
            self.dirty.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    /// The next key to reconcile; it counts as running until `done`.
    pub fn next(&mut self) -> Option<String> {
        let key = self.queue.pop_front()?;
        self.queued.remove(&key);
        self.running.insert(key.clone());
        Some(key)
    }

    pub fn done(&mut self, key: &str) {
        self.running.remove(key);
        if self.dirty.remove(key) {
            self.add(key.to_string());
        }
    }

    pub fn forget(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// The delay before retrying a key that failed again.
    pub fn backoff(&mut self, key: &str) -> Duration {
        let n = self.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        BACKOFF_BASE
            .saturating_mul(1u32 << (*n - 1).min(20))
            .min(BACKOFF_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deduplicated_and_never_run_twice_at_once() {
        let mut q = WorkQueue::default();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        let a = q.next().expect("a");
        assert_eq!(a, "a");
        q.add("a".into());
        assert_eq!(q.next().as_deref(), Some("b"));
        assert!(q.next().is_none(), "a is running: not handed out again");
        q.done(&a);
        assert_eq!(
            q.next().as_deref(),
            Some("a"),
            "re-added while running: queued after"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut q = WorkQueue::default();
        let d: Vec<Duration> = (0..3).map(|_| q.backoff("k")).collect();
        assert_eq!(
            d,
            [
                Duration::from_millis(5),
                Duration::from_millis(10),
                Duration::from_millis(20)
            ]
        );
        for _ in 0..30 {
            q.backoff("k");
        }
        assert_eq!(q.backoff("k"), BACKOFF_MAX);
        q.forget("k");
        assert_eq!(q.backoff("k"), Duration::from_millis(5));
    }
}
