//! File operations confined to a directory the node owns (an image layer being unpacked, a
//! pod volume): paths are resolved with `openat2`, so a symlink planted by a layer or by a
//! container never leads the node out of that directory.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A directory given by a trusted path (the node's own layout), opened for the `*at` calls.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err)
}

/// One path component below `dir` that must be a real directory (no symlink at all).
fn open_child_dir(dir: &impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(dir.as_fd(), name, how)
}

/// The plain components of a relative path; `None` for `..`, absolute paths and the like.
pub fn plain_components(rel: &Path) -> Option<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Opens (creating what is missing, with `mode`) the directory `rel` below `root`. Every
/// component must be a real directory: a symlink anywhere is refused (ELOOP/ENOTDIR), since
/// the node writes there and a symlink would redirect the write.
pub fn mkdir_all(root: &impl AsFd, rel: &Path, mode: u32) -> io::Result<OwnedFd> {
    let parts = plain_components(rel).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} leaves its directory", rel.display()),
        )
    })?;
    let mut cur = open_child_dir(root, OsStr::new(".")).map_err(io_err)?;
    for p in parts {
        cur = match open_child_dir(&cur, p) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(cur.as_fd(), p, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err(e)),
                }
                open_child_dir(&cur, p).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        };
    }
    Ok(cur)
}

/// Opens `rel` as if `root` were `/`: symlinks inside are followed but can never climb out
/// of `root` (an absolute target or `..` stays inside it). The result is an `O_PATH` handle
/// to bind-mount from (`/proc/self/fd/N`), which later renames cannot redirect.
pub fn resolve_in_root(root: &impl AsFd, rel: &Path) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), rel, how).map_err(io_err)
}

/// Reads the regular file `rel` inside `root` (resolved as by [`resolve_in_root`]), at most
/// `limit` bytes; `None` when it does not exist. Anything but a regular file is refused
/// before it is opened for reading (a FIFO would block, a device node would reach the host).
pub fn read_in_root(root: &impl AsFd, rel: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let handle = match resolve_in_root(root, rel) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(&handle).map_err(io_err)?;
    let kind =
        nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT;
    if kind != nix::sys::stat::SFlag::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", rel.display()),
        ));
    }
    // Reopening the O_PATH handle reads exactly the file checked above.
    let file = std::fs::File::open(proc_fd_path(&handle))?;
    let mut out = Vec::new();
    file.take(limit).read_to_end(&mut out)?;
    Ok(Some(out))
}

/// `/proc/self/fd/N` of an open handle: the path to hand to mount(2) for exactly that file.
pub fn proc_fd_path(fd: &impl AsRawFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Writes `name` in `dir` atomically (a temporary file renamed over it) with `mode`. The
/// temporary is created with O_EXCL|O_NOFOLLOW, so a symlink planted under its name is never
/// followed.
pub fn write_file(dir: &impl AsFd, name: &OsStr, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".skiff-tmp");
    let tmp = tmp_name.as_os_str();
    // A leftover of an interrupted write (never followed: unlinkat removes the entry itself).
    match nix::unistd::unlinkat(dir.as_fd(), tmp, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(io_err(e)),
    }
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(io_err)?;
    // fchmod after creation: the umask must not narrow the mode the pod asked for.
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode & 0o777)).map_err(io_err)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    drop(file);
    debug_assert!(!name.as_bytes().contains(&b'/'));
    nix::fcntl::renameat(dir.as_fd(), tmp, dir.as_fd(), name).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_never_lead_out() {
        let outside = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        symlink(outside.path(), root.path().join("out")).expect("symlink");
        symlink("/", root.path().join("slash")).expect("symlink");
        let fd = open_dir(root.path()).expect("open");
        // Creating through a symlink is refused; plain directories are made.
        assert!(mkdir_all(&fd, Path::new("out/x"), 0o755).is_err());
        assert!(!outside.path().join("x").exists());
        assert!(mkdir_all(&fd, Path::new("../x"), 0o755).is_err());
        let made = mkdir_all(&fd, Path::new("a/b"), 0o755).expect("mkdir");
        assert!(root.path().join("a/b").is_dir());
        // Writes never follow a planted symlink.
        symlink(
            outside.path().join("f"),
            root.path().join("a/b/k.skiff-tmp"),
        )
        .expect("symlink");
        write_file(&made, OsStr::new("k"), b"v", 0o640).expect("write");
        assert_eq!(
            std::fs::read(root.path().join("a/b/k")).expect("read"),
            b"v"
        );
        assert!(!outside.path().join("f").exists());
        // Resolution in the root: "/" is the root itself.
        let slash = resolve_in_root(&fd, Path::new("slash/a")).expect("resolve");
        let real = std::fs::read_link(proc_fd_path(&slash)).expect("readlink");
        assert_eq!(real, root.path().join("a"));
        let up = resolve_in_root(&fd, Path::new("slash/../../a")).expect("resolve");
        let real = std::fs::read_link(proc_fd_path(&up)).expect("readlink");
        assert_eq!(real, root.path().join("a"));
    }
}
