//! Terminals for `exec -t`: `runc exec --tty --console-socket S` creates the pseudo-terminal
//! inside the container and sends its master end over the unix socket S (SCM_RIGHTS).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::channel::Size;

/// How long runc may take to send the terminal once it has connected.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening console socket, removed when dropped.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: tokio::net::UnixListener,
}

impl ConsoleSocket {
    pub fn bind(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.sock", uuid::Uuid::new_v4().simple()));
        let listener = tokio::net::UnixListener::bind(&path)?;
        Ok(ConsoleSocket { path, listener })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal master runc sends on its first connection.
    pub async fn receive(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().await?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
        tokio::task::spawn_blocking(move || receive_fd(&stream))
            .await
            .map_err(io::Error::other)?
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn receive_fd(stream: &UnixStream) -> io::Result<OwnedFd> {
    // runc sends the terminal's name as data alongside the descriptor.
    let mut name = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed these descriptors in this process for us;
            // nothing else owns them.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    received
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::other("runc sent no terminal on the console socket"))
}

/// The master end of an exec's terminal.
pub struct Terminal {
    master: OwnedFd,
}

impl Terminal {
    pub fn new(master: OwnedFd) -> Self {
        Terminal { master }
    }

    /// A handle for reading or writing (each its own descriptor, so both can block at once).
    pub fn file(&self) -> io::Result<tokio::fs::File> {
        Ok(tokio::fs::File::from_std(std::fs::File::from(
            self.master.try_clone()?,
        )))
    }

    pub fn resize(&self, size: Size) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, valid for the call.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
