//! The async connection: an async [`Sender`] and [`Receiver`] in one.

use std::path::Path;
use std::sync::Arc;

use crate::api::message::Message;
use crate::api::sender::WriteGrant;
use crate::error::Result;
use crate::options::{Builder, Credentials};
use crate::shutdown::{ShutFlag, ShutdownHandle};
use crate::tokio::readiness::max_spin;
use crate::tokio::{Receiver, Sender};

/// A bidirectional async connection. Built by [`Connection::connect`] (or
/// [`Connection::connect_with`] and a [`Builder`]) or
/// [`Listener::accept`](crate::tokio::Listener::accept).
#[derive(Debug)]
pub struct Connection {
    tx: Sender,
    rx: Receiver,
    shut: Arc<ShutFlag>,
}

impl Connection {
    /// Adopts a connection made by the blocking API (for example accepted
    /// by a [`crate::Listener`] on another thread): registers its sockets
    /// with the current runtime's reactor. Its wait strategy carries over
    /// (see the [module docs](crate::tokio) for the spin).
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the sockets cannot be registered.
    ///
    /// # Panics
    /// Outside a tokio runtime, as every tokio I/O type.
    pub fn from_std(c: crate::Connection) -> Result<Connection> {
        Self::from_blocking(c)
    }

    /// See [`Connection::from_std`].
    pub(crate) fn from_blocking(c: crate::Connection) -> Result<Connection> {
        let (tx, rx, shut, wait) = c.into_cores();
        let spin = max_spin(wait);
        Ok(Connection {
            tx: Sender::new(tx, spin)?,
            rx: Receiver::new(rx, spin)?,
            shut,
        })
    }

    /// Connects to a listener with default options.
    ///
    /// Cancellation safe: a dropped connect closes its socket.
    ///
    /// # Errors
    /// As [`Builder::connect`]: [`Error::Io`](crate::Error::Io) with the
    /// path, [`Error::Timeout`](crate::Error::Timeout) after the handshake
    /// timeout, the handshake's errors.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo() -> Result<(), shmsock_transport::Error> {
    /// let mut conn = shmsock_transport::tokio::Connection::connect("/tmp/s.sock").await?;
    /// conn.send(b"hi").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> Result<Connection> {
        Self::connect_with(path, &Builder::new()).await
    }

    /// Connects with the options of `opts` (the same [`Builder`] as the
    /// blocking API; its per-call `timeout` does not apply to async calls:
    /// use `tokio::time::timeout`).
    ///
    /// # Errors
    /// As [`Connection::connect`], plus [`Error::Config`](crate::Error::Config).
    pub async fn connect_with(path: impl AsRef<Path>, opts: &Builder) -> Result<Connection> {
        let c = crate::tokio::connect::connect(path.as_ref(), opts).await?;
        Connection::from_blocking(c)
    }

    /// Sends a message (see [`Sender::send`]).
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.tx.send(data).await
    }

    /// Reserves ring space for a zero-copy message (see [`Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub async fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.tx.reserve(len).await
    }

    /// Receives a message (see [`Receiver::recv`]).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub async fn recv(&mut self) -> Result<Message<'_>> {
        self.rx.recv().await
    }

    /// Both halves, borrowed: receive on one while sending on the other
    /// (in one task, or `tokio::join!`), or reply while holding a request.
    pub fn split(&mut self) -> (&mut Sender, &mut Receiver) {
        (&mut self.tx, &mut self.rx)
    }

    /// Both halves, owned: for two tasks.
    pub fn into_split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }

    /// A handle that ends this connection from anywhere (see
    /// [`ShutdownHandle`]): waiting calls return
    /// [`Error::Disconnected`](crate::Error::Disconnected).
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the sockets cannot be duplicated.
    pub fn shutdown_handle(&self) -> Result<ShutdownHandle> {
        ShutdownHandle::new(self.shut.clone(), &[self.tx.sock(), self.rx.sock()])
    }

    /// Credentials of the peer process (`SO_PEERCRED` at connect time).
    pub fn peer_credentials(&self) -> Credentials {
        self.tx.peer_credentials()
    }

    /// Largest message that travels inline through the ring.
    pub fn max_inline(&self) -> usize {
        self.tx.max_inline()
    }
}
