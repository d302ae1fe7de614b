//! The image store on disk: `blobs/sha256/<hex>` (layers, configs), `layers/<diff-id>/`
//! (unpacked, read-only, shared), `refs.json` (reference -> manifest digest, layers, config),
//! `refs.lock` (taken while `refs.json` is rewritten; the CLI and the node agent share a store),
//! `tmp/` (imports being staged).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::unpack::{self, hex};
use super::ImageError;

/// What a container takes from its image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub reference: String,
    /// Manifest digest (`sha256:...`): the image ID containers report.
    pub digest: String,
    /// Uncompressed layer digests, bottom first.
    pub layers: Vec<String>,
    pub size: u64,
    pub config: ImageConfig,
}

pub struct ImageStore {
    dir: PathBuf,
    refs: Mutex<BTreeMap<String, ImageRecord>>,
    /// Registries reached over plain HTTP (`host:port`).
    pub insecure: Vec<String>,
}

/// The full form of a reference (`busybox` -> `docker.io/library/busybox:latest`).
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    let r: oci_client::Reference = reference
        .parse()
        .map_err(|e| ImageError::Invalid(format!("reference {reference:?}: {e}")))?;
    Ok(r.whole())
}

fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ImageError::Invalid(format!("unsupported digest {digest:?}")))
}

/// The sha256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, ImageError> {
    use sha2::Digest;
    let mut f = fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Checks a blob file against its digest.
pub fn verify(path: &Path, digest: &str) -> Result<(), ImageError> {
    let want = digest_hex(digest)?;
    let got = file_sha256(path)?;
    if got != want {
        return Err(ImageError::Invalid(format!(
            "blob digest mismatch: expected {digest}, got sha256:{got}"
        )));
    }
    Ok(())
}

fn read_refs(dir: &Path) -> Result<BTreeMap<String, ImageRecord>, ImageError> {
    match fs::read(dir.join("refs.json")) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| ImageError::Invalid(format!("refs.json: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

impl ImageStore {
    pub fn open(dir: &Path, insecure: Vec<String>) -> Result<Self, ImageError> {
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        fs::create_dir_all(dir.join("layers"))?;
        let refs = read_refs(dir)?;
        Ok(ImageStore {
            dir: dir.to_path_buf(),
            refs: Mutex::new(refs),
            insecure,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, reference: &str) -> Option<ImageRecord> {
        let full = normalize(reference).ok()?;
        if let Some(r) = self.refs.lock().ok()?.get(&full) {
            return Some(r.clone());
        }
        // Another process (`skiff image import`) may have added it since.
        self.reload();
        self.refs.lock().ok()?.get(&full).cloned()
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.reload();
        self.refs
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("layers").join(digest_hex(diff_id)?))
    }

    /// Picks up references written by other processes sharing the store.
    fn reload(&self) {
        match read_refs(&self.dir) {
            Ok(refs) => {
                if let Ok(mut mine) = self.refs.lock() {
                    *mine = refs;
                }
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "reading image references")
            }
        }
    }

    /// Records an image whose layer blobs are in the store: unpacks missing layers (checking
    /// each against the config's diff_ids) and saves the reference.
    pub fn register(
        &self,
        reference: &str,
        digest: &str,
        config: &[u8],
        layer_digests: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let record = self.prepare(reference, digest, config, layer_digests)?;
        self.save(std::slice::from_ref(&record))?;
        Ok(record)
    }

    /// Unpacks the missing layers of an image (checking each against the config's diff_ids)
    /// and returns its record, not saved yet.
    pub(super) fn prepare(
        &self,
        reference: &str,
        digest: &str,
        config: &[u8],
        layer_digests: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let full = normalize(reference)?;
        let cfg = ImageConfiguration::from_reader(config)
            .map_err(|e| ImageError::Invalid(format!("image config: {e}")))?;
        let diff_ids = cfg.rootfs().diff_ids().clone();
        if diff_ids.len() != layer_digests.len() {
            return Err(ImageError::Invalid(format!(
                "{} layers but {} diff_ids in the config",
                layer_digests.len(),
                diff_ids.len()
            )));
        }
        let mut size = 0;
        for (blob, diff_id) in layer_digests.iter().zip(&diff_ids) {
            let path = self.blob_path(blob)?;
            size += fs::metadata(&path)?.len();
            let dest = self.layer_dir(diff_id)?;
            if dest.exists() {
                continue;
            }
            let got = unpack::unpack(&path, &dest)?;
            if format!("sha256:{got}") != *diff_id {
                let _ = fs::remove_dir_all(&dest);
                return Err(ImageError::Invalid(format!(
                    "layer {blob}: diff_id sha256:{got}, config says {diff_id}"
                )));
            }
        }
        let c = cfg.config().clone().unwrap_or_default();
        Ok(ImageRecord {
            reference: full,
            digest: digest.to_string(),
            layers: diff_ids,
            size,
            config: ImageConfig {
                entrypoint: c.entrypoint().clone().unwrap_or_default(),
                cmd: c.cmd().clone().unwrap_or_default(),
                env: c.env().clone().unwrap_or_default(),
                working_dir: c.working_dir().clone().unwrap_or_default(),
                user: c.user().clone().unwrap_or_default(),
            },
        })
    }

    /// Saves records under their references, all or none. The file is re-read under a lock
    /// first so references saved by another process sharing the store are kept.
    pub(super) fn save(&self, records: &[ImageRecord]) -> Result<(), ImageError> {
        use nix::fcntl::{Flock, FlockArg};
        let mut refs = self
            .refs
            .lock()
            .map_err(|_| ImageError::Invalid("image store lock poisoned".into()))?;
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("refs.lock"))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| std::io::Error::from(errno))?;
        let mut next = read_refs(&self.dir)?;
        for r in records {
            next.insert(r.reference.clone(), r.clone());
        }
        let tmp = self.dir.join("refs.json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(&next).map_err(|e| ImageError::Invalid(e.to_string()))?,
        )?;
        fs::rename(&tmp, self.dir.join("refs.json"))?;
        *refs = next;
        Ok(())
    }

    /// Layer directories of an image, top first (overlayfs `lowerdir` order).
    pub fn lower_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        record
            .layers
            .iter()
            .rev()
            .map(|d| self.layer_dir(d))
            .collect()
    }
}
