//! A container's root filesystem: an overlay of the image's unpacked layers (shared, read
//! only) under a per-container writable layer in the bundle.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::RuntimeError;

pub fn rootfs(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts the overlay at `<bundle>/rootfs` (idempotent). `lower`: layer dirs, top first.
pub fn mount_rootfs(bundle: &Path, lower: &[PathBuf]) -> Result<(), RuntimeError> {
    let target = rootfs(bundle);
    if crate::node::sandbox::netns::is_mounted(&target) {
        return Ok(());
    }
    if lower.is_empty() {
        return Err(RuntimeError::Bundle("image has no layers".into()));
    }
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    for d in [&target, &upper, &work] {
        fs::create_dir_all(d)?;
    }
    let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| RuntimeError::Bundle(format!("overlay mount on {}: {e}", target.display())))
}

/// Unmounts the rootfs and removes the bundle directory.
pub fn remove_bundle(bundle: &Path) -> Result<(), RuntimeError> {
    let target = rootfs(bundle);
    if crate::node::sandbox::netns::is_mounted(&target) {
        umount2(&target, MntFlags::MNT_DETACH)
            .map_err(|e| RuntimeError::Bundle(format!("umount {}: {e}", target.display())))?;
    }
    match fs::remove_dir_all(bundle) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// After the container exited: unmount its rootfs and drop the writable layer, keeping the
/// bundle's small files (exit record, start time) for status.
pub fn release(bundle: &Path) -> Result<(), RuntimeError> {
    let target = rootfs(bundle);
    if crate::node::sandbox::netns::is_mounted(&target) {
        umount2(&target, MntFlags::MNT_DETACH)
            .map_err(|e| RuntimeError::Bundle(format!("umount {}: {e}", target.display())))?;
    }
    for d in ["upper", "work"] {
        match fs::remove_dir_all(bundle.join(d)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}
