//! The replica's data directory: who it belongs to, checked before anything is opened.
//!
//! `skiff.json` names the cluster and member that created the directory, so a directory of
//! another cluster or member is refused instead of silently mixing two Raft logs.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

const META_FILE: &str = "skiff.json";
const FORMAT: u32 = 1;

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {path} is not empty and has no {META_FILE}: not a skiff data dir")]
    NotSkiff { path: PathBuf },
    #[error("data dir {path}: {META_FILE} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("data dir {path} belongs to member {found_node} of cluster {found_cluster:016x}, not to member {node} of cluster {cluster:016x}")]
    Foreign {
        path: PathBuf,
        found_cluster: u64,
        found_node: String,
        cluster: u64,
        node: String,
    },
}

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: u32,
    cluster_id: String,
    node_id: u64,
    node_name: String,
}

/// Creates the directory for a new member, or checks that an existing one is this member's.
pub fn prepare(
    path: &Path,
    cluster_id: u64,
    node_id: u64,
    node_name: &str,
) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    private_dir(path).map_err(io)?;
    let meta_path = path.join(META_FILE);
    let want = Meta {
        format: FORMAT,
        cluster_id: format!("{cluster_id:016x}"),
        node_id,
        node_name: node_name.to_string(),
    };
    match fs::read(&meta_path) {
        Ok(bytes) => {
            let found: Meta =
                serde_json::from_slice(&bytes).map_err(|e| DataDirError::Corrupt {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            if found.format != FORMAT {
                return Err(DataDirError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("unknown format {}", found.format),
                });
            }
            if found != want {
                return Err(DataDirError::Foreign {
                    path: path.to_path_buf(),
                    found_cluster: u64::from_str_radix(&found.cluster_id, 16).unwrap_or(0),
                    found_node: found.node_name,
                    cluster: cluster_id,
                    node: node_name.to_string(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if fs::read_dir(path).map_err(io)?.next().is_some() {
                return Err(DataDirError::NotSkiff {
                    path: path.to_path_buf(),
                });
            }
            let tmp = path.join(format!("{META_FILE}.tmp"));
            let body = serde_json::to_vec_pretty(&want).map_err(|e| io(e.into()))?;
            fs::write(&tmp, body).map_err(io)?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
            fs::rename(&tmp, &meta_path).map_err(io)?;
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

/// Creates `path` (and missing parents) mode 0700, and narrows it to 0700 when it already
/// existed with wider rights: keys, tokens and pod volumes live below it.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode != 0o700 {
        tracing::warn!(dir = %path.display(), mode = format!("{mode:o}"), "narrowing the data directory to 0700");
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// A stable id for a cluster: FNV-1a over its name and sorted member names, so every member
/// computes the same value and a member of another cluster is told apart. Peer addresses
/// are left out: a member may move to a new address and keep its data.
pub fn cluster_id(name: &str, member_names: &[String]) -> u64 {
    let mut sorted = member_names.to_vec();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0]).chain(sorted.join(",").bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_wide_open_dir_becomes_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d");
        fs::create_dir_all(&p).expect("mkdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        prepare(&p, 7, 1, "n1").expect("prepare");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn refuses_foreign_and_unknown_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d");
        prepare(&p, 7, 1, "n1").expect("new dir");
        prepare(&p, 7, 1, "n1").expect("same member again");
        assert!(matches!(
            prepare(&p, 8, 1, "n1"),
            Err(DataDirError::Foreign { .. })
        ));
        assert!(matches!(
            prepare(&p, 7, 2, "n2"),
            Err(DataDirError::Foreign { .. })
        ));
        let other = dir.path().join("other");
        fs::create_dir_all(&other).expect("mkdir");
        fs::write(other.join("x"), b"y").expect("write");
        assert!(matches!(
            prepare(&other, 7, 1, "n1"),
            Err(DataDirError::NotSkiff { .. })
        ));
    }

    #[test]
    fn cluster_id_ignores_member_order() {
        let a = ["n1".to_string(), "n2".to_string()];
        let b = [a[1].clone(), a[0].clone()];
        assert_eq!(cluster_id("x", &a), cluster_id("x", &b));
        assert_ne!(cluster_id("x", &a), cluster_id("y", &a));
        assert_ne!(cluster_id("x", &a), cluster_id("x", &a[..1]));
    }
}
