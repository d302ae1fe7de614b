//! The replicated state machine: an ordered key-value map with a cluster-wide revision.
//!
//! Every replica applies the same commands in the same order, so success or conflict is decided
//! here, at apply time, from nothing but the current state: all replicas agree.

use std::collections::HashMap;
use std::ops::Bound;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// One stored key with its revisions (the etcd `KeyValue` model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (kept across updates).
    pub create_revision: u64,
    /// Revision of the last write to the key: Kubernetes' `resourceVersion`.
    pub mod_revision: u64,
    /// Number of writes since creation.
    pub version: u64,
}

/// One write operation. A command is a list of them, applied all-or-nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Fails with `AlreadyExists` if the key exists.
    Create { key: String, value: Vec<u8> },
    /// Fails with `NotFound` if the key is missing, `Conflict` if the expected revision differs.
    Update {
        key: String,
        value: Vec<u8>,
        expected_mod_revision: Option<u64>,
    },
    /// Fails with `NotFound` if the key is missing, `Conflict` if the expected revision differs.
    Delete {
        key: String,
        expected_mod_revision: Option<u64>,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// Outcome of one applied op: the key before and after (after is `None` for a delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpResult {
    pub prev: Option<KeyValue>,
    pub current: Option<KeyValue>,
}

/// Outcome of an applied command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// The store revision the command produced.
    pub revision: u64,
    pub results: Vec<OpResult>,
}

/// A change as delivered to watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put the new value; for a delete the last value with `mod_revision` = deletion revision.
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }
}

/// The serialized form of the whole state machine, carried in Raft snapshots.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    revision: u64,
    kvs: Vec<KeyValue>,
}

/// Cloning is O(1) (a persistent map sharing structure), so a snapshot can be serialized off
/// the Raft thread while writes go on.
#[derive(Default, Clone)]
pub struct StateMachine {
    kvs: OrdMap<String, KeyValue>,
    revision: u64,
}

