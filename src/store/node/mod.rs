//! `RaftNode`: the actor that owns the raft-rs `RawNode`, its storage and the state machine.
//!
//! Requests are taken into raft as they arrive; the Ready cycle runs once the mailbox is
//! drained (a self-notification runs after all queued messages), so every proposal and read
//! that queued up meanwhile shares one Ready and one fsync.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use raft::{RawNode, ReadOnlyOption, StateRole};
use tokio::sync::oneshot;
use tracing::{debug, error, info};

mod ready;
mod snapshots;

use crate::store::encryption::Transformer;
use crate::store::error::StoreError;
use crate::store::logger::raft_logger;
use crate::store::metrics::StoreMetrics;
use crate::store::pending::{
    Envelope, PendingRead, Proposals, Query, QueryResult, ReadResult, Reads, WriteResult,
};
use crate::store::state_machine::{Op, StateMachine};
use crate::store::storage::RaftStorage;
use crate::store::transport::{Inbound, PeerUnreachable, Transport};
use crate::store::watch::{WatchHub, WatchStream};

/// Everything a replica needs to know to run.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: u64,
    pub cluster_id: u64,
    /// All members (this one included): raft id -> peer address.
    pub peers: BTreeMap<u64, String>,
    /// raft id -> member name, which the member's peer certificate names (CN): a peer may
    /// only speak as the id its certificate was issued for.
    pub peer_names: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: usize,
    /// Applied entries between two state-machine snapshots.
    pub snapshot_interval: u64,
    /// Log entries kept behind a snapshot for followers that lag a little.
    pub snapshot_catchup_entries: u64,
    pub request_timeout: Duration,
    /// Events kept for watches from a past revision.
    pub watch_history: usize,
    /// Open a log with a damaged tail by dropping the tail (see the README).
    pub tolerate_tail_corruption: bool,
    /// Encryption at rest of Secrets, applied by the replica's clients before proposing;
    /// `None`: values are stored as given.
    pub encryption: Option<Arc<Transformer>>,
    /// Mutual TLS of the peer transport: this replica's certificate and the cluster CA.
    pub tls: crate::store::peer_tls::PeerTls,
}

/// Lock-free view of the replica for health checks.
#[derive(Default)]
pub struct Health {
    leader: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
    is_leader: std::sync::atomic::AtomicBool,
}

impl Health {
    /// For a process without a store replica (`skiff agent`): always ready.
    pub fn always_ready() -> Self {
        Health {
            leader: AtomicU64::new(1),
            commit: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            is_leader: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Ready: a leader is known and everything known committed has been applied.
    pub fn ready(&self) -> bool {
        self.leader.load(Ordering::Relaxed) != 0
            && self.applied.load(Ordering::Relaxed) >= self.commit.load(Ordering::Relaxed)
    }

    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }

    /// This replica is the Raft leader (controllers and the scheduler run here).
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Relaxed)
    }
}

/// A point-in-time view of a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    pub term: u64,
    pub leader_id: u64,
    pub is_leader: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub snapshots_installed: u64,
    pub revision: u64,
    pub keys: usize,
}

#[derive(Message)]
#[rtype(result = "WriteResult")]
pub struct Propose(pub Vec<Op>);

#[derive(Message)]
#[rtype(result = "ReadResult")]
pub struct Read {
    pub query: Query,
    pub linearizable: bool,
}

#[derive(Message)]
#[rtype(result = "Result<WatchStream, StoreError>")]
pub struct Watch {
    pub prefix: String,
    /// Deliver events with a revision above this; `None`: from the current revision.
    pub after: Option<u64>,
}

#[derive(Message)]
#[rtype(result = "NodeStatus")]
pub struct GetStatus;

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotWritten {
    index: u64,
    term: u64,
    result: Result<(), StoreError>,
}

pub struct RaftNode {
    opts: NodeOptions,
    raw: RawNode<RaftStorage>,
    sm: StateMachine,
    hub: WatchHub,
    transport: Option<Transport>,
    proposals: Proposals,
    reads: Reads,
    applied: u64,
    applied_term: u64,
    last_snapshot: u64,
    snapshots_installed: u64,
    snapshot_running: bool,
    flush_scheduled: bool,
    metrics: StoreMetrics,
    health: Arc<Health>,
}

