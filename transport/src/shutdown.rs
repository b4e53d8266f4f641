//! Ending a connection from another thread, as `shutdown(2)` does for a
//! socket: a relay server evicting a client, or a program stopping a thread
//! that is blocked in `recv` or `send`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::io::Errno;
use rustix::net::Shutdown;
use shmsock_shm::ring::WakeWord;

use crate::error::{Error, Result};

/// Whether a connection was shut down locally; shared by its
/// halves and its handles.
#[derive(Debug, Default)]
pub(crate) struct ShutFlag(AtomicBool);

impl ShutFlag {
    /// Whether [`ShutdownHandle::shutdown`] was called.
    pub(crate) fn is_set(&self) -> bool {
        // Relaxed: the flag only makes later calls fail fast; the socket
        // shutdown and the futex wake-up below are what wake a call that is
        // already waiting.
        self.0.load(Ordering::Relaxed)
    }
}

/// Ends a connection from any thread: every call of its [`Sender`] and
/// [`Receiver`], waiting or not, returns [`Error::Disconnected`] (a
/// receiver first delivers what the peer had already committed), and the
/// peer sees the connection end as if this process had closed it. Cheap to
/// clone; `Send + Sync`.
///
/// [`Sender`]: crate::Sender
/// [`Receiver`]: crate::Receiver
///
/// # Examples
/// ```no_run
/// # fn main() -> Result<(), shmsock_transport::Error> {
/// let mut conn = shmsock_transport::Connection::connect("/tmp/app.sock")?;
/// let handle = conn.shutdown_handle()?;
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(1));
///     let _ = handle.shutdown();
/// });
/// // Returns Err(Disconnected) after a second at the latest.
/// let _ = conn.recv();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<ShutFlag>,
    /// Duplicates of the connection's sockets (the descriptions are
    /// shared, so shutting a duplicate down shuts the socket down).
    socks: Arc<Vec<OwnedFd>>,
    /// The futex words the halves sleep on (the peer's wake words).
    words: Arc<Vec<WakeWord>>,
}

impl ShutdownHandle {
    pub(crate) fn new(
        flag: Arc<ShutFlag>,
        socks: &[BorrowedFd<'_>],
        words: Vec<WakeWord>,
    ) -> Result<Self> {
        let socks = socks
            .iter()
            .map(|s| s.try_clone_to_owned())
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::io("dup(socket)", e))?;
        Ok(ShutdownHandle {
            flag,
            socks: Arc::new(socks),
            words: Arc::new(words),
        })
    }

    /// Shuts the connection down (both directions of its sockets). Calling
    /// it again, or after the peer is gone, does nothing more.
    ///
    /// # Errors
    /// [`Error::Io`] if `shutdown(2)` fails for a reason other than the
    /// socket being already disconnected.
    pub fn shutdown(&self) -> Result<()> {
        // Relaxed: see `ShutFlag::is_set`.
        self.flag.0.store(true, Ordering::Relaxed);
        let mut res = Ok(());
        for s in self.socks.iter() {
            match rustix::net::shutdown(s.as_fd(), Shutdown::Both) {
                Ok(()) | Err(Errno::NOTCONN) => {}
                Err(e) => res = Err(Error::io("shutdown", e)),
            }
        }
        // After the sockets: a futex sleeper woken here sees the flag,
        // drains its socket and finds the hang-up.
        for w in self.words.iter() {
            w.wake_sleepers();
        }
        res
    }
}
