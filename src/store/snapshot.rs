//! State-machine snapshots on disk: one file per snapshot, written atomically, checksummed.
//!
//! The file holds a whole raft `Snapshot` (metadata + serialized state machine), so a leader can
//! hand it to a lagging follower as is, and a restart can load it before replaying the log.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::Snapshot;

use super::error::StoreError;

const MAGIC: &[u8; 8] = b"SKSNAP01";
const SYNC_CHUNK: usize = 2 << 20;

pub struct SnapshotFiles {
    dir: PathBuf,
    latest: Option<(u64, u64)>,
}

impl SnapshotFiles {
    /// Opens the snapshot folder and finds the newest snapshot, which must be readable.
    pub fn open(dir: &Path) -> Result<(Self, Option<Snapshot>), StoreError> {
        fs::create_dir_all(dir)?;
        let mut newest: Option<(u64, u64, PathBuf)> = None;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                // An interrupted write: never renamed, so never used.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some((index, term)) = parse_name(name) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(i, _, _)| index > *i) {
                newest = Some((index, term, path));
            }
        }
        let mut files = SnapshotFiles {
            dir: dir.to_path_buf(),
            latest: None,
        };
        let Some((index, term, path)) = newest else {
            return Ok((files, None));
        };
        let snap = read_file(&path)?;
        let meta = snap.get_metadata();
        if meta.index != index || meta.term != term {
            return Err(StoreError::Storage(format!(
                "snapshot {} does not match its name",
                path.display()
            )));
        }
        files.latest = Some((index, term));
        Ok((files, Some(snap)))
    }

    pub fn latest_index(&self) -> u64 {
        self.latest.map_or(0, |(i, _)| i)
    }

    /// Reads the newest snapshot back from disk (used when a follower needs one).
    pub fn load_latest(&self) -> Result<Option<Snapshot>, StoreError> {
        match self.latest {
            None => Ok(None),
            Some((i, t)) => read_file(&self.dir.join(file_name(i, t))).map(Some),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `snap` and makes it the newest.
    pub fn save(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        write_file(&self.dir, snap)?;
        self.record(snap.get_metadata().index, snap.get_metadata().term);
        Ok(())
    }

    /// Makes a written snapshot the newest and removes the older files. One older than the
    /// newest (a background write overtaken by an installed snapshot) is removed instead.
    pub fn record(&mut self, index: u64, term: u64) {
        if self.latest_index() > index {
            let _ = fs::remove_file(self.dir.join(file_name(index, term)));
            return;
        }
        self.latest = Some((index, term));
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let old = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_name);
            if matches!(old, Some((i, _)) if i < index) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Writes `snap` into `dir` durably: temp file, fsync, rename, fsync of the directory.
pub fn write_file(dir: &Path, snap: &Snapshot) -> Result<(), StoreError> {
    let meta = snap.get_metadata();
    let name = file_name(meta.index, meta.term);
    let tmp = dir.join(format!("{name}.tmp"));
    let body = snap
        .write_to_bytes()
        .map_err(|e| StoreError::Storage(format!("encode snapshot: {e}")))?;
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&crc32fast::hash(&body).to_le_bytes())?;
        // Flushed in slices: one big flush at the end would stall the raft log's fsyncs
        // (ext4 orders both through the same journal commit).
        for chunk in body.chunks(SYNC_CHUNK) {
            f.write_all(chunk)?;
            f.sync_data()?;
        }
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(&name))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn file_name(index: u64, term: u64) -> String {
    format!("{index:020}-{term:020}.snap")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (i, t) = name.strip_suffix(".snap")?.split_once('-')?;
    Some((i.parse().ok()?, t.parse().ok()?))
}

fn read_file(path: &Path) -> Result<Snapshot, StoreError> {
    let bytes = fs::read(path)?;
    let corrupt =
        |why: &str| StoreError::Storage(format!("snapshot {} is corrupt: {why}", path.display()));
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("bad header"));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let body = &bytes[12..];
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Snapshot::parse_from_bytes(body).map_err(|e| corrupt(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_open_returns_newest_and_detects_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut files, none) = SnapshotFiles::open(dir.path()).expect("open");
        assert!(none.is_none());
        for index in [5, 9] {
            let mut s = Snapshot::default();
            s.mut_metadata().index = index;
            s.mut_metadata().term = 2;
            s.data = vec![index as u8; 16].into();
            files.save(&s).expect("save");
        }
        let (files, newest) = SnapshotFiles::open(dir.path()).expect("reopen");
        assert_eq!(newest.map(|s| s.get_metadata().index), Some(9));
        assert_eq!(files.latest_index(), 9);
        let path = dir.path().join(file_name(9, 2));
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).expect("write");
        assert!(SnapshotFiles::open(dir.path()).is_err());
    }
}