impl StateMachine {
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn key_count(&self) -> usize {
        self.kvs.len()
    }

    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.kvs.get(key)
    }

    /// Keys starting with `prefix`, strictly after `start_after` when given, at most `limit`
    /// (0 = no limit), and how many more keys of the prefix follow.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> (Vec<KeyValue>, usize) {
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let mut iter = self
            .kvs
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone());
        if limit == 0 {
            return (iter.collect(), 0);
        }
        let items: Vec<KeyValue> = iter.by_ref().take(limit).collect();
        (items, iter.count())
    }

    /// This state as it was before `e` (the last event applied to the key) happened.
    pub fn undo(&mut self, e: &Event) {
        match (&e.kind, &e.prev) {
            (_, Some(prev)) => {
                self.kvs.insert(prev.key.clone(), prev.clone());
            }
            (EventKind::Put, None) => {
                self.kvs.remove(&e.kv.key);
            }
            (EventKind::Delete, None) => {}
        }
    }

    /// Sets the revision of a state rebuilt by `undo`.
    pub fn rewound_to(mut self, revision: u64) -> Self {
        self.revision = revision;
        self
    }

    /// Applies `ops` atomically: either all succeed (one new revision) or none is applied and
    /// the first failing op's error is returned. Events are appended for watchers.
    pub fn apply(
        &mut self,
        ops: &[Op],
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse, StoreError> {
        let rev = self.revision + 1;
        // Pending view of the keys this command touches, so later ops see earlier ones.
        let mut staged: HashMap<&str, Option<KeyValue>> = HashMap::new();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let prev = match staged.get(key) {
                Some(v) => v.clone(),
                None => self.kvs.get(key).cloned(),
            };
            let current = match op {
                Op::Create { value, .. } => {
                    if prev.is_some() {
                        return Err(StoreError::AlreadyExists { key: key.into() });
                    }
                    Some(KeyValue {
                        key: key.into(),
                        value: value.clone(),
                        create_revision: rev,
                        mod_revision: rev,
                        version: 1,
                    })
                }
                Op::Update {
                    value,
                    expected_mod_revision,
                    ..
                } => {
                    let old = check_existing(key, prev.as_ref(), *expected_mod_revision)?;
                    Some(KeyValue {
                        key: key.into(),
                        value: value.clone(),
                        create_revision: old.create_revision,
                        mod_revision: rev,
                        version: old.version + 1,
                    })
                }
                Op::Delete {
                    expected_mod_revision,
                    ..
                } => {
                    check_existing(key, prev.as_ref(), *expected_mod_revision)?;
                    None
                }
            };
            staged.insert(key, current.clone());
            results.push(OpResult { prev, current });
        }
        if results.is_empty() {
            return Ok(TxnResponse {
                revision: self.revision,
                results,
            });
        }
        self.revision = rev;
        for r in &results {
            events.push(match (&r.current, &r.prev) {
                (Some(kv), _) => {
                    self.kvs.insert(kv.key.clone(), kv.clone());
                    Event {
                        kind: EventKind::Put,
                        kv: kv.clone(),
                        prev: r.prev.clone(),
                    }
                }
                (None, Some(old)) => {
                    self.kvs.remove(&old.key);
                    Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            mod_revision: rev,
                            ..old.clone()
                        },
                        prev: Some(old.clone()),
                    }
                }
                (None, None) => continue,
            });
        }
        Ok(TxnResponse {
            revision: rev,
            results,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let data = SnapshotData {
            revision: self.revision,
            kvs: self.kvs.values().cloned().collect(),
        };
        postcard::to_stdvec(&data).map_err(|e| StoreError::Storage(format!("encode snapshot: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let data: SnapshotData = postcard::from_bytes(bytes)
            .map_err(|e| StoreError::Storage(format!("decode snapshot: {e}")))?;
        Ok(Self {
            revision: data.revision,
            kvs: data
                .kvs
                .into_iter()
                .map(|kv| (kv.key.clone(), kv))
                .collect(),
        })
    }
}

fn check_existing<'a>(
    key: &str,
    prev: Option<&'a KeyValue>,
    expected: Option<u64>,
) -> Result<&'a KeyValue, StoreError> {
    let old = prev.ok_or_else(|| StoreError::NotFound { key: key.into() })?;
    match expected {
        Some(exp) if exp != old.mod_revision => Err(StoreError::Conflict {
            key: key.into(),
            expected: exp,
            actual: old.mod_revision,
        }),
        _ => Ok(old),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(k: &str, v: &str) -> Op {
        Op::Create {
            key: k.into(),
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn txn_sees_its_own_earlier_ops_and_is_atomic() {
        let mut sm = StateMachine::default();
        let mut ev = Vec::new();
        let ops = vec![
            create("/a", "1"),
            Op::Update {
                key: "/a".into(),
                value: b"2".to_vec(),
                expected_mod_revision: Some(1),
            },
        ];
        let r = sm.apply(&ops, &mut ev).expect("txn applies");
        assert_eq!(r.revision, 1);
        assert_eq!(sm.get("/a").map(|kv| kv.version), Some(2));
        let bad = vec![create("/b", "x"), create("/a", "again")];
        assert!(matches!(
            sm.apply(&bad, &mut ev),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(sm.get("/b").is_none());
        assert_eq!(sm.revision(), 1);
    }

    #[test]
    fn snapshot_round_trip_keeps_revisions() {
        let mut sm = StateMachine::default();
        let mut ev = Vec::new();
        sm.apply(&[create("/x", "1")], &mut ev).expect("create");
        sm.apply(&[create("/y", "2")], &mut ev).expect("create");
        let back = StateMachine::decode(&sm.encode().expect("encode")).expect("decode");
        assert_eq!(back.revision(), 2);
        assert_eq!(back.get("/y").map(|kv| kv.create_revision), Some(2));
        assert!(StateMachine::decode(b"\xff\xff\xff").is_err());
    }
}
