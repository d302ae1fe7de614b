//! Terminals for `exec -t`. runc accepts a console socket only for detached processes, whose
//! exit status would then be lost; so `runc exec --tty` runs attached, on a pseudo-terminal of
//! ours as its stdio and controlling terminal. runc bridges it to the container's terminal and
//! copies our terminal's size over on SIGWINCH, which the kernel sends it when we resize.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use super::channel::Size;

/// The master end of an exec's terminal.
pub struct Terminal {
    master: OwnedFd,
}

/// runc's side of a terminal: its stdin, stdout and stderr.
pub struct Slave {
    fd: OwnedFd,
}

impl Slave {
    pub fn stdio(&self) -> io::Result<Stdio> {
        Ok(Stdio::from(self.fd.try_clone()?))
    }
}

/// A new terminal pair, raw (runc's side only relays bytes; the container's terminal echoes
/// and translates).
pub fn open() -> io::Result<(Terminal, Slave)> {
    let pty = nix::pty::openpty(None, None)?;
    let mut t = tcgetattr(&pty.slave)?;
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t)?;
    Ok((Terminal { master: pty.master }, Slave { fd: pty.slave }))
}

/// In the child before exec: a new session whose controlling terminal is stdin (the slave),
/// so that resizes signal runc.
pub fn make_controlling() -> io::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument and touches no memory of ours.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Terminal {
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
