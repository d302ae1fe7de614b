//! The host's device nodes for privileged containers, as containerd's `WithHostDevices`:
//! every character and block device under /dev except the per-container ones (pts, shm,
//! mqueue, the console), created in the container's /dev by runc.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};
use tracing::debug;

/// Directories of /dev the container has its own of.
const SKIPPED: &[&str] = &[
    "pts",
    "shm",
    "fd",
    "mqueue",
    ".lxc",
    ".lxd-mounts",
    "console",
];

fn walk(dir: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        // Not followed: a symlink in /dev names a device listed under its own name.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            walk(&path, out);
            continue;
        }
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        let built = LinuxDeviceBuilder::default()
            .path(&path)
            .typ(typ)
            .major(nix::sys::stat::major(rdev) as i64)
            .minor(nix::sys::stat::minor(rdev) as i64)
            .file_mode(meta.mode() & 0o777)
            .uid(meta.uid())
            .gid(meta.gid())
            .build();
        match built {
            Ok(d) => out.push(d),
            Err(e) => debug!(device = %path.display(), error = %e, "device skipped"),
        }
    }
}

/// Every device node of the host's /dev.
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}
