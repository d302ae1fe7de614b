//! The Ready cycle: send, persist, apply, in the order raft-rs documents.

use raft::eraftpb::{ConfState, Message as RaftMessage};
use std::sync::atomic::Ordering;

use raft::StateRole;
use tracing::{error, info};

use super::RaftNode;
use crate::store::error::StoreError;
use crate::store::pending::Envelope;
use crate::store::state_machine::{Event, StateMachine};

impl RaftNode {
    /// One round of Ready handling, in the order raft-rs documents.
    pub(super) fn on_ready(&mut self) -> Result<(), StoreError> {
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

    fn apply_normal(&mut self, e: &raft::eraftpb::Entry, events: &mut Vec<Event>) {
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
