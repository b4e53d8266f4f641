//! The client handshake, driven on the reactor: the same machine
//! ([`ClientHandshake`]) as the blocking driver, with awaits where that
//! one polls.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::error::{Error, Result};
use crate::fdpass::{recv_control, send_control, Recv};
use crate::handshake::{peer_credentials, socket_addr, ClientHandshake};
use crate::options::Builder;
use crate::tokio::readiness::Readiness;

/// Connects and runs the client handshake within the handshake timeout.
pub(crate) async fn connect(path: &Path, opts: &Builder) -> Result<crate::Connection> {
    opts.validate()?;
    // `timeout` copes with `Duration::MAX` (no deadline).
    match ::tokio::time::timeout(opts.handshake_timeout, handshake(path, opts)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout),
    }
}

async fn handshake(path: &Path, opts: &Builder) -> Result<crate::Connection> {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| Error::io("socket", e))?;
    let addr = socket_addr(path)?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            // The accept backlog is full: try again soon (the blocking
            // driver sleeps 1 ms too); the handshake timeout bounds it.
            Err(Errno::AGAIN) => ::tokio::time::sleep(Duration::from_millis(1)).await,
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
    let peer = peer_credentials(&sock)?;
    let (hs, hello) = ClientHandshake::start(opts, peer)?;
    // A fresh socket's send buffer is empty: this does not wait.
    match send_control(sock.as_fd(), hello.message(), &hello.fds(), true) {
        Ok(true) => {}
        Ok(false) => return Err(Error::io_path("sendmsg(hello)", path, Errno::AGAIN)),
        Err(Errno::PIPE | Errno::CONNRESET) => return Err(Error::Disconnected),
        Err(e) => return Err(Error::io_path("sendmsg(hello)", path, e)),
    }
    // Closes our copy of the back channel's far end.
    drop(hello);
    let reply = {
        let ready = Readiness::new(sock.as_fd())?;
        loop {
            let mut guard = ready.readable().await?;
            match recv_control(sock.as_fd()).map_err(|e| Error::io("recvmsg", e))? {
                Recv::Empty => guard.clear_ready(),
                Recv::Eof => return Err(Error::Disconnected),
                Recv::Msg(m) => break m,
            }
        }
        // `ready` drops here: the connection registers the socket anew.
    };
    blocking_mode(&sock)?;
    Ok(hs.on_message(reply.into())?.into_connection(sock))
}

/// Puts the socket back in blocking mode, as the blocking driver leaves it
/// (a [`crate::tokio::Connection`] only ever reads it with `MSG_DONTWAIT`,
/// and the blocking API expects blocking sockets).
fn blocking_mode(sock: &OwnedFd) -> Result<()> {
    let flags = rustix::fs::fcntl_getfl(sock).map_err(|e| Error::io("fcntl", e))?;
    rustix::fs::fcntl_setfl(sock, flags - rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| Error::io("fcntl", e))
}
