//! raft-rs `Storage` on raft-engine: the Raft log, hard state and conf state, durable.
//!
//! Keys in raft-engine (group 1): `hs` HardState, `cs` ConfState, `truncated` the
//! (index, term) of the last entry removed from the log (a compaction point or an installed
//! snapshot). A cache of recent entries answers raft's frequent `term()`/`entries()` calls
//! without touching files.

use std::cell::Cell;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use raft_engine::{Command, Engine, LogBatch, MessageExt, ReadableSize};

use super::error::StoreError;
use super::snapshot::SnapshotFiles;

const GROUP: u64 = 1;
const KEY_HS: &[u8] = b"hs";
const KEY_CS: &[u8] = b"cs";
const KEY_TRUNCATED: &[u8] = b"truncated";
const CACHE_MAX_ENTRIES: usize = 8192;
const CACHE_MAX_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

pub struct RaftStorage {
    engine: Arc<Engine>,
    hs: HardState,
    cs: ConfState,
    truncated: SnapshotMetadata,
    snapshots: SnapshotFiles,
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    /// Set when raft asked for a snapshot newer than the one on disk.
    snapshot_wanted: Cell<bool>,
}

/// What `open` found, besides the storage itself.
pub struct Recovered {
    pub storage: RaftStorage,
    /// The newest snapshot on disk: the state machine starts from it.
    pub snapshot: Option<Snapshot>,
}

/// Whether the newest raft-engine file ends in preallocated zeros: a file the engine closed
/// cleanly is truncated to its last record, which ends in a checksum.
fn crash_tail(dir: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let newest = std::fs::read_dir(dir).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "raftlog"))
            .max()
    });
    let Some(path) = newest else { return false };
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut tail = [0xffu8; 16];
    f.seek(SeekFrom::End(-16)).is_ok()
        && f.read_exact(&mut tail).is_ok()
        && tail.iter().all(|b| *b == 0)
}

impl RaftStorage {
    /// Opens (or creates) the log in `dir/raft` and snapshots in `dir/snap`. A new log starts
    /// with `voters` as its configuration, identical on every initial member.
    pub fn open(
        dir: &Path,
        voters: &[u64],
        tolerate_tail_corruption: bool,
    ) -> Result<Recovered, StoreError> {
        let (snapshots, snapshot) = SnapshotFiles::open(&dir.join("snap"))?;
        let cfg = raft_engine::Config {
            dir: dir.join("raft").to_string_lossy().into_owned(),
            // Values are small and fsync dominates: compression only costs CPU here.
            batch_compression_threshold: ReadableSize(0),
            target_file_size: ReadableSize::mb(32),
            purge_threshold: ReadableSize::mb(256),
            // Strict unless the newest file ends in the zeros of raft-engine's preallocation
            // (a process crash: everything before them was written whole). Dropping other
            // damage may lose entries this replica acknowledged, so that is the operator's
            // call, not a silent default.
            recovery_mode: if tolerate_tail_corruption || crash_tail(&dir.join("raft")) {
                raft_engine::RecoveryMode::TolerateTailCorruption
            } else {
                raft_engine::RecoveryMode::AbsoluteConsistency
            },
            ..Default::default()
        };
        let engine = Arc::new(Engine::open(cfg).map_err(|e| {
            StoreError::Storage(format!(
                "the raft log is damaged ({e}); after a power loss, starting with \
                 store.tolerate_tail_corruption = true drops the damaged tail"
            ))
        })?);
        let hs = engine.get_message::<HardState>(GROUP, KEY_HS)?;
        let cs = engine.get_message::<ConfState>(GROUP, KEY_CS)?;
        let truncated = engine
            .get_message::<SnapshotMetadata>(GROUP, KEY_TRUNCATED)?
            .unwrap_or_default();
        let fresh = hs.is_none() && cs.is_none() && engine.last_index(GROUP).is_none();
        let mut storage = RaftStorage {
            engine,
            hs: hs.unwrap_or_default(),
            cs: cs.unwrap_or_default(),
            truncated,
            snapshots,
            cache: VecDeque::new(),
            cache_bytes: 0,
            snapshot_wanted: Cell::new(false),
        };
        if fresh && snapshot.is_none() {
            storage.cs.voters = voters.to_vec();
            let mut batch = LogBatch::default();
            batch.put_message(GROUP, KEY_CS.to_vec(), &storage.cs)?;
            storage.write(&mut batch, true)?;
        }
        if let Some(snap) = &snapshot {
            storage.recover_with_snapshot(snap.get_metadata())?;
        }
        if storage.truncated.index > storage.snapshots.latest_index() {
            return Err(StoreError::Storage(format!(
                "log is compacted to {} but no snapshot covers it",
                storage.truncated.index
            )));
        }
        Ok(Recovered { storage, snapshot })
    }