impl RaftNode {
    /// Opens the replica's storage and state; the transport is attached with `attach`.
    pub fn open(
        opts: NodeOptions,
        metrics: StoreMetrics,
        health: Arc<Health>,
    ) -> Result<Self, StoreError> {
        let voters: Vec<u64> = opts.peers.keys().copied().collect();
        let recovered = RaftStorage::open(&opts.data_dir, &voters, opts.tolerate_tail_corruption)?;
        let (sm, applied, applied_term) = match &recovered.snapshot {
            Some(s) => (
                StateMachine::decode(s.get_data())?,
                s.get_metadata().index,
                s.get_metadata().term,
            ),
            None => (StateMachine::default(), 0, 0),
        };
        let cfg = raft::Config {
            id: opts.id,
            election_tick: opts.election_ticks,
            heartbeat_tick: opts.heartbeat_ticks,
            applied,
            max_size_per_msg: opts.max_size_per_msg,
            max_inflight_msgs: opts.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            ..Default::default()
        };
        cfg.validate()
            .map_err(|e| StoreError::Invalid(format!("raft settings: {e}")))?;
        let raw = RawNode::new(&cfg, recovered.storage, &raft_logger(opts.id))
            .map_err(|e| StoreError::Storage(format!("raft: {e}")))?;
        let hub = WatchHub::new(opts.watch_history, sm.revision());
        info!(
            id = opts.id,
            applied,
            revision = sm.revision(),
            "store replica opened"
        );
        Ok(Self {
            raw,
            sm,
            hub,
            transport: None,
            proposals: Proposals::default(),
            reads: Reads::default(),
            applied,
            applied_term,
            last_snapshot: applied,
            snapshots_installed: 0,
            snapshot_running: false,
            flush_scheduled: false,
            metrics,
            health,
            opts,
        })
    }

    pub fn attach(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    fn propose(&mut self, ops: Vec<Op>) -> Result<(u64, u64), StoreError> {
        if ops.is_empty() {
            return Err(StoreError::Invalid("empty transaction".into()));
        }
        let seq = self.proposals.next_seq();
        let term = self.raw.raft.term;
        let env = Envelope {
            node: self.opts.id,
            seq,
            term,
            ops,
        };
        let data = postcard::to_stdvec(&env).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.raw.propose(Vec::new(), data).map_err(|e| match e {
            raft::Error::ProposalDropped => StoreError::ProposalDropped("no leader".into()),
            other => StoreError::Unavailable(other.to_string()),
        })?;
        Ok((seq, term))
    }

    fn query(&self, q: &Query) -> ReadResult {
        let revision = self.sm.revision();
        Ok(match q {
            Query::Get { key } => QueryResult {
                revision,
                kvs: self.sm.get(key).cloned().into_iter().collect(),
                remaining: 0,
            },
            Query::List {
                prefix,
                start_after,
                limit,
                at,
            } => {
                let past;
                let sm = match *at {
                    Some(at) if at > revision => {
                        return Err(StoreError::FutureRevision {
                            requested: at,
                            current: revision,
                        })
                    }
                    Some(at) if at < revision => {
                        past = self.hub.rewind(&self.sm, prefix, at)?;
                        &past
                    }
                    _ => &self.sm,
                };
                let (kvs, remaining) = sm.list(prefix, start_after.as_deref(), *limit);
                QueryResult {
                    revision: sm.revision(),
                    kvs,
                    remaining,
                }
            }
        })
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        if let Some(rctx) = self.reads.start_batch() {
            self.raw.read_index(rctx);
        }
        let mut result = Ok(());
        for _ in 0..8 {
            if !self.raw.has_ready() {
                break;
            }
            result = self.on_ready();
            if result.is_err() {
                break;
            }
        }
        for r in self.reads.take_servable(self.applied) {
            let answer = self.query(&r.query);
            r.answer(answer);
        }
        if let Err(e) = result {
            self.fatal(ctx, e);
            return;
        }
        self.maybe_snapshot(ctx);
        self.publish_metrics();
    }

    /// Storage failed: continuing could break Raft's guarantees, so this replica stops.
    fn fatal(&mut self, ctx: &mut Context<Self>, e: StoreError) {
        error!(
            id = self.opts.id,
            "store replica stopping after a storage failure: {e}"
        );
        self.proposals.fail_all(|| StoreError::Stopped);
        ctx.stop();
        System::current().stop_with_code(1);
    }

    fn publish_metrics(&self) {
        let r = &self.raw.raft;
        let m = &self.metrics;
        m.term.set(r.term as i64);
        m.leader_id.set(r.leader_id as i64);
        m.is_leader.set((r.state == StateRole::Leader) as i64);
        m.commit_index.set(r.raft_log.committed as i64);
        m.applied_index.set(self.applied as i64);
        m.keys.set(self.sm.key_count() as i64);
        m.revision.set(self.sm.revision() as i64);
        m.watchers.set(self.hub.watcher_count() as i64);
        self.health
            .commit
            .store(r.raft_log.committed, Ordering::Relaxed);
        self.health.applied.store(self.applied, Ordering::Relaxed);
        self.health.leader.store(r.leader_id, Ordering::Relaxed);
        self.health
            .is_leader
            .store(r.state == StateRole::Leader, Ordering::Relaxed);
    }
}

impl Actor for RaftNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        // A lone voter need not wait out an election timeout to lead.
        if self.raw.store().conf_state().voters == [self.opts.id] {
            let _ = self.raw.campaign();
            self.schedule_flush(ctx);
        }
        let retry = (self.opts.tick * 2).max(Duration::from_millis(200));
        ctx.run_interval(self.opts.tick, move |act, ctx| {
            act.raw.tick();
            let timeout = act.opts.request_timeout;
            let failed = act.proposals.fail_expired(timeout);
            act.metrics.proposals_failed.inc_by(failed as u64);
            act.reads.sweep(retry, timeout);
            act.schedule_flush(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.proposals.fail_all(|| StoreError::Stopped);
    }
}

impl Handler<Propose> for RaftNode {
    type Result = ResponseFuture<WriteResult>;

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.metrics.proposals.inc();
        match self.propose(msg.0) {
            Ok((seq, term)) => self.proposals.add(seq, term, tx),
            Err(e) => {
                self.metrics.proposals_failed.inc();
                let _ = tx.send(Err(e));
            }
        }
        self.schedule_flush(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Stopped)) })
    }
}

