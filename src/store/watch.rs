//! Watches: applied events in revision order, from a bounded history or live.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::encryption::Codec;
use super::error::StoreError;
use super::state_machine::{Event, StateMachine};

/// Events buffered per watcher; a watcher that falls this far behind is closed and must
/// watch again from the last revision it saw (as a Kubernetes client does after a timeout).
const WATCHER_BUFFER: usize = 4096;

/// The receiving end of a watch. It ends when the replica stops, the watcher lags behind, or
/// an event's value cannot be decrypted (the error is logged; the watcher must list again,
/// which reports the error).
pub struct WatchStream {
    rx: mpsc::Receiver<Event>,
    /// Decrypts values encrypted at rest; `None`: events as stored.
    codec: Option<Codec>,
    ended: bool,
}

impl WatchStream {
    fn new(rx: mpsc::Receiver<Event>) -> Self {
        Self {
            rx,
            codec: None,
            ended: false,
        }
    }

    pub(crate) fn with_codec(mut self, codec: Option<Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// The next event, values in the clear.
    pub async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let e = self.rx.recv().await?;
        let Some(codec) = &self.codec else {
            return Some(e);
        };
        match codec.decode_event(e) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::error!("watch ended: {err}");
                self.ended = true;
                self.rx.close();
                None
            }
        }
    }

    /// The events as a channel, values in the clear as `next` gives them. A watch that can
    /// see encrypted values is decrypted by a task on the current tokio runtime.
    pub fn into_inner(mut self) -> mpsc::Receiver<Event> {
        if self.codec.is_none() {
            return self.rx;
        }
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = self.next() => match e {
                        Some(e) => {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
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
        Ok(WatchStream::new(rx))
    }

    /// The keys under `prefix` as they were at revision `at`: `current` with every later event
    /// undone (the rest of the keyspace is left as it is now). `Expired` when the history no
    /// longer reaches back to `at`.
    pub fn rewind(
        &self,
        current: &StateMachine,
        prefix: &str,
        at: u64,
    ) -> Result<StateMachine, StoreError> {
        if at >= current.revision() {
            return Ok(current.clone());
        }
        if at < self.compacted {
            return Err(StoreError::Expired {
                requested: at,
                compacted: self.compacted,
            });
        }
        let mut past = current.clone();
        let later = self.history.iter().rev().take_while(|e| e.revision() > at);
        for e in later.filter(|e| e.kv.key.starts_with(prefix)) {
            past.undo(e);
        }
        Ok(past.rewound_to(at))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::encryption::{Codec, Transformer};
    use crate::store::{EventKind, KeyValue};

    fn event(key: &str, value: Vec<u8>, rev: u64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value,
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
            prev: None,
        }
    }

    #[test]
    fn rewind_undoes_later_writes_under_the_prefix_only() {
        use crate::store::state_machine::StateMachine;
        use crate::store::Op;
        let mut sm = StateMachine::default();
        let mut hub = WatchHub::new(100, 0);
        let put = |k: &str, v: &str| Op::Create {
            key: k.into(),
            value: v.into(),
        };
        let mut apply = |sm: &mut StateMachine, ops: &[Op]| {
            let mut ev = Vec::new();
            sm.apply(ops, &mut ev).expect("apply");
            hub.publish(ev);
        };
        apply(&mut sm, &[put("/a/1", "one"), put("/b/1", "other")]);
        apply(&mut sm, &[put("/a/2", "two")]);
        let at = sm.revision();
        apply(
            &mut sm,
            &[Op::Update {
                key: "/a/1".into(),
                value: b"changed".to_vec(),
                expected_mod_revision: None,
            }],
        );
        apply(
            &mut sm,
            &[Op::Delete {
                key: "/a/2".into(),
                expected_mod_revision: None,
            }],
        );
        apply(&mut sm, &[put("/a/3", "three"), put("/b/2", "later")]);
        let past = hub.rewind(&sm, "/a/", at).expect("in history");
        assert_eq!(past.revision(), at);
        let (kvs, _) = past.list("/a/", None, 0);
        let got: Vec<(&str, &[u8], u64)> = kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice(), kv.mod_revision))
            .collect();
        assert_eq!(
            got,
            [("/a/1", &b"one"[..], 1), ("/a/2", &b"two"[..], 2)],
            "the prefix as it was"
        );
        let (now, remaining) = sm.list("/a/", None, 1);
        assert_eq!((now[0].value.as_slice(), remaining), (&b"changed"[..], 1));
        let mut small = WatchHub::new(1, 0);
        small.publish(vec![event("/a/1", b"x".to_vec(), 1)]);
        small.publish(vec![event("/a/1", b"y".to_vec(), 2)]);
        assert!(matches!(
            small.rewind(&sm, "/a/", 0),
            Err(StoreError::Expired { .. })
        ));
    }

    #[tokio::test]
    async fn events_are_decrypted_and_a_bad_one_ends_the_watch() {
        let t = Arc::new(Transformer::new(vec![("key1".into(), [1; 32])]).expect("t"));
        let codec = Codec::new(t.clone(), None);
        let key = "/registry/secrets/ns/s";
        let sealed = t.to_storage(key, b"plain".to_vec()).expect("seal");
        let mut hub = WatchHub::new(16, 0);
        let mut direct = hub
            .watch("/registry/secrets/".into(), 0)
            .expect("watch")
            .with_codec(Some(codec.clone()));
        let mut channel = hub
            .watch("/registry/secrets/".into(), 0)
            .expect("watch")
            .with_codec(Some(codec))
            .into_inner();
        let foreign = Transformer::new(vec![("key9".into(), [9; 32])]).expect("t");
        let unreadable = foreign.to_storage(key, b"x".to_vec()).expect("seal");
        hub.publish(vec![event(key, sealed, 1)]);
        hub.publish(vec![event(key, unreadable, 2)]);
        hub.publish(vec![event(key, b"late".to_vec(), 3)]);
        assert_eq!(direct.next().await.expect("event").kv.value, b"plain");
        assert!(
            direct.next().await.is_none(),
            "undecryptable event delivered"
        );
        assert!(
            direct.next().await.is_none(),
            "watch went on after the error"
        );
        assert_eq!(channel.recv().await.expect("event").kv.value, b"plain");
        assert!(channel.recv().await.is_none());
    }
}