    /// Makes the log consistent with a snapshot written before a crash: a snapshot installed
    /// from the leader may be newer than the log, and a local one newer than the saved commit.
    fn recover_with_snapshot(&mut self, meta: &SnapshotMetadata) -> Result<(), StoreError> {
        let log_has_it = meta.index <= self.truncated.index
            || matches!(self.term(meta.index), Ok(t) if t == meta.term);
        if !log_has_it {
            self.install_snapshot(meta)?;
        } else if self.hs.commit < meta.index {
            self.hs.commit = meta.index;
            self.hs.term = self.hs.term.max(meta.term);
            let mut batch = LogBatch::default();
            batch.put_message(GROUP, KEY_HS.to_vec(), &self.hs)?;
            self.write(&mut batch, true)?;
        }
        if self.cs.voters.is_empty() && self.cs.learners.is_empty() {
            self.cs = meta.get_conf_state().clone();
        }
        Ok(())
    }

    pub fn truncated_index(&self) -> u64 {
        self.truncated.index
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hs
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.cs
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshots.latest_index()
    }

    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    pub fn write(&self, batch: &mut LogBatch, sync: bool) -> Result<(), StoreError> {
        if !batch.is_empty() {
            self.engine.write(batch, sync)?;
        }
        Ok(())
    }

