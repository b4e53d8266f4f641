//! Drivers of the handshake machines: the blocking client, the blocking
//! server over one socket, and the non-blocking server step that the
//! listener runs for many pending clients at once.
//!
//! The server side never blocks on a client: it receives with
//! `MSG_DONTWAIT` and sends its `Welcome`/`Reject` with `MSG_DONTWAIT` (the
//! client's receive queue is empty at that point, so this only fails if the
//! client is gone). The socket itself stays in blocking mode, as the
//! connection built on it expects.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::machine::{ClientHandshake, Outgoing, Rejection, ServerHandshake};
use super::{deadline_after, peer_credentials, socket_addr};
use crate::api::connection::Connection;
use crate::error::{Error, Result};
use crate::fdpass::{recv_control, send_control, wait_readable, Recv};
use crate::options::Builder;

fn unix_socket() -> Result<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socket", e))
}

/// Client side: connect, send `Hello`, take `Welcome`.
pub(crate) fn connect(path: &Path, opts: &Builder) -> Result<Connection> {
    opts.validate()?;
    let deadline = deadline_after(opts.handshake_timeout);
    let sock = unix_socket()?;
    let addr = socket_addr(path)?;
    // Non-blocking connect, retried until the handshake deadline: a full
    // accept backlog answers EAGAIN instead of blocking without bound.
    let flags = rustix::fs::fcntl_getfl(&sock).map_err(|e| Error::io("fcntl", e))?;
    rustix::fs::fcntl_setfl(&sock, flags | rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| Error::io("fcntl", e))?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(Errno::AGAIN) => return Err(Error::Timeout),
            // A stream or datagram socket listens there, not shmsock's
            // seqpacket listener: say so rather than "wrong type".
            Err(Errno::PROTOTYPE) => {
                return Err(Error::io_path(
                    "connect (not a shmsock listener: the socket there is not SOCK_SEQPACKET)",
                    path,
                    Errno::PROTOTYPE,
                ))
            }
            Err(e) => return Err(Error::io_path("connect", path, e)),
        }
    }
    rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| Error::io("fcntl", e))?;
    client_handshake(sock, path, deadline, opts)
}

/// Client side of the handshake on a connected (blocking) socket.
pub(crate) fn client_handshake(
    sock: OwnedFd,
    path: &Path,
    deadline: Option<Instant>,
    opts: &Builder,
) -> Result<Connection> {
    let peer = peer_credentials(&sock)?;
    let (hs, hello) = ClientHandshake::start(opts, peer)?;
    send_control(sock.as_fd(), hello.message(), &hello.fds(), false).map_err(|e| match e {
        Errno::PIPE | Errno::CONNRESET => Error::Disconnected,
        e => Error::io_path("sendmsg(hello)", path, e),
    })?;
    // Closes our copy of the back channel's far end.
    drop(hello);
    loop {
        match wait_readable(sock.as_fd(), deadline) {
            Ok(true) => {}
            Ok(false) => return Err(Error::Timeout),
            Err(e) => return Err(Error::io("poll", e)),
        }
        match recv_control(sock.as_fd()).map_err(|e| Error::io("recvmsg", e))? {
            Recv::Empty => continue,
            Recv::Eof => return Err(Error::Disconnected),
            Recv::Msg(m) => return Ok(hs.on_message(m.into())?.into_connection(sock)),
        }
    }
}

/// Why a server-side handshake produced no connection.
pub(crate) enum Accept {
    /// The client hung up before sending anything: not worth an error.
    HungUp,
    /// The handshake failed.
    Failed(Error),
}

impl From<Error> for Accept {
    fn from(e: Error) -> Self {
        Accept::Failed(e)
    }
}

fn send_reply(sock: BorrowedFd<'_>, reply: &Outgoing) -> Result<bool, Errno> {
    send_control(sock, reply.message(), &reply.fds(), true)
}

/// Sends the `Reject` (best effort: the client may be gone) and gives the
/// error.
fn rejected(sock: &OwnedFd, r: Rejection) -> Accept {
    if let Some(reply) = &r.reply {
        let _ = send_reply(sock.as_fd(), reply);
    }
    Accept::Failed(r.error)
}

/// One server-side handshake in progress: the accepted socket, the machine
/// and the deadline.
pub(crate) struct Pending {
    sock: OwnedFd,
    hs: ServerHandshake,
    deadline: Option<Instant>,
}

/// What one step of a pending handshake gave.
// `Done` ends each handshake once and is moved once, straight out of the
// match: boxing it would cost an allocation per connection for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Step {
    /// Nothing to read yet.
    Waiting(Pending),
    /// Finished, one way or the other.
    Done(Result<Connection, Accept>),
}

impl Pending {
    /// Starts the server side on an accepted socket: credentials and policy,
    /// before anything is read. Nothing blocks.
    pub(crate) fn start(sock: OwnedFd, opts: &Builder) -> Result<Pending, Accept> {
        let deadline = deadline_after(opts.handshake_timeout);
        let peer = peer_credentials(&sock)?;
        match ServerHandshake::new(opts, peer) {
            Ok(hs) => Ok(Pending { sock, hs, deadline }),
            Err(r) => Err(rejected(&sock, r)),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Reads what the client sent, if anything, and advances. Never blocks.
    pub(crate) fn step(self) -> Step {
        let m = match recv_control(self.sock.as_fd()) {
            Ok(Recv::Empty) => return Step::Waiting(self),
            Ok(Recv::Eof) => return Step::Done(Err(Accept::HungUp)),
            Ok(Recv::Msg(m)) => m,
            // Our failure (such as EMFILE while installing the client's
            // fds): a Reject that does not blame the client.
            Err(e) => return Step::Done(Err(self.fail_locally(Error::io("recvmsg", e)))),
        };
        let (welcome, est) = match self.hs.on_message(m.into()) {
            Ok(w) => w,
            Err(r) => return Step::Done(Err(rejected(&self.sock, r))),
        };
        let r = match send_reply(self.sock.as_fd(), &welcome) {
            Ok(true) => Ok(est.into_connection(self.sock)),
            Err(Errno::PIPE | Errno::CONNRESET) => Err(Accept::Failed(Error::Disconnected)),
            // The client's receive queue is full although it has not been
            // answered yet: it is not reading what it asked for.
            Ok(false) => Err(Accept::Failed(Error::io("sendmsg(welcome)", Errno::AGAIN))),
            Err(e) => Err(Accept::Failed(Error::io("sendmsg(welcome)", e))),
        };
        Step::Done(r)
    }

    /// We failed locally: send `Reject(Resources)` (best effort), give
    /// `error`.
    pub(crate) fn fail_locally(self, error: Error) -> Accept {
        let r = self.hs.local_failure(error);
        rejected(&self.sock, r)
    }

    /// The deadline passed: send `Reject` (best effort), give the timeout.
    pub(crate) fn expire(self) -> Accept {
        let r = self.hs.expire();
        rejected(&self.sock, r)
    }
}

/// Server side over one socket, blocking until the handshake deadline.
pub(crate) fn accept_blocking(sock: OwnedFd, opts: &Builder) -> Result<Connection, Accept> {
    let mut p = Pending::start(sock, opts)?;
    loop {
        match wait_readable(p.fd(), p.deadline()) {
            Ok(true) => {}
            Ok(false) => return Err(p.expire()),
            Err(e) => return Err(p.fail_locally(Error::io("poll", e))),
        }
        match p.step() {
            Step::Waiting(q) => p = q,
            Step::Done(r) => return r,
        }
    }
}
