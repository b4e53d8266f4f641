//! The blocking receiving half: [`Receiver`]. A thin wrapper: every step
//! is a call into [`RecvCore`]; where the ring is empty it waits through
//! [`wait::wait_until`], the one wait loop.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmsock_shm::ring::{WakeKind, WakeWord};

use crate::api::message::Message;
use crate::api::mid_message;
use crate::core::recv::{Head, Ready, RecvCore};
use crate::core::Deadline;
use crate::error::Result;
use crate::fdpass::Recv;
use crate::options::{Credentials, WaitStrategy};
use crate::shutdown::ShutFlag;
use crate::wait::{self, SpinLearner, Waiter};

/// The receiving half of a connection. `Send`, not `Sync`.
pub struct Receiver {
    pub(crate) core: RecvCore,
    wait: WaitStrategy,
    timeout: Option<Duration>,
    /// How often waits for data were caught spinning (sizes `Adaptive`).
    learner: SpinLearner,
    /// The peer's `data_wake` word and our shutdown flag, when a blocked
    /// call sleeps on a futex (`None`: on the socket).
    futex: Option<(WakeWord, Arc<ShutFlag>)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("peer", &self.core.peer)
            .field("ring", &self.core.cons)
            .finish()
    }
}

impl Receiver {
    pub(crate) fn new(core: RecvCore, wait: WaitStrategy, timeout: Option<Duration>) -> Self {
        Receiver {
            core,
            wait,
            timeout,
            learner: SpinLearner::default(),
            futex: None,
        }
    }

    /// Makes blocked calls sleep on a futex (the peer's wake word), with
    /// `shut` to tell a shutdown from a wake-up.
    pub(crate) fn use_futex(&mut self, shut: Arc<ShutFlag>) {
        self.futex = Some((self.core.cons.wake_word(), shut));
    }

