//! The handshake: who creates which ring, what crosses the socket, what is
//! checked before anything is shared (see `docs/protocol.md`).
//!
//! Each side creates the ring it writes into and passes its memfd; the
//! client also creates the socket pair for the server→client direction and
//! passes one end. The server checks the client's credentials before it
//! reads anything, and each side attaches the peer's ring only through
//! `shm`'s validating attach.
//!
//! Split in two:
//! - [`machine`]: the state machines of both sides, with no socket I/O of
//!   their own (a received datagram in, a message to send out), so that an
//!   event loop, an async runtime or a broker can drive them;
//! - `driver`: the blocking client (`connect`), the blocking server over one
//!   socket (`accept_socket`), and the non-blocking server step the
//!   [`Listener`](crate::Listener) runs for many clients at once.

pub(crate) mod driver;
mod exchange;
pub mod machine;

pub use machine::{ClientHandshake, Established, Incoming, Outgoing, Rejection, ServerHandshake};

use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::Credentials;

/// The instant `t` from now; `None` (no deadline) if that is beyond what
/// `Instant` can represent, such as for `Duration::MAX`.
pub(crate) fn deadline_after(t: Duration) -> Option<Instant> {
    Instant::now().checked_add(t)
}

/// Reads `SO_PEERCRED`. A pid of 0 means the peer lives in a PID namespace
/// we cannot see (the kernel has no number for it here): `pid: None`.
pub(crate) fn peer_credentials(sock: impl AsFd) -> Result<Credentials> {
    let c = nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| Error::io("SO_PEERCRED", e))?;
    Ok(Credentials {
        pid: (c.pid() > 0).then_some(c.pid()),
        uid: c.uid(),
        gid: c.gid(),
    })
}

pub(crate) fn socket_addr(path: &Path) -> Result<rustix::net::SocketAddrUnix> {
    Ok(crate::socket_path::socket_addr(path)?)
}
