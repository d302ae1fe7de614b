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
use raft::eraftpb::{ConfState, Message as RaftMessage};
use raft::{RawNode, ReadOnlyOption, StateRole};
use tokio::sync::oneshot;
use tracing::{debug, error, info};

use super::error::StoreError;
use super::logger::raft_logger;
use super::metrics::StoreMetrics;
use super::pending::{
    Envelope, PendingRead, Proposals, Query, QueryResult, ReadResult, Reads, WriteResult,
};
use super::snapshot::write_file as write_snapshot_file;
use super::state_machine::{Op, StateMachine};
use super::storage::RaftStorage;
use super::transport::{Inbound, PeerUnreachable, Transport};
use super::watch::{WatchHub, WatchStream};

/// Everything a replica needs to know to run.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: u64,
    pub cluster_id: u64,
    /// All members (this one included): raft id -> peer address.
    pub peers: BTreeMap<u64, String>,
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
}

/// Lock-free view of the replica for health checks.
#[derive(Default)]
pub struct Health {
    leader: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
}

impl Health {
    /// Ready: a leader is known and everything known committed has been applied.
    pub fn ready(&self) -> bool {
        self.leader.load(Ordering::Relaxed) != 0
            && self.applied.load(Ordering::Relaxed) >= self.commit.load(Ordering::Relaxed)
    }

    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
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

    fn query(&self, q: &Query) -> QueryResult {
        let revision = self.sm.revision();
        match q {
            Query::Get { key } => QueryResult {
                revision,
                kvs: self.sm.get(key).cloned().into_iter().collect(),
                more: false,
            },
            Query::List {
                prefix,
                start_after,
                limit,
            } => {
                let (kvs, more) = self.sm.list(prefix, start_after.as_deref(), *limit);
                QueryResult {
                    revision,
                    kvs,
                    more,
                }
            }
        }
    }

