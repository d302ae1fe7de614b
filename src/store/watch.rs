//! Watches: applied events in revision order, from a bounded history or live.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::error::StoreError;
use super::state_machine::Event;

/// Events buffered per watcher; a watcher that falls this far behind is closed and must
/// watch again from the last revision it saw (as a Kubernetes client does after a timeout).
const WATCHER_BUFFER: usize = 4096;

/// The receiving end of a watch. It ends when the replica stops or the watcher lags behind.
pub struct WatchStream {
    rx: mpsc::Receiver<Event>,
}

impl WatchStream {
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    pub fn into_inner(self) -> mpsc::Receiver<Event> {
        self.rx
    }
}

struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Event>,
}

pub struct WatchHub {
    history: VecDeque<Event>,
    capacity: usize,
    /// Every event with a revision above this one is still in `history`.
    compacted: u64,
    watchers: Vec<Watcher>,
}

impl WatchHub {
    pub fn new(capacity: usize, revision: u64) -> Self {
        Self {
            history: VecDeque::new(),
            capacity: capacity.max(1),
            compacted: revision,
            watchers: Vec::new(),
        }
    }

    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Starts a watch on keys under `prefix` delivering every event with a revision greater
    /// than `after`; history is replayed first, then live events follow.
    pub fn watch(&mut self, prefix: String, after: u64) -> Result<WatchStream, StoreError> {
        if after < self.compacted {
            return Err(StoreError::Expired {
                requested: after,
                compacted: self.compacted,
            });
        }
        let backlog: Vec<&Event> = self
            .history
            .iter()
            .filter(|e| e.revision() > after && e.kv.key.starts_with(&prefix))
            .collect();
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER.max(backlog.len() + 1));
        for e in backlog {
            // Capacity was sized for the backlog, so this cannot fail.
            let _ = tx.try_send(e.clone());
        }
        self.watchers.push(Watcher { prefix, tx });
        Ok(WatchStream { rx })
    }

    /// Records applied events and fans them out; closes watchers that are gone or too slow.
    pub fn publish(&mut self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.watchers.retain(|w| {
            for e in events.iter().filter(|e| e.kv.key.starts_with(&w.prefix)) {
                if w.tx.try_send(e.clone()).is_err() {
                    return false;
                }
            }
            !w.tx.is_closed()
        });
        for e in events {
            if self.history.len() == self.capacity {
                self.trim_oldest();
            }
            self.history.push_back(e);
        }
    }

    /// Drops the oldest revision entirely, so history never holds half a transaction.
    fn trim_oldest(&mut self) {
        if let Some(rev) = self.history.front().map(Event::revision) {
            while self.history.front().is_some_and(|e| e.revision() == rev) {
                self.history.pop_front();
            }
            self.compacted = rev;
        }
    }

    /// The state jumped (snapshot installed): history no longer describes it. Watchers are
    /// closed; they watch again and get `Expired` if they were behind.
    pub fn reset(&mut self, revision: u64) {
        self.history.clear();
        self.watchers.clear();
        self.compacted = revision;
    }
}
