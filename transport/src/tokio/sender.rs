//! The async sending half.

use std::time::{Duration, Instant};

use crate::api::sender::WriteGrant;
use crate::core::send::SendCore;
use crate::error::{Error, Result};
use crate::options::Credentials;
use crate::tokio::readiness::{spin_until, Readiness};
use crate::wait::SpinLearner;
use crate::wire::TAG_INLINE;

/// The sending half of an async connection. `Send`, not `Sync`.
#[derive(Debug)]
pub struct Sender {
    /// The socket's readiness (a registered duplicate).
    ready: Readiness,
    core: SendCore,
    spin: Duration,
    learner: SpinLearner,
}

impl Sender {
    pub(crate) fn new(core: SendCore, spin: Duration) -> Result<Self> {
        Ok(Sender {
            ready: Readiness::new(std::os::fd::AsFd::as_fd(&core.sock))?,
            core,
            spin,
            learner: SpinLearner::default(),
        })
    }

    /// Largest message that travels inline through the ring (one record);
    /// larger ones stream through it in fragments.
    pub fn max_inline(&self) -> usize {
        self.core.max_inline()
    }

    /// Largest message the peer accepts.
    pub fn peer_max_message(&self) -> u64 {
        self.core.peer_max_message()
    }

    /// The socket, for a [`crate::ShutdownHandle`].
    pub(crate) fn sock(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.core.sock)
    }

    /// Credentials of the peer.
    pub fn peer_credentials(&self) -> Credentials {
        self.core.peer
    }

    /// Sends `data`: inline through the ring if it fits one record, else
    /// streamed in fragments. Waits for space (spin, then park and await the
    /// peer's wake-up).
    ///
    /// Cancellation safe: dropped before it returns, it has published
    /// nothing of `data` (a large message cut short between fragments is
    /// dropped by the peer; see the [module docs](crate::tokio)).
    ///
    /// # Errors
    /// [`Error::Disconnected`] (at once when the peer is gone),
    /// [`Error::MessageTooLarge`] (above the peer's limit),
    /// [`Error::Protocol`], [`Error::Io`].
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo() -> Result<(), shmsock_transport::Error> {
    /// let mut conn = shmsock_transport::tokio::Connection::connect("/tmp/s.sock").await?;
    /// conn.send(b"hello").await?;
    /// // With a deadline:
    /// let t = std::time::Duration::from_secs(1);
    /// if tokio::time::timeout(t, conn.send(b"more")).await.is_err() {
    ///     // Not sent (the ring stayed full for a second).
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.core.check_len(data.len())?;
        if self.core.fragments(data.len()) {
            return self.send_large(data).await;
        }
        self.core.check_peer()?;
        self.flush_abort().await?;
        if !self.core.can_reserve(data.len())? {
            self.wait_space(data.len()).await?;
        }
        let mut g = self.core.take_fitting(data.len(), TAG_INLINE)?;
        g.fill_from(data);
        let wake = g.commit();
        self.core.wake_reader(wake)?;
        Ok(())
    }

    /// Reserves `len` bytes of ring space for a zero-copy message; write it
    /// into the grant and [`commit`](WriteGrant::commit) it (dropping the
    /// grant publishes nothing).
    ///
    /// Cancellation safe: a dropped `reserve` reserved nothing.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `len` exceeds [`Sender::max_inline`],
    /// and as [`Sender::send`].
    pub async fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.core.check_reservable(len)?;
        self.core.check_peer()?;
        self.flush_abort().await?;
        if !self.core.can_reserve(len)? {
            self.wait_space(len).await?;
        }
        WriteGrant::new(&mut self.core, len)
    }

    /// Writes the abort record a cut-short large message owes, waiting for
    /// its space.
    async fn flush_abort(&mut self) -> Result<()> {
        while !self.core.try_write_abort()? {
            self.wait_space(0).await?;
        }
        Ok(())
    }

    /// Streams a message larger than one record as fragments, waiting for
    /// space between them.
    async fn send_large(&mut self, data: &[u8]) -> Result<()> {
        self.core.check_peer()?;
        self.flush_abort().await?;
        let mut ls = self.core.large_start(data.len());
        loop {
            let need = match self.core.large_step(&mut ls, data) {
                Ok(None) => return Ok(()),
                Ok(Some(len)) => len,
                Err(e) => {
                    self.core.large_abandon(&ls);
                    return Err(e);
                }
            };
            // Should this future be dropped while it waits, the message is
            // cut short: the next send must write the abort record first.
            self.core.abort_pending = ls.started;
            let waited = self.wait_space(need).await;
            self.core.abort_pending = false;
            if let Err(e) = waited {
                self.core.large_abandon(&ls);
                return Err(e);
            }
        }
    }

    /// Waits until a record of `len` bytes fits: a short spin, then park
    /// (mark, fence, re-check) and await the socket.
    async fn wait_space(&mut self, len: usize) -> Result<()> {
        let start = Instant::now();
        let window = self.learner.window(self.spin);
        let core = &mut self.core;
        let spun = spin_until(window, || core.can_reserve(len))?;
        let r = if spun {
            Ok(())
        } else {
            self.park_for_space(len).await
        };
        if r.is_ok() {
            self.learner.record(
                start.elapsed(),
                self.spin,
                if spun { Duration::ZERO } else { window },
            );
        }
        r
    }

    /// Parks (mark, fence, re-check) and awaits the socket until a record
    /// of `len` bytes fits.
    async fn park_for_space(&mut self, len: usize) -> Result<()> {
        loop {
            if self.core.peer_gone {
                return Err(Error::Disconnected);
            }
            // Parks (SYNC POINT `park-dekker`, writer side) and re-checks;
            // `true` means it fits and nothing stays parked.
            if self.core.try_space(len)? {
                return Ok(());
            }
            let mut guard = self.ready.readable().await?;
            let drained = self.core.drain();
            self.core.prod.unpark();
            self.core.armed = false;
            if drained? {
                guard.clear_ready();
            }
        }
    }
}
