//! Snapshots of the state machine, written off the Raft thread.

use actix::prelude::*;
use tracing::{debug, error};

use super::{RaftNode, SnapshotWritten};
use crate::store::snapshot::write_file as write_snapshot_file;

impl RaftNode {
    /// Every `snapshot_interval` applied entries (or when raft needs a newer one for a
    /// follower), the state machine is cloned (O(1)) and written by a blocking task; the log
    /// is compacted once the file is durable.
    pub(super) fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
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
