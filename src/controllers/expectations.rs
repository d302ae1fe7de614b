//! Expectations: pods a controller (ReplicaSet, DaemonSet, Job) is creating or deleting that
//! the informer has not shown yet. Until they are seen (or expire), the owner is not acted on
//! again, so a lagging cache never causes extra creations or deletions. Creations are counted
//! (the names come from generateName) and raised before the requests go out, so a watch event
//! that overtakes the response is still counted; deletions are tracked by uid.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Upstream waits 5 minutes; a lost event here only delays the next step.
const EXPIRY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Expected {
    adds: i64,
    dels: HashSet<String>,
    since: Option<Instant>,
}

#[derive(Default)]
pub struct Expectations {
    by_key: HashMap<String, Expected>,
    /// Pods seen so far, to tell a new pod from a changed one.
    seen: HashSet<String>,
}

impl Expectations {
    fn entry(&mut self, key: &str) -> &mut Expected {
        let e = self.by_key.entry(key.to_string()).or_default();
        e.since = Some(Instant::now());
        e
    }

    pub fn expect_adds(&mut self, key: &str, n: usize) {
        self.entry(key).adds += n as i64;
    }

    /// Creations that failed will never be seen.
    pub fn lower_adds(&mut self, key: &str, n: usize) {
        self.entry(key).adds -= n as i64;
    }

    pub fn expect_dels(&mut self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.entry(key).dels.extend(uids);
    }

    /// A change of a pod controlled by `key` was seen.
    pub fn observed(&mut self, key: &str, uid: &str, gone: bool) {
        let new = !gone && self.seen.insert(uid.to_string());
        if gone {
            self.seen.remove(uid);
        }
        if let Some(e) = self.by_key.get_mut(key) {
            if new {
                e.adds -= 1;
            }
            if gone {
                e.dels.remove(uid);
            }
        }
    }

    /// `None`: free to act; `Some(d)`: wait (at most `d`).
    pub fn wait(&mut self, key: &str) -> Option<Duration> {
        let e = self.by_key.get(key)?;
        let waited = e.since.map_or(EXPIRY, |s| s.elapsed());
        if (e.adds <= 0 && e.dels.is_empty()) || waited >= EXPIRY {
            self.by_key.remove(key);
            return None;
        }
        Some(EXPIRY - waited)
    }

    pub fn forget(&mut self, key: &str) {
        self.by_key.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_counted_even_when_the_event_comes_first() {
        let mut e = Expectations::default();
        e.observed("ns/rs", "old", false);
        e.expect_adds("ns/rs", 2);
        assert!(e.wait("ns/rs").is_some());
        e.observed("ns/rs", "old", false);
        assert!(
            e.wait("ns/rs").is_some(),
            "a change of a known pod is no creation"
        );
        e.observed("ns/rs", "p1", false);
        e.observed("ns/rs", "p2", false);
        assert!(e.wait("ns/rs").is_none());
    }

    #[test]
    fn deletions_by_uid() {
        let mut e = Expectations::default();
        e.expect_dels("k", ["a".to_string()]);
        e.observed("k", "b", true);
        assert!(e.wait("k").is_some());
        e.observed("k", "a", true);
        assert!(e.wait("k").is_none());
    }
}
