//! Requests waiting on the Raft log: proposals until applied, linearizable reads until the
//! replica has applied up to the leader's read index.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::error::StoreError;
use super::state_machine::{KeyValue, Op, TxnResponse};

/// What goes into a log entry: the ops plus who proposed them, in which term.
///
/// An entry is applied only if its log term equals `term`. A proposal re-forwarded to a later
/// leader is thus ignored by every replica alike, and a proposer that sees an entry of a
/// newer term applied knows for sure that its older pending proposals are lost.
#[derive(Serialize, Deserialize)]
pub struct Envelope {
    pub node: u64,
    pub seq: u64,
    pub term: u64,
    pub ops: Vec<Op>,
}

pub type WriteResult = Result<TxnResponse, StoreError>;

struct PendingWrite {
    term: u64,
    started: Instant,
    tx: oneshot::Sender<WriteResult>,
}

#[derive(Default)]
pub struct Proposals {
    next_seq: u64,
    pending: HashMap<u64, PendingWrite>,
}

impl Proposals {
    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn add(&mut self, seq: u64, term: u64, tx: oneshot::Sender<WriteResult>) {
        let started = Instant::now();
        self.pending.insert(seq, PendingWrite { term, started, tx });
    }

    /// Answers a proposal; returns how long it took from propose to apply.
    pub fn complete(&mut self, seq: u64, result: WriteResult) -> Option<Duration> {
        let p = self.pending.remove(&seq)?;
        let _ = p.tx.send(result);
        Some(p.started.elapsed())
    }

    /// Fails proposals made in a term older than `term`: an entry of `term` was applied, so
    /// every entry of an older term that will ever commit already has.
    pub fn fail_older_than(&mut self, term: u64) -> usize {
        self.fail_where(
            |p| p.term < term,
            || StoreError::ProposalDropped(format!("leader changed (now term {term})")),
        )
    }

    pub fn fail_expired(&mut self, timeout: Duration) -> usize {
        self.fail_where(
            |p| p.started.elapsed() >= timeout,
            || StoreError::Unavailable(format!("no commit within {timeout:?}")),
        )
    }

    pub fn fail_all(&mut self, err: impl Fn() -> StoreError) -> usize {
        self.fail_where(|_| true, err)
    }

    fn fail_where(
        &mut self,
        cond: impl Fn(&PendingWrite) -> bool,
        err: impl Fn() -> StoreError,
    ) -> usize {
        let doomed: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| cond(p))
            .map(|(&s, _)| s)
            .collect();
        for seq in &doomed {
            if let Some(p) = self.pending.remove(seq) {
                let _ = p.tx.send(Err(err()));
            }
        }
        doomed.len()
    }
}

/// A read query against the state machine.
#[derive(Clone, Debug)]
pub enum Query {
    Get {
        key: String,
    },
    List {
        prefix: String,
        start_after: Option<String>,
        limit: usize,
        /// Read the keys as they were at this revision (from the watch history); `None`: now.
        at: Option<u64>,
    },
}

/// A query answer with the store revision it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryResult {
    pub revision: u64,
    pub kvs: Vec<KeyValue>,
    /// For lists: how many more keys follow the last one returned.
    pub remaining: usize,
}

pub type ReadResult = Result<QueryResult, StoreError>;

pub struct PendingRead {
    pub query: Query,
    started: Instant,
    tx: oneshot::Sender<ReadResult>,
}

impl PendingRead {
    pub fn new(query: Query, tx: oneshot::Sender<ReadResult>) -> Self {
        Self {
            query,
            started: Instant::now(),
            tx,
        }
    }

    pub fn answer(self, r: ReadResult) {
        let _ = self.tx.send(r);
    }
}

/// Linearizable reads: all reads queued between two flushes share one ReadIndex request.
#[derive(Default)]
pub struct Reads {
    queued: Vec<PendingRead>,
    next_ctx: u64,
    /// ReadIndex requests sent: ctx -> (sent at, reads).
    inflight: HashMap<u64, (Instant, Vec<PendingRead>)>,
    /// Confirmed: serve once applied >= index.
    confirmed: Vec<(u64, Vec<PendingRead>)>,
}

impl Reads {
    pub fn queue(&mut self, r: PendingRead) {
        self.queued.push(r);
    }

    /// Takes the queued reads as one batch, returning the ReadIndex context to request.
    pub fn start_batch(&mut self) -> Option<Vec<u8>> {
        if self.queued.is_empty() {
            return None;
        }
        self.next_ctx += 1;
        let batch = std::mem::take(&mut self.queued);
        self.inflight.insert(self.next_ctx, (Instant::now(), batch));
        Some(self.next_ctx.to_be_bytes().to_vec())
    }

    pub fn confirm(&mut self, ctx: &[u8], index: u64) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        if let Some((_, batch)) = self.inflight.remove(&u64::from_be_bytes(bytes)) {
            self.confirmed.push((index, batch));
        }
    }

    /// Reads whose index has been applied.
    pub fn take_servable(&mut self, applied: u64) -> Vec<PendingRead> {
        let mut out = Vec::new();
        self.confirmed.retain_mut(|(index, batch)| {
            if *index <= applied {
                out.append(batch);
                false
            } else {
                true
            }
        });
        out
    }

    /// ReadIndex requests raft dropped silently (no leader yet, or a leader that has not
    /// committed in its term) go back to the queue after `retry`; reads older than `timeout`
    /// fail.
    pub fn sweep(&mut self, retry: Duration, timeout: Duration) {
        let stale: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, (sent, _))| sent.elapsed() >= retry)
            .map(|(&c, _)| c)
            .collect();
        for ctx in stale {
            if let Some((_, batch)) = self.inflight.remove(&ctx) {
                self.queued.extend(batch);
            }
        }
        let (mut expired, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued)
            .into_iter()
            .partition(|r| r.started.elapsed() >= timeout);
        self.queued = keep;
        for (_, batch) in &mut self.confirmed {
            let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(batch)
                .into_iter()
                .partition(|r| r.started.elapsed() >= timeout);
            *batch = keep;
            expired.extend(late);
        }
        self.confirmed.retain(|(_, b)| !b.is_empty());
        for r in expired {
            r.answer(Err(StoreError::Unavailable(format!(
                "no read index within {timeout:?}"
            ))));
        }
    }
}