    /// Adds `entries` (possibly replacing a conflicting tail) to `batch`.
    pub fn append(&mut self, batch: &mut LogBatch, entries: &[Entry]) -> Result<(), StoreError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let last = self.engine_last_index().unwrap_or(self.truncated.index);
        if first.index <= self.truncated.index || first.index > last + 1 {
            // raft-engine would panic on either; raft never asks for it, so this is a bug.
            return Err(StoreError::Storage(format!(
                "append at {} does not fit the log ({}..={last})",
                first.index,
                self.truncated.index + 1
            )));
        }
        batch.add_entries::<EntryExt>(GROUP, entries)?;
        while self.cache.back().is_some_and(|e| e.index >= first.index) {
            self.pop_cache_back();
        }
        if self
            .cache
            .back()
            .is_some_and(|e| e.index + 1 != first.index)
        {
            self.cache.clear();
            self.cache_bytes = 0;
        }
        for e in entries {
            self.cache_bytes += e.compute_size() as usize;
            self.cache.push_back(e.clone());
        }
        while self.cache.len() > CACHE_MAX_ENTRIES || self.cache_bytes > CACHE_MAX_BYTES {
            self.pop_cache_front();
        }
        Ok(())
    }

    pub fn set_hard_state(
        &mut self,
        batch: &mut LogBatch,
        hs: &HardState,
    ) -> Result<(), StoreError> {
        self.hs = hs.clone();
        batch.put_message(GROUP, KEY_HS.to_vec(), hs)?;
        Ok(())
    }

    pub fn set_conf_state(
        &mut self,
        batch: &mut LogBatch,
        cs: &ConfState,
    ) -> Result<(), StoreError> {
        self.cs = cs.clone();
        batch.put_message(GROUP, KEY_CS.to_vec(), cs)?;
        Ok(())
    }

    /// Installs a snapshot received from the leader: file first, then the log is reset to it,
    /// so a crash in between is repaired at the next open.
    pub fn install_received(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        self.snapshots.save(snap)?;
        self.install_snapshot(snap.get_metadata())
    }

    /// Replaces the whole log by an installed snapshot (durably).
    fn install_snapshot(&mut self, meta: &SnapshotMetadata) -> Result<(), StoreError> {
        let mut batch = LogBatch::default();
        batch.add_command(GROUP, Command::Clean);
        let truncated = SnapshotMetadata {
            index: meta.index,
            term: meta.term,
            ..Default::default()
        };
        batch.put_message(GROUP, KEY_TRUNCATED.to_vec(), &truncated)?;
        let mut hs = self.hs.clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        self.set_hard_state(&mut batch, &hs)?;
        self.set_conf_state(&mut batch, meta.get_conf_state())?;
        self.write(&mut batch, true)?;
        self.truncated = truncated;
        self.cache.clear();
        self.cache_bytes = 0;
        Ok(())
    }

    pub fn snapshot_dir(&self) -> &Path {
        self.snapshots.dir()
    }

    /// A snapshot at (index, term) was written: it becomes the newest, and log entries up to
    /// `compact_to` (exclusive) are dropped, keeping the tail lagging followers still need.
    pub fn snapshot_written(
        &mut self,
        index: u64,
        term: u64,
        compact_to: u64,
    ) -> Result<(), StoreError> {
        self.snapshots.record(index, term);
        let compact_to = compact_to.min(self.snapshots.latest_index() + 1);
        if compact_to <= self.truncated.index + 1 {
            return Ok(());
        }
        let term = self
            .term(compact_to - 1)
            .map_err(|e| StoreError::Storage(format!("term at compaction point: {e}")))?;
        let truncated = SnapshotMetadata {
            index: compact_to - 1,
            term,
            ..Default::default()
        };
        let mut batch = LogBatch::default();
        batch.add_command(GROUP, Command::Compact { index: compact_to });
        batch.put_message(GROUP, KEY_TRUNCATED.to_vec(), &truncated)?;
        self.write(&mut batch, true)?;
        self.truncated = truncated;
        while self.cache.front().is_some_and(|e| e.index < compact_to) {
            self.pop_cache_front();
        }
        self.engine.purge_expired_files()?;
        Ok(())
    }

    fn pop_cache_front(&mut self) {
        if let Some(e) = self.cache.pop_front() {
            self.cache_bytes -= e.compute_size() as usize;
        }
    }

    fn pop_cache_back(&mut self) {
        if let Some(e) = self.cache.pop_back() {
            self.cache_bytes -= e.compute_size() as usize;
        }
    }

    fn cached(&self, idx: u64) -> Option<&Entry> {
        let first = self.cache.front()?.index;
        let e = self.cache.get(idx.checked_sub(first)? as usize)?;
        (e.index == idx).then_some(e)
    }

    fn engine_last_index(&self) -> Option<u64> {
        self.engine.last_index(GROUP)
    }
}

fn engine_err(e: raft_engine::Error) -> raft::Error {
    match e {
        raft_engine::Error::EntryCompacted => raft::Error::Store(StorageError::Compacted),
        raft_engine::Error::EntryNotFound => raft::Error::Store(StorageError::Unavailable),
        other => raft::Error::Store(StorageError::Other(Box::new(other))),
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hs.clone(), self.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        if low <= self.truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.engine_last_index().unwrap_or(self.truncated.index) + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        if self.cached(low).is_some() && self.cached(high - 1).is_some() {
            out.extend((low..high).filter_map(|i| self.cached(i).cloned()));
        } else {
            let limit = max_size.map(|s| s.min(usize::MAX as u64) as usize);
            self.engine
                .fetch_entries_to::<EntryExt>(GROUP, low, high, limit, &mut out)
                .map_err(engine_err)?;
        }
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.index {
            return Ok(self.truncated.term);
        }
        if idx < self.truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.engine_last_index().unwrap_or(self.truncated.index) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(e) = self.cached(idx) {
            return Ok(e.term);
        }
        match self.engine.get_entry::<EntryExt>(GROUP, idx) {
            Ok(Some(e)) => Ok(e.term),
            Ok(None) => Err(raft::Error::Store(StorageError::Unavailable)),
            Err(e) => Err(engine_err(e)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.engine_last_index().unwrap_or(self.truncated.index))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.snapshots.load_latest() {
            Ok(Some(s)) if s.get_metadata().index >= request_index => Ok(s),
            Ok(_) => {
                self.snapshot_wanted.set(true);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
            Err(e) => Err(raft::Error::Store(StorageError::Other(Box::new(e)))),
        }
    }
}
