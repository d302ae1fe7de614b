//! The store's client API: what the API server uses. Cheap to clone; talks to one replica.
//!
//! With encryption at rest configured, the client encrypts the values of Secrets before they
//! are proposed (so the Raft log and snapshots only hold ciphertext) and decrypts every value
//! it hands back: reads, write results and watch events.

use std::time::Duration;

use actix::Addr;
use tokio::time::Instant;

use super::encryption::{self, Codec};
use super::error::StoreError;
use super::node::{Propose, RaftNode, Read, Watch};
use super::pending::{Query, QueryResult};
use super::state_machine::{KeyValue, Op, TxnResponse};
use super::watch::WatchStream;

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Confirmed with the leader (ReadIndex) first: sees every write acknowledged before.
    #[default]
    Linearizable,
    /// Whatever this replica has applied (Kubernetes `resourceVersion=0`).
    Local,
}

/// A page of a prefix listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub kvs: Vec<KeyValue>,
    /// Store revision the page was read at.
    pub revision: u64,
    /// Pass as `start_after` to get the next page; `None` when this was the last one.
    pub continue_after: Option<String>,
    /// Keys of the prefix after this page.
    pub remaining: usize,
}

#[derive(Clone)]
pub struct StoreClient {
    addr: Addr<RaftNode>,
    timeout: Duration,
    /// Encryption at rest; `None`: values are stored as given.
    codec: Option<Codec>,
}

/// Pause before proposing again after a proposal that certainly did not apply.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl StoreClient {
    pub fn new(addr: Addr<RaftNode>, timeout: Duration) -> Self {
        Self {
            addr,
            timeout,
            codec: None,
        }
    }

    /// This client with values encrypted at rest by `codec`.
    pub fn with_codec(mut self, codec: Option<Codec>) -> Self {
        self.codec = codec;
        self
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        let op = Op::Create {
            key: key.into(),
            value,
        };
        Ok(self.txn(vec![op]).await?.revision)
    }

    /// Replaces the value of an existing key, optionally only at `expected_mod_revision`.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Option<u64>,
    ) -> Result<u64, StoreError> {
        let op = Op::Update {
            key: key.into(),
            value,
            expected_mod_revision,
        };
        Ok(self.txn(vec![op]).await?.revision)
    }

    /// Deletes a key, optionally only at `expected_mod_revision`; returns its last value with
    /// `mod_revision` set to the deletion revision.
    pub async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<u64>,
    ) -> Result<KeyValue, StoreError> {
        let op = Op::Delete {
            key: key.into(),
            expected_mod_revision,
        };
        let r = self.txn(vec![op]).await?;
        let prev = r.results.into_iter().next().and_then(|o| o.prev);
        prev.map(|kv| KeyValue {
            mod_revision: r.revision,
            ..kv
        })
        .ok_or_else(|| StoreError::NotFound { key: key.into() })
    }

    /// Applies all ops or none. Proposals that certainly did not apply (no leader, lost in
    /// a leader change) are proposed again until the timeout. With encryption at rest, a
    /// previous value that does not decrypt (its key is gone) fails the call with
    /// `Transformation` although the ops were applied.
    pub async fn txn(&self, ops: Vec<Op>) -> Result<TxnResponse, StoreError> {
        let ops = match &self.codec {
            Some(c) => c.encode_ops(ops)?,
            None => ops,
        };
        let mut r = self.propose(ops).await?;
        if let Some(c) = &self.codec {
            c.decode_txn(&mut r)?;
        }
        Ok(r)
    }

    async fn propose(&self, ops: Vec<Op>) -> Result<TxnResponse, StoreError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let sent = tokio::time::timeout_at(deadline, self.addr.send(Propose(ops.clone())));
            let result = match sent.await {
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "no commit within {:?}",
                        self.timeout
                    )))
                }
                Ok(Err(_)) => return Err(StoreError::Stopped),
                Ok(Ok(r)) => r,
            };
            match result {
                Err(StoreError::ProposalDropped(why))
                    if Instant::now() + RETRY_PAUSE < deadline =>
                {
                    tracing::debug!("proposal dropped ({why}); proposing again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    pub async fn get(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue>, StoreError> {
        let r = self
            .read(Query::Get { key: key.into() }, consistency)
            .await?;
        let mut kv = r.kvs.into_iter().next();
        if let (Some(c), Some(kv)) = (&self.codec, kv.as_mut()) {
            c.decode_kv(kv)?;
        }
        Ok(kv)
    }

    /// Keys under `prefix` in key order, after `start_after`, at most `limit` (0 = all).
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<ListResult, StoreError> {
        self.list_at(prefix, start_after, limit, None, consistency)
            .await
    }

    /// As `list`, with the keys as they were at revision `at` (`None`: now). `Expired` when
    /// the retained history (`store.watch_history` events) no longer reaches back to `at`,
    /// `FutureRevision` when the replica has not reached it.
    pub async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: usize,
        at: Option<u64>,
        consistency: Consistency,
    ) -> Result<ListResult, StoreError> {
        let query = Query::List {
            prefix: prefix.into(),
            start_after,
            limit,
            at,
        };
        let mut r = self.read(query, consistency).await?;
        if let Some(c) = &self.codec {
            c.decode_kvs(&mut r.kvs)?;
        }
        let continue_after = if r.remaining > 0 {
            r.kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        Ok(ListResult {
            kvs: r.kvs,
            revision: r.revision,
            continue_after,
            remaining: r.remaining,
        })
    }

    /// The current store revision.
    pub async fn revision(&self, consistency: Consistency) -> Result<u64, StoreError> {
        let query = Query::List {
            prefix: String::new(),
            start_after: None,
            limit: 1,
            at: None,
        };
        Ok(self.read(query, consistency).await?.revision)
    }

    /// Events under `prefix` with a revision above `after` (`None`: from now on), in
    /// revision order. `Expired` if `after` is older than the retained history.
    pub async fn watch(&self, prefix: &str, after: Option<u64>) -> Result<WatchStream, StoreError> {
        let msg = Watch {
            prefix: prefix.into(),
            after,
        };
        let stream = self
            .addr
            .send(msg)
            .await
            .map_err(|_| StoreError::Stopped)??;
        // Only watches that can see encrypted keys need decrypting.
        let codec = self
            .codec
            .clone()
            .filter(|_| encryption::may_contain_encrypted(prefix));
        Ok(stream.with_codec(codec))
    }

    async fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> Result<QueryResult, StoreError> {
        let msg = Read {
            query,
            linearizable: consistency == Consistency::Linearizable,
        };
        match tokio::time::timeout(self.timeout, self.addr.send(msg)).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "no read within {:?}",
                self.timeout
            ))),
            Ok(Err(_)) => Err(StoreError::Stopped),
            Ok(Ok(r)) => r,
        }
    }
}