impl Handler<Read> for RaftNode {
    type Result = ResponseFuture<ReadResult>;

    fn handle(&mut self, msg: Read, ctx: &mut Context<Self>) -> Self::Result {
        if !msg.linearizable {
            let r = self.query(&msg.query);
            return Box::pin(async move { r });
        }
        let (tx, rx) = oneshot::channel();
        self.reads.queue(PendingRead::new(msg.query, tx));
        self.schedule_flush(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Stopped)) })
    }
}

impl Handler<Watch> for RaftNode {
    type Result = Result<WatchStream, StoreError>;

    fn handle(&mut self, msg: Watch, _ctx: &mut Context<Self>) -> Self::Result {
        let after = msg.after.unwrap_or_else(|| self.sm.revision());
        let stream = self.hub.watch(msg.prefix, after);
        self.metrics.watchers.set(self.hub.watcher_count() as i64);
        stream
    }
}

impl Handler<GetStatus> for RaftNode {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let r = &self.raw.raft;
        let store = self.raw.store();
        MessageResult(NodeStatus {
            id: self.opts.id,
            term: r.term,
            leader_id: r.leader_id,
            is_leader: r.state == StateRole::Leader,
            commit_index: r.raft_log.committed,
            applied_index: self.applied,
            first_index: store.truncated_index() + 1,
            last_index: r.raft_log.last_index(),
            snapshot_index: store.snapshot_index(),
            snapshots_installed: self.snapshots_installed,
            revision: self.sm.revision(),
            keys: self.sm.key_count(),
        })
    }
}

impl Handler<Inbound> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        if let Err(e) = self.raw.step(msg.0) {
            debug!(id = self.opts.id, "dropped peer message: {e}");
        }
        self.schedule_flush(ctx);
    }
}

impl Handler<PeerUnreachable> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: PeerUnreachable, _ctx: &mut Context<Self>) {
        self.raw.report_unreachable(msg.0);
    }
}

impl Handler<Flush> for RaftNode {
    type Result = ();

    fn handle(&mut self, _msg: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}
