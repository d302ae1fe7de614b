//! Mounts the node makes for a pod's volumes: a tmpfs per Secret, ConfigMap, downwardAPI and
//! projected volume (their content never reaches the node's disk), subPath bind mounts
//! resolved inside their volume, and the teardown of all of them.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, SFlag};
use tracing::warn;

use crate::node::confined;
use crate::node::sandbox::netns::is_mounted;
use crate::node::NodeError;

fn sys(what: &str, path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::Pod(format!("{what} {}: {e}", path.display()))
}

/// `dir` as its own tmpfs (mode 0755, as upstream's volume directories), mounted once: a
/// restarted agent finds it mounted and only rewrites the files.
pub fn memory_dir(dir: &Path) -> Result<(), NodeError> {
    fs::create_dir_all(dir)?;
    if is_mounted(dir) {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| sys("tmpfs on", dir, e))
}

/// Makes `target` (a node-owned path) show `sub` of the volume at `volume`. `sub` must be a
/// plain relative path (the API refuses others; checked again here); symlinks in the volume
/// are resolved as if the volume were `/`, so one pointing at `/` gives the volume itself,
/// never the host's root. The bind mount is made from the resolved handle, so a container
/// renaming things in the volume afterwards cannot redirect it. Missing directories are
/// created, as upstream.
pub fn bind_sub_path(volume: &Path, sub: &str, target: &Path) -> Result<(), NodeError> {
    let refused = || NodeError::Config(format!("subPath {sub:?} is not allowed"));
    let parts = confined::plain_components(Path::new(sub)).ok_or_else(refused)?;
    if sub.starts_with('/') || parts.is_empty() {
        return Err(refused());
    }
    let root = confined::open_dir(volume)?;
    let fd = match confined::resolve_in_root(&root, Path::new(sub)) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            confined::mkdir_all(&root, Path::new(sub), 0o755)
                .map_err(|e| sys("creating subPath in", volume, e))?;
            confined::resolve_in_root(&root, Path::new(sub))?
        }
        Err(e) => return Err(sys(&format!("subPath {sub:?} of"), volume, e)),
    };
    let st = fstat(&fd).map_err(|e| sys("stat of subPath in", volume, e))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if is_mounted(target) {
        umount2(target, MntFlags::MNT_DETACH).map_err(|e| sys("umount", target, e))?;
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    // The mount point must be of the same kind as what is mounted on it.
    if is_dir {
        fs::create_dir_all(target)?;
    } else if !target.is_file() {
        fs::write(target, b"")?;
    }
    let source = confined::proc_fd_path(&fd);
    mount(
        Some(source.as_path()),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| sys(&format!("bind mount of subPath {sub:?} on"), target, e))
}

/// The mount points at or below `dir`, from the mount table.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().into_owned();
    let below = format!("{dir}/");
    let mut out: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&below))
        .map(PathBuf::from)
        .collect();
    // Deepest first, so nothing is unmounted from under another mount.
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

/// Detaches every mount at or below `dir` (volume tmpfs, subPath binds) before the pod's
/// directory is removed; failures are logged.
pub fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        if let Err(e) = umount2(m.as_path(), MntFlags::MNT_DETACH) {
            warn!(mount = %m.display(), error = %e, "cannot unmount a pod mount");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_leaving_the_volume_are_refused_before_any_mount() {
        let vol = tempfile::tempdir().expect("tempdir");
        let target = vol.path().join("t");
        for bad in ["/", "/etc", "../x", "a/../../b", "", "."] {
            let err = bind_sub_path(vol.path(), bad, &target).expect_err(bad);
            assert!(matches!(err, NodeError::Config(_)), "{bad}: {err}");
        }
        assert!(!target.exists());
    }
}
