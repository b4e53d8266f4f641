//! The async listener: the blocking [`crate::Listener`]'s non-blocking
//! step, woken by its epoll fd's readiness in the tokio reactor. Pending
//! handshakes are driven by the same state machines, concurrently: a silent
//! client never delays the others.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::fdpass::wait_readable;
use crate::options::Builder;
use crate::tokio::readiness::Readiness;
use crate::tokio::Connection;

/// A listening socket that accepts async shmsock connections. See
/// [`crate::Listener`] for the socket file, its mode and the bounded set
/// of pending handshakes.
#[derive(Debug)]
pub struct Listener {
    /// The epoll fd's readiness (a registered duplicate).
    ready: Readiness,
    inner: crate::Listener,
}

impl Listener {
    /// Binds with default options (`@name` for an abstract socket). Must be
    /// called within a tokio runtime.
    ///
    /// # Errors
    /// As [`crate::Listener::bind`]; [`Error::Io`] if the runtime cannot
    /// register the listener.
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener> {
        Self::bind_with(path, Builder::new())
    }

    /// Binds with `opts` (the same [`Builder`] as the blocking API).
    ///
    /// # Errors
    /// As [`Listener::bind`], plus [`Error::Config`].
    pub fn bind_with(path: impl AsRef<Path>, opts: Builder) -> Result<Listener> {
        let inner = crate::Listener::bind_with(path, opts)?;
        Ok(Listener {
            ready: Readiness::new(inner.as_fd())?,
            inner,
        })
    }

    /// Accepts the next client whose handshake finishes.
    ///
    /// Cancellation safe: handshakes in progress stay in the listener, and
    /// a finished one is returned in the poll that finishes it.
    ///
    /// # Errors
    /// As [`crate::Listener::accept`]: one failed handshake per call (a
    /// client that timed out, lied or was refused); keep accepting after
    /// such errors.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo() -> Result<(), shmsock_transport::Error> {
    /// let listener = shmsock_transport::tokio::Listener::bind("/tmp/s.sock")?;
    /// loop {
    ///     match listener.accept().await {
    ///         Ok(mut conn) => {
    ///             tokio::spawn(async move {
    ///                 while let Ok(msg) = conn.recv().await {
    ///                     println!("{} bytes", msg.len());
    ///                 }
    ///             });
    ///         }
    ///         Err(e) => eprintln!("handshake failed: {e}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn accept(&self) -> Result<Connection> {
        loop {
            if let Some(c) = self.inner.try_accept()? {
                return Connection::from_blocking(c);
            }
            let mut guard = self.ready.readable().await?;
            // The epoll fd stays readable while anything in it is ready (a
            // backlog longer than one step takes): clear the reactor's
            // readiness only once it is not.
            let now = Some(Instant::now());
            if !wait_readable(self.inner.as_fd(), now).map_err(|e| Error::io("poll", e))? {
                guard.clear_ready();
            }
        }
    }

    /// The socket file's path (`None` for abstract sockets).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path()
    }
}
