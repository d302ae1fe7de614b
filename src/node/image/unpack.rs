//! Layer unpacking into a directory usable as an overlayfs lower layer: OCI whiteouts
//! (`.wh.NAME`, `.wh..wh..opq`) become overlay whiteouts (a 0/0 character device, the
//! `trusted.overlay.opaque` attribute). The uncompressed stream is hashed on the way and must
//! match the image config's diff_id.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknodat, Mode, SFlag};
use sha2::{Digest, Sha256};

use super::ImageError;
use crate::node::confined;

/// Passes bytes through and hashes them.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An overlay whiteout (a 0/0 character device) for `name` in the layer directory `dir`.
fn whiteout(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    mknodat(dir, name, SFlag::S_IFCHR, Mode::empty(), 0)
        .map_err(|e| io::Error::from_raw_os_error(e as i32))
}

/// Marks the layer directory `dir` opaque (it hides what lower layers have there).
fn opaque(dir: &OwnedFd) -> io::Result<()> {
    let name = b"trusted.overlay.opaque\0";
    // SAFETY: a valid open descriptor, a NUL-terminated name and a 1-byte value.
    let rc = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            name.as_ptr().cast(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The directory of a whiteout entry inside the layer, created if missing. Resolved below
/// `root` without following symlinks: an earlier entry `x -> /etc` must not turn
/// `x/.wh.passwd` into a change on the host.
fn marker_dir(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, ImageError> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    confined::mkdir_all(root, parent, 0o755).map_err(|e| {
        ImageError::Invalid(format!(
            "layer whiteout {} outside a plain directory: {e}",
            rel.display()
        ))
    })
}

/// A relative, normal path inside the layer, or `None` for anything escaping it.
pub(super) fn safe(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Unpacks a (gzipped or plain) layer tar into `dest` (which must not exist) and returns the
/// sha256 of the uncompressed tar (the diff_id).
pub fn unpack(blob: &Path, dest: &Path) -> Result<String, ImageError> {
    let mut head = [0u8; 2];
    let gz = fs::File::open(blob)?.read(&mut head)? == 2 && head == [0x1f, 0x8b];
    let file = fs::File::open(blob)?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
    };
    let tmp = dest.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        let root = confined::open_dir(&tmp)?;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.into_owned();
            let Some(rel) = safe(&raw) else {
                return Err(ImageError::Invalid(format!(
                    "layer entry escapes the layer: {}",
                    raw.display()
                )));
            };
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == ".wh..wh..opq" {
                opaque(&marker_dir(&root, &rel)?)?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                if hidden.is_empty() {
                    return Err(ImageError::Invalid(format!(
                        "layer whiteout without a name: {}",
                        raw.display()
                    )));
                }
                whiteout(&marker_dir(&root, &rel)?, OsStr::new(hidden))?;
                continue;
            }
            entry.unpack_in(&tmp)?;
        }
    }
    // Drain what the tar reader left (padding) so the hash covers the whole stream.
    io::copy(&mut hashing, &mut io::sink())?;
    let diff_id = hex(&hashing.hash.finalize());
    fs::rename(&tmp, dest)?;
    Ok(diff_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as image builders write them (owners and times set).
    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    /// A tar with a symlink `x -> target` and then `marker` under it.
    fn layer(dir: &Path, target: &Path, marker: &str) -> PathBuf {
        let path = dir.join(format!("layer-{}.tar", marker.replace('/', "_")));
        let mut b = tar::Builder::new(fs::File::create(&path).expect("tar"));
        let mut h = header(tar::EntryType::Symlink, 0o777);
        b.append_link(&mut h, "x", target).expect("symlink entry");
        let mut h = header(tar::EntryType::Regular, 0o644);
        b.append_data(&mut h, marker, io::empty())
            .expect("marker entry");
        b.into_inner().expect("finish");
        path
    }

    #[test]
    fn whiteouts_stay_inside_the_layer() {
        let work = tempfile::tempdir().expect("tempdir");
        let host = tempfile::tempdir().expect("tempdir");
        fs::write(host.path().join("passwd"), b"root").expect("victim");
        for marker in [
            "x/.wh.passwd",
            "x/.wh.newfile",
            "x/.wh..wh..opq",
            "x/sub/.wh.y",
        ] {
            let blob = layer(work.path(), host.path(), marker);
            let dest = work
                .path()
                .join(format!("out-{}", marker.replace('/', "_")));
            let err = unpack(&blob, &dest).expect_err(marker);
            assert!(matches!(err, ImageError::Invalid(_)), "{marker}: {err:?}");
        }
        // The host directory the symlink pointed at is untouched.
        let names: Vec<_> = fs::read_dir(host.path())
            .expect("read")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("passwd")]);
        assert_eq!(fs::read(host.path().join("passwd")).expect("read"), b"root");
        assert!(!host.path().join("sub").exists());
    }

    #[test]
    fn whiteouts_in_plain_directories_become_overlay_markers() {
        // mknod of a whiteout needs CAP_MKNOD.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let work = tempfile::tempdir().expect("tempdir");
        let path = work.path().join("layer.tar");
        let mut b = tar::Builder::new(fs::File::create(&path).expect("tar"));
        let mut h = header(tar::EntryType::Regular, 0o644);
        b.append_data(&mut h, "etc/.wh.passwd", io::empty())
            .expect("entry");
        b.into_inner().expect("finish");
        let dest = work.path().join("out");
        unpack(&path, &dest).expect("unpack");
        use std::os::unix::fs::FileTypeExt;
        let meta = fs::symlink_metadata(dest.join("etc/passwd")).expect("whiteout");
        assert!(meta.file_type().is_char_device());
    }
}
