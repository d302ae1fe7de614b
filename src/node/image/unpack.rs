//! Layer unpacking into a directory usable as an overlayfs lower layer: OCI whiteouts
//! (`.wh.NAME`, `.wh..wh..opq`) become overlay whiteouts (a 0/0 character device, the
//! `trusted.overlay.opaque` attribute). The uncompressed stream is hashed on the way and must
//! match the image config's diff_id.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

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

fn whiteout(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: a valid NUL-terminated path; mknod only reads it.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn opaque(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::other(e.to_string()))?;
    let name = b"trusted.overlay.opaque\0";
    // SAFETY: valid NUL-terminated strings and a 1-byte value.
    let rc =
        unsafe { libc::setxattr(c.as_ptr(), name.as_ptr().cast(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
                let dir = tmp.join(rel.parent().unwrap_or(Path::new("")));
                fs::create_dir_all(&dir)?;
                opaque(&dir)?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let target = tmp.join(rel.parent().unwrap_or(Path::new(""))).join(hidden);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)?;
                }
                whiteout(&target)?;
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
