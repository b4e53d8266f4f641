//! The async receiving half.

use std::time::{Duration, Instant};

use shmsock_shm::ring::RecordHead;

use crate::api::message::Message;
use crate::core::recv::{Head, RecvCore};
use crate::core::{Deadline, DRAIN_BUDGET};
use crate::error::Result;
use crate::options::Credentials;
use crate::tokio::readiness::{spin_until, Readiness};
use crate::wait::SpinLearner;

/// The receiving half of an async connection. `Send`, not `Sync`.
#[derive(Debug)]
pub struct Receiver {
    /// The socket's readiness (a registered duplicate).
    ready: Readiness,
    core: RecvCore,
    spin: Duration,
    learner: SpinLearner,
}

impl Receiver {
    pub(crate) fn new(core: RecvCore, spin: Duration) -> Result<Self> {
        Ok(Receiver {
            ready: Readiness::new(std::os::fd::AsFd::as_fd(&core.sock))?,
            core,
            spin,
            learner: SpinLearner::default(),
        })
    }

    /// The socket, for a [`crate::ShutdownHandle`].
    pub(crate) fn sock(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.core.sock)
    }

    /// Credentials of the peer.
    pub fn peer_credentials(&self) -> Credentials {
        self.core.peer
    }

    /// Receives the next message: a short spin, then park and await the
    /// peer's wake-up. The message borrows the receiver (see [`Message`]).
    ///
    /// Cancellation safe: a message leaves the ring only in the poll that
    /// returns it, so dropping the future (a `tokio::select!` branch that
    /// lost, a timeout) loses none. Safe in a `select!` loop.
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) once the peer is
    /// gone and everything it sent was received (at once: its hang-up wakes
    /// us); [`Error::Protocol`](crate::Error::Protocol).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn demo() -> Result<(), shmsock_transport::Error> {
    /// let mut conn = shmsock_transport::tokio::Connection::connect("/tmp/s.sock").await?;
    /// let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    /// loop {
    ///     tokio::select! {
    ///         msg = conn.recv() => println!("{} bytes", msg?.len()),
    ///         _ = tick.tick() => println!("tick"),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Result<Message<'_>> {
        let head = self.next_head().await?;
        self.message(head)
    }

    /// Like [`Receiver::recv`], with the payload copied into a vector (moved
    /// without a copy for a reassembled large message).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub async fn recv_vec(&mut self) -> Result<Vec<u8>> {
        Ok(self.recv().await?.into_vec())
    }

    fn message(&mut self, head: Option<RecordHead>) -> Result<Message<'_>> {
        match head {
            Some(h) => {
                let (guard, sock) = self.core.read_inline(h)?;
                Ok(Message::ring(guard, sock))
            }
            None => Ok(Message::assembled(&mut self.core.assembled)),
        }
    }

    /// Waits for the next complete message: `Some` inline record, or
    /// `None` for one reassembled in `core.assembled`. Consumes fragments
    /// as they come (their progress stays in the core).
    async fn next_head(&mut self) -> Result<Option<RecordHead>> {
        let mut deadline = Deadline::new(None);
        match self.core.poll_head(&mut deadline)? {
            Head::Inline(h) => return Ok(Some(h)),
            Head::Whole => return Ok(None),
            Head::Empty => {}
        }
        let start = Instant::now();
        let window = self.learner.window(self.spin);
        let core = &mut self.core;
        // Caught spinning or not, `try_head` takes what is there (and
        // parks only while the ring is empty).
        let spun = spin_until(window, || core.has_data())?;
        let r = self.park_for_head(&mut deadline).await;
        if r.is_ok() {
            self.learner.record(
                start.elapsed(),
                self.spin,
                if spun { Duration::ZERO } else { window },
            );
        }
        r
    }

    /// Takes the next head, parking and awaiting the socket while the ring
    /// is empty.
    async fn park_for_head(&mut self, deadline: &mut Deadline) -> Result<Option<RecordHead>> {
        loop {
            // Drains the socket, notes a hang-up (`Disconnected` once the
            // ring is empty), parks (SYNC POINT `park-dekker`, reader side)
            // and re-checks; stays parked only if still empty.
            match self.core.try_head(deadline)? {
                Head::Inline(h) => return Ok(Some(h)),
                Head::Whole => return Ok(None),
                Head::Empty => {}
            }
            let mut guard = self.ready.readable().await?;
            let drained = self.core.drain();
            self.core.cons.unpark();
            if drained? < DRAIN_BUDGET {
                guard.clear_ready();
            }
        }
    }
}
