//! The server side: a listening `SOCK_SEQPACKET` Unix socket.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::error::{Error, Result};
use crate::handshake::socket_addr;
use crate::options::Builder;
use crate::Connection;

/// A listening socket that accepts shmsock connections.
///
/// The socket file is created with mode 0600 (see
/// [`Builder::socket_mode`]) and removed when the listener drops (only if
/// it is still the file we created).
#[derive(Debug)]
pub struct Listener {
    sock: OwnedFd,
    /// Filesystem path and (dev, inode) of the socket file we created.
    file: Option<(PathBuf, u64, u64)>,
    opts: Builder,
}

fn is_live_socket(path: &Path) -> Result<bool> {
    let addr = socket_addr(path)?;
    let probe = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socket", e))?;
    match rustix::net::connect(&probe, &addr) {
        // Someone is listening (our probe is dropped at once; the server
        // sees a client that hangs up before its handshake).
        Ok(()) => Ok(true),
        Err(Errno::CONNREFUSED) | Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(Error::io_path("connect (probing existing socket)", path, e)),
    }
}

impl Listener {
    /// Binds with default options. `path` starting with `@` names a Linux
    /// abstract socket (no file).
    ///
    /// A stale socket file at `path` (nobody listening) is replaced; a live
    /// one is refused with [`Error::Io`] of kind `AddrInUse`; a file that is
    /// not a socket is never removed.
    ///
    /// # Errors
    /// [`Error::Io`] with the path.
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener> {
        Self::bind_with(path, Builder::new())
    }

    /// Binds with `opts`.
    ///
    /// # Errors
    /// As [`Listener::bind`], plus [`Error::Config`].
    pub fn bind_with(path: impl AsRef<Path>, opts: Builder) -> Result<Listener> {
        let path = path.as_ref();
        opts.validate()?;
        let abstract_name = path.as_os_str().as_encoded_bytes().starts_with(b"@");
        let addr = socket_addr(path)?;
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::io("socket", e))?;
        if !abstract_name {
            match rustix::fs::lstat(path) {
                Ok(st)
                    if rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Socket =>
                {
                    if is_live_socket(path)? {
                        return Err(Error::io_path(
                            "bind (a live listener owns this socket)",
                            path,
                            std::io::Error::from(std::io::ErrorKind::AddrInUse),
                        ));
                    }
                    rustix::fs::unlink(path)
                        .map_err(|e| Error::io_path("unlink stale socket", path, e))?;
                }
                Ok(_) => {
                    return Err(Error::io_path(
                        "bind (path exists and is not a socket)",
                        path,
                        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                    ))
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(Error::io_path("lstat", path, e)),
            }
        }
        rustix::net::bind(&sock, &addr).map_err(|e| Error::io_path("bind", path, e))?;
        let mut file = None;
        if !abstract_name {
            // Before listen(): nobody can connect until then, so the mode is
            // in place before the first client can reach the socket.
            let chmod = rustix::fs::chmod(path, Mode::from_raw_mode(opts.socket_mode));
            let st = rustix::fs::stat(path);
            match (chmod, st) {
                (Ok(()), Ok(st)) => file = Some((path.to_owned(), st.st_dev, st.st_ino)),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = rustix::fs::unlink(path);
                    return Err(Error::io_path("chmod", path, e));
                }
            }
        }
        let listener = Listener { sock, file, opts };
        rustix::net::listen(&listener.sock, 128).map_err(|e| Error::io_path("listen", path, e))?;
        Ok(listener)
    }

    /// Waits for a client and runs the handshake with it (bounded by the
    /// handshake timeout). A client that fails its handshake yields an
    /// error; the listener stays usable.
    ///
    /// # Errors
    /// [`Error::Io`] (`WouldBlock` if non-blocking and nobody is waiting),
    /// and the handshake errors of [`Builder::connect`].
    ///
    /// A client that hangs up before sending anything (such as another
    /// process probing whether this listener is alive) is skipped silently.
    pub fn accept(&self) -> Result<Connection> {
        loop {
            let sock = match rustix::net::accept_with(&self.sock, SocketFlags::CLOEXEC) {
                Ok(s) => s,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("accept", e)),
            };
            match crate::handshake::accept(sock, &self.opts) {
                Err(crate::handshake::Accept::HungUp) => continue,
                Err(crate::handshake::Accept::Failed(e)) => return Err(e),
                Ok(c) => return Ok(c),
            }
        }
    }

    /// An endless iterator of [`Listener::accept`] results.
    pub fn incoming(&self) -> impl Iterator<Item = Result<Connection>> + '_ {
        std::iter::repeat_with(move || self.accept())
    }

    /// Makes `accept` return `WouldBlock` instead of waiting for a client.
    ///
    /// # Errors
    /// [`Error::Io`] if `fcntl` fails.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        let fl = rustix::fs::fcntl_getfl(&self.sock).map_err(|e| Error::io("fcntl", e))?;
        let fl = if on {
            fl | rustix::fs::OFlags::NONBLOCK
        } else {
            fl - rustix::fs::OFlags::NONBLOCK
        };
        rustix::fs::fcntl_setfl(&self.sock, fl).map_err(|e| Error::io("fcntl", e))
    }

    /// The socket file's path (`None` for abstract sockets).
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _, _)| p.as_path())
    }
}

impl AsFd for Listener {
    /// The listening socket: readable when a client is waiting to be
    /// accepted.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.file {
            // Only remove the file if it is still ours (not replaced).
            if let Ok(st) = rustix::fs::lstat(path) {
                if st.st_dev == *dev && st.st_ino == *ino {
                    let _ = rustix::fs::unlink(path);
                }
            }
        }
    }
}