    /// One round of Ready handling, in the order raft-rs documents.
    fn on_ready(&mut self) -> Result<(), StoreError> {
        let mut rd = self.raw.ready();
        let mut out = Outbox::default();
        // Leader only: safe to send before persisting.
        self.send(rd.take_messages(), &mut out);
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot())?;
        }
        self.apply(rd.take_committed_entries())?;
        let mut batch = raft_engine::LogBatch::default();
        let store = self.raw.mut_store();
        store.append(&mut batch, rd.entries())?;
        if let Some(hs) = rd.hs() {
            store.set_hard_state(&mut batch, hs)?;
        }
        store.write(&mut batch, rd.must_sync())?;
        if let Some(ss) = rd.ss() {
            self.on_leader(ss.leader_id, ss.raft_state);
        }
        for rs in rd.take_read_states() {
            self.reads.confirm(&rs.request_ctx, rs.index);
        }
        // Votes and append responses: only once durable.
        self.send(rd.take_persisted_messages(), &mut out);
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let store = self.raw.mut_store();
            let mut hs = store.hard_state().clone();
            hs.commit = commit;
            let mut batch = raft_engine::LogBatch::default();
            store.set_hard_state(&mut batch, &hs)?;
            store.write(&mut batch, false)?;
        }
        self.send(light.take_messages(), &mut out);
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply_to(self.applied);
        for id in out.unreachable.iter().copied() {
            self.raw.report_unreachable(id);
        }
        for id in out.snapshots {
            let status = if out.unreachable.contains(&id) {
                raft::SnapshotStatus::Failure
            } else {
                raft::SnapshotStatus::Finish
            };
            self.raw.report_snapshot(id, status);
        }
        Ok(())
    }

    fn send(&mut self, msgs: Vec<RaftMessage>, out: &mut Outbox) {
        if msgs.is_empty() {
            return;
        }
        for m in &msgs {
            if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                out.snapshots.push(m.to);
            }
        }
        if let Some(t) = &self.transport {
            t.send(msgs, &mut out.unreachable);
        }
    }

    fn on_leader(&mut self, leader: u64, role: StateRole) {
        if leader != self.health.leader() {
            self.metrics.leader_changes.inc();
            info!(
                id = self.opts.id,
                leader,
                ?role,
                term = self.raw.raft.term,
                "leader changed"
            );
        }
        self.health.leader.store(leader, Ordering::Relaxed);
    }

    fn install_snapshot(&mut self, snap: &raft::eraftpb::Snapshot) -> Result<(), StoreError> {
        let sm = StateMachine::decode(snap.get_data())?;
        let meta = snap.get_metadata();
        self.raw.mut_store().install_received(snap)?;
        info!(
            id = self.opts.id,
            index = meta.index,
            revision = sm.revision(),
            "installed snapshot from leader"
        );
        self.sm = sm;
        self.applied = meta.index;
        self.applied_term = meta.term;
        self.last_snapshot = meta.index;
        self.snapshots_installed += 1;
        self.metrics.snapshots_installed.inc();
        self.hub.reset(self.sm.revision());
        let failed = self.proposals.fail_all(|| {
            StoreError::Unavailable("replica caught up by snapshot; outcome unknown".into())
        });
        self.metrics.proposals_failed.inc_by(failed as u64);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>) -> Result<(), StoreError> {
        let mut events = Vec::new();
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                raft::eraftpb::EntryType::EntryNormal => self.apply_normal(&e, &mut events),
                raft::eraftpb::EntryType::EntryConfChange => {
                    let cc: raft::eraftpb::ConfChange = parse_pb(&e.data)?;
                    self.apply_conf_change(&cc)?;
                }
                raft::eraftpb::EntryType::EntryConfChangeV2 => {
                    let cc: raft::eraftpb::ConfChangeV2 = parse_pb(&e.data)?;
                    self.apply_conf_change(&cc)?;
                }
            }
            self.applied = e.index;
            if e.term > self.applied_term {
                let failed = self.proposals.fail_older_than(e.term);
                self.metrics.proposals_failed.inc_by(failed as u64);
            }
            self.applied_term = e.term;
        }
        self.hub.publish(events);
        Ok(())
    }

    fn apply_normal(
        &mut self,
        e: &raft::eraftpb::Entry,
        events: &mut Vec<super::state_machine::Event>,
    ) {
        if e.data.is_empty() {
            return; // a new leader's empty entry
        }
        let env: Envelope = match postcard::from_bytes(&e.data) {
            Ok(env) => env,
            Err(err) => {
                // Same bytes on every replica, so skipping is deterministic.
                error!(index = e.index, "skipping undecodable log entry: {err}");
                return;
            }
        };
        let result = if env.term == e.term {
            self.sm.apply(&env.ops, events)
        } else {
            Err(StoreError::ProposalDropped(format!(
                "proposed in term {} but appended in term {}",
                env.term, e.term
            )))
        };
        if env.node == self.opts.id {
            let failed = result.is_err();
            if let Some(took) = self.proposals.complete(env.seq, result) {
                self.metrics.proposal_seconds.observe(took.as_secs_f64());
                if failed {
                    self.metrics.proposals_failed.inc();
                }
            }
        }
    }

    fn apply_conf_change(&mut self, cc: &impl raft_proto::ConfChangeI) -> Result<(), StoreError> {
        let cs: ConfState = self
            .raw
            .apply_conf_change(cc)
            .map_err(|e| StoreError::Storage(format!("conf change: {e}")))?;
        let store = self.raw.mut_store();
        let mut batch = raft_engine::LogBatch::default();
        store.set_conf_state(&mut batch, &cs)?;
        store.write(&mut batch, true)?;
        info!(id = self.opts.id, voters = ?cs.voters, "membership changed");
        Ok(())
    }

    /// Every `snapshot_interval` applied entries (or when raft needs a newer one for a
    /// follower), the state machine is cloned (O(1)) and written by a blocking task; the log
    /// is compacted once the file is durable.
    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        let wanted = self.raw.store().take_snapshot_wanted();
        let due = self.applied >= self.last_snapshot + self.opts.snapshot_interval;
        if !(due || wanted) || self.applied == self.last_snapshot || self.snapshot_running {
            return;
        }
        self.snapshot_running = true;
        let sm = self.sm.clone();
        let mut meta = raft::eraftpb::SnapshotMetadata {
            index: self.applied,
            term: self.applied_term,
            ..Default::default()
        };
        meta.set_conf_state(self.raw.store().conf_state().clone());
        let dir = self.raw.store().snapshot_dir().to_path_buf();
        let addr = ctx.address();
        tokio::task::spawn_blocking(move || {
            let (index, term) = (meta.index, meta.term);
            let result = sm.encode().and_then(|data| {
                let mut snap = raft::eraftpb::Snapshot::default();
                snap.set_data(data.into());
                snap.set_metadata(meta);
                write_snapshot_file(&dir, &snap)
            });
            addr.do_send(SnapshotWritten {
                index,
                term,
                result,
            });
        });
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
            r.answer(Ok(answer));
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
    }
}

#[derive(Default)]
struct Outbox {
    unreachable: Vec<u64>,
    snapshots: Vec<u64>,
}

fn parse_pb<M: protobuf::Message>(data: &[u8]) -> Result<M, StoreError> {
    M::parse_from_bytes(data)
        .map_err(|e| StoreError::Storage(format!("bad conf change entry: {e}")))
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
            let r = Ok(self.query(&msg.query));
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

impl Handler<SnapshotWritten> for RaftNode {
    type Result = ();

    fn handle(&mut self, msg: SnapshotWritten, ctx: &mut Context<Self>) {
        self.snapshot_running = false;
        if let Err(e) = msg.result {
            // The log is intact, so this is not fatal: the next interval tries again.
            error!(
                id = self.opts.id,
                index = msg.index,
                "writing a snapshot failed: {e}"
            );
            return;
        }
        let compact_to = msg.index.saturating_sub(self.opts.snapshot_catchup_entries);
        if let Err(e) = self
            .raw
            .mut_store()
            .snapshot_written(msg.index, msg.term, compact_to)
        {
            self.fatal(ctx, e);
            return;
        }
        self.last_snapshot = self.last_snapshot.max(msg.index);
        self.metrics.snapshots_saved.inc();
        debug!(
            id = self.opts.id,
            index = msg.index,
            compact_to,
            "snapshot saved"
        );
    }
}
