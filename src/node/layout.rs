//! Where the node agent keeps things, shared by the pod workers, the runtime and the kubelet
//! server (logs, exec). Everything a restarted agent needs is on disk:
//!
//! ```text
//! <state_dir>/images/                     image store
//! <state_dir>/pods/<uid>/pod.json         PodRecord: namespace, name, uid, current containers
//! <state_dir>/pods/<uid>/logs/<container>/<attempt>.log   CRI log format
//! <state_dir>/pods/<uid>/containers/<runc id>/            OCI bundle (config.json, rootfs, exit)
//! <state_dir>/pods/<uid>/volumes/<name>/  emptyDir; configMap, secret, downwardAPI and
//!                                         projected contents each on its own tmpfs
//! <state_dir>/pods/<uid>/volume-subpaths/<container>/<mount index>   subPath bind mounts
//! <state_dir>/ipam.json                   pod IP allocations
//! <run_dir>/runc/                         runc --root
//! /run/skiff/netns/<uid>                  pod network namespace (bind mount)
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Pod network namespaces are bind-mounted here (pod UIDs are unique cluster-wide, so nodes
/// sharing a host do not collide).
pub const NETNS_DIR: &str = "/run/skiff/netns";

#[derive(Clone, Debug)]
pub struct NodeDirs {
    pub state: PathBuf,
    pub run: PathBuf,
}

/// The container of one pod container name that is current (the latest attempt).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// runc container id.
    pub id: String,
    /// 0 for the first run, +1 per restart (the restartCount).
    pub attempt: u32,
}

/// What the node remembers of a pod across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Container name -> its current container (init containers included).
    pub containers: BTreeMap<String, ContainerRecord>,
}

impl NodeDirs {
    pub fn images(&self) -> PathBuf {
        self.state.join("images")
    }
    pub fn pods(&self) -> PathBuf {
        self.state.join("pods")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods().join(uid)
    }
    pub fn bundle(&self, uid: &str, id: &str) -> PathBuf {
        self.pod(uid).join("containers").join(id)
    }
    pub fn volumes(&self, uid: &str) -> PathBuf {
        self.pod(uid).join("volumes")
    }
    pub fn log_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.pod(uid).join("logs").join(container)
    }
    pub fn log_path(&self, uid: &str, container: &str, attempt: u32) -> PathBuf {
        self.log_dir(uid, container).join(format!("{attempt}.log"))
    }
    pub fn runc_root(&self) -> PathBuf {
        self.run.join("runc")
    }
    pub fn netns(uid: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(uid)
    }

    pub fn read_record(&self, uid: &str) -> io::Result<PodRecord> {
        let bytes = fs::read(self.pod(uid).join("pod.json"))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a record.
    pub fn write_record(&self, rec: &PodRecord) -> io::Result<()> {
        let dir = self.pod(&rec.uid);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join("pod.json.tmp");
        fs::write(&tmp, serde_json::to_vec(rec).map_err(io::Error::other)?)?;
        fs::rename(tmp, dir.join("pod.json"))
    }

    /// Every pod the node has state for.
    pub fn records(&self) -> Vec<PodRecord> {
        let Ok(entries) = fs::read_dir(self.pods()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| self.read_record(e.file_name().to_str()?).ok())
            .collect()
    }

    /// The pod `namespace/name` running on this node, if any.
    pub fn find(&self, namespace: &str, name: &str) -> Option<PodRecord> {
        self.records()
            .into_iter()
            .find(|r| r.namespace == namespace && r.name == name)
    }
}