    /// The core, for another waiting policy (the async wrappers).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_core(self) -> RecvCore {
        self.core
    }

    /// Credentials of the peer.
    pub fn peer_credentials(&self) -> Credentials {
        self.core.peer
    }

    /// The timeout of calls without an explicit one.
    pub(crate) fn default_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Waits until the ring has a record, per the wait strategy
    /// ([`wait::wait_until`]).
    pub(crate) fn wait_data(&mut self, deadline: Option<Instant>) -> Result<()> {
        wait::wait_until(self, deadline, |r| r.core.has_data())
    }

    /// [`Receiver::wait_data`] for the next fragment of a message in
    /// progress, which its sender is writing right now: a `Block` or
    /// `Adaptive` receiver first spins for it, as long as the last fragment
    /// takes to copy
    /// ([`mid_message::spin_window`]), before it parks. Sized by what the
    /// peer sent, not by what it announces: a peer trickling small
    /// fragments earns short spins only.
    pub(crate) fn wait_fragment(&mut self, deadline: Option<Instant>) -> Result<()> {
        if mid_message::spins_mid_message(self.wait) {
            let window = mid_message::within(
                mid_message::spin_window(self.core.last_fragment()),
                deadline,
            );
            let core = &mut self.core;
            if mid_message::spin_until(window, || core.has_data())? {
                return Ok(());
            }
        }
        self.wait_data(deadline)
    }

    /// Waits for data after [`RecvCore::poll_head`] found none: for the
    /// next fragment if a message is being reassembled.
    #[inline]
    fn wait_more(&mut self, deadline: Option<Instant>) -> Result<()> {
        if self.core.assembling() {
            self.wait_fragment(deadline)
        } else {
            self.wait_data(deadline)
        }
    }

    /// Receives the next message, waiting per the wait strategy and the
    /// default timeout. The message borrows the receiver (see
    /// [`Message`] for why).
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) once the peer is
    /// gone and everything it sent was received;
    /// [`Error::Timeout`](crate::Error::Timeout);
    /// [`Error::Protocol`](crate::Error::Protocol).
    pub fn recv(&mut self) -> Result<Message<'_>> {
        self.recv_within(self.timeout)
    }

    /// [`Receiver::recv`] with an explicit timeout (`Duration::MAX` waits
    /// forever). The timeout bounds the whole call, including the time spent
    /// reassembling a message larger than one ring record.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        self.recv_within(Some(timeout))
    }

    /// Receives the next message into `buf` (see [`Message::move_into`]):
    /// no allocation per message once `buf` has grown, and no copy at all
    /// for a message that arrived in fragments. Returns its length.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        // What `recv()?.move_into(buf)` does, without building and dropping
        // a `Message` per inline message (the per-record path), and without
        // a `Head` for an inline message that is there (or that the wait
        // found: `has_data` keeps it validated for the look after).
        let mut deadline = Deadline::new(self.timeout);
        loop {
            match self.core.take_ready_inline_into(buf)? {
                Ready::Taken(n) => return Ok(n),
                // Nothing in progress: a wait for data (`wait_more`'s
                // choice then).
                Ready::Empty => {
                    self.wait_data(deadline.get())?;
                    continue;
                }
                Ready::Other => {}
            }
            match self.core.poll_head(&mut deadline)? {
                Head::Inline(h) => return self.core.take_inline_into(h, buf),
                Head::Whole => return Ok(self.message(None)?.move_into(buf)),
                Head::Empty => self.wait_more(deadline.get())?,
            }
        }
    }

    #[inline]
    fn recv_within(&mut self, timeout: Option<Duration>) -> Result<Message<'_>> {
        let mut deadline = Deadline::new(timeout);
        let head = loop {
            match self.core.poll_head(&mut deadline)? {
                Head::Inline(h) => break Some(h),
                Head::Whole => break None,
                Head::Empty => self.wait_more(deadline.get())?,
            }
        };
        self.message(head)
    }

    /// The message at the head: the inline record `head`, or (`None`) the
    /// one just reassembled.
    #[inline]
    fn message(&mut self, head: Option<shmsock_shm::ring::RecordHead>) -> Result<Message<'_>> {
        match head {
            Some(h) => {
                let (guard, sock) = self.core.read_inline(h)?;
                Ok(Message::ring(guard, sock))
            }
            None => Ok(Message::assembled(&mut self.core.assembled)),
        }
    }

    /// Receives a message if one is ready, never blocking. When it returns
    /// `Ok(None)` it has armed the wake-up: the socket ([`AsFd`]) becomes
    /// readable as soon as the peer commits, so an event loop can sleep on
    /// it (see `docs/design.md`, "Readiness"). Fragments of a message larger
    /// than one record are consumed as they arrive; the message is returned
    /// by the call that sees its last fragment.
    ///
    /// # Errors
    /// As [`Receiver::recv`] (never [`Error::Timeout`](crate::Error::Timeout)).
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        match self.core.try_head(&mut Deadline::new(None))? {
            Head::Inline(h) => self.message(Some(h)).map(Some),
            Head::Whole => self.message(None).map(Some),
            Head::Empty => Ok(None),
        }
    }

    /// Receives up to `max` messages with one release of their ring space
    /// (one cursor store, at most one wake-up for the sender), calling `f`
    /// on each in order. Waits per the wait strategy and the default
    /// timeout until at least one message is ready, then takes those that
    /// are ready without waiting again. Returns how many `f` was given
    /// (0 only if `max` is 0).
    ///
    /// The sender gets the batch's space back only when the call returns:
    /// keep `max` modest (tens to hundreds) so that it need not wait long.
    ///
    /// `f` gets a copy: each inline message is copied out of the ring into
    /// a buffer the receiver keeps, which the peer cannot write. A message
    /// larger than one ring record ends the batch; the next call (or
    /// [`Receiver::recv`]) returns it, alone, from the buffer it was
    /// reassembled in.
    ///
    /// # Examples
    /// ```no_run
    /// # fn main() -> Result<(), shmsock_transport::Error> {
    /// let mut conn = shmsock_transport::Connection::connect("/tmp/s.sock")?;
    /// let mut total = 0u64;
    /// let n = conn.recv_batch(32, |msg| total += msg.len() as u64)?;
    /// println!("{n} messages, {total} bytes");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Receiver::recv`]. An error met after the first message ends the
    /// batch instead; the next call returns it if it lasts.
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_within(max, Some(self.timeout), f)
    }

    /// [`Receiver::recv_batch`] with an explicit timeout (`Duration::MAX`
    /// waits forever) for the first message.
    ///
    /// # Errors
    /// As [`Receiver::recv_batch`].
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        self.recv_batch_within(max, Some(Some(timeout)), f)
    }

    /// [`Receiver::recv_batch`] without waiting: `Ok(0)` if nothing is
    /// ready, having armed the wake-up as [`Receiver::try_recv`] does. An
    /// event loop calls it until it returns `Ok(0)`, then sleeps on the fd.
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_batch_within(max, None, f)
    }

    /// `wait`: `Some(timeout)` to wait for the first message, `None` not to.
    fn recv_batch_within(
        &mut self,
        max: usize,
        wait: Option<Option<Duration>>,
        f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let first = match wait {
            Some(timeout) => {
                let mut deadline = Deadline::new(timeout);
                loop {
                    match self.core.poll_head(&mut deadline)? {
                        Head::Empty => self.wait_more(deadline.get())?,
                        h => break h,
                    }
                }
            }
            None => self.core.try_head(&mut Deadline::new(None))?,
        };
        self.core.take_batch(first, max, f)
    }
}

impl AsFd for Receiver {
    /// The socket on which the peer's data wake-ups, large-message fds and
    /// hang-up arrive. See [`Receiver::try_recv`] for the readiness rule.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.sock.as_fd()
    }
}

impl Waiter for Receiver {
    fn strategy(&self) -> WaitStrategy {
        self.wait
    }
    fn learner(&mut self) -> &mut SpinLearner {
        &mut self.learner
    }
    fn gone(&self) -> bool {
        // Everything committed before the hang-up was in the ring already
        // (commit precedes close), and the caller found it empty.
        self.core.peer_eof
    }
    fn park(&mut self, kind: WakeKind) -> u32 {
        // SYNC POINT `park-dekker`, reader side, and `wake-word`
        // (docs/design.md).
        self.core.cons.park(kind)
    }
    fn futex(&self) -> Option<(&WakeWord, &ShutFlag)> {
        self.futex.as_ref().map(|(w, s)| (w, &**s))
    }
    fn unpark(&mut self) {
        self.core.cons.unpark();
    }
    fn drain(&mut self) -> Result<()> {
        self.core.drain().map(drop)
    }
    fn sock(&self) -> BorrowedFd<'_> {
        self.core.sock.as_fd()
    }
    fn handle(&mut self, r: Recv) -> Result<bool> {
        self.core.handle(r)
    }
}
