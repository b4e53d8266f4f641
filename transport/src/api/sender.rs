//! The blocking sending half: [`Sender`], its zero-copy [`WriteGrant`] and
//! its batches ([`Batch`], [`BatchGrant`]). Thin wrappers: every step is a
//! call into [`SendCore`]; where the ring is full they wait through
//! [`wait::wait_until`], the one wait loop.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use std::sync::Arc;

use shmsock_shm::ring::{self, Producer, WakeKind, WakeWord};

use crate::api::mid_message;
use crate::api::writer::MessageWriter;
use crate::core::notify;
use crate::core::send::SendCore;
use crate::core::{deadline, Deadline};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::error_map::sock_err;
use crate::fdpass::Recv;
use crate::options::{Credentials, WaitStrategy};
use crate::shutdown::ShutFlag;
use crate::wait::{self, SpinLearner, Waiter};
use crate::wire::TAG_INLINE;

/// The sending half of a connection. `Send`, not `Sync`.
pub struct Sender {
    pub(crate) core: SendCore,
    wait: WaitStrategy,
    timeout: Option<Duration>,
    /// How often waits for space were caught spinning (sizes `Adaptive`).
    learner: SpinLearner,
    /// The peer's `space_wake` word and our shutdown flag, when a blocked
    /// call sleeps on a futex (`None`: on the socket).
    futex: Option<(WakeWord, Arc<ShutFlag>)>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("peer", &self.core.peer)
            .field("ring", &self.core.prod)
            .finish()
    }
}

impl Sender {
    pub(crate) fn new(core: SendCore, wait: WaitStrategy, timeout: Option<Duration>) -> Self {
        Sender {
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
        self.futex = Some((self.core.prod.wake_word(), shut));
    }

    /// The core and the wait strategy, for another waiting policy (the
    /// async wrappers).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_core(self) -> (SendCore, WaitStrategy) {
        (self.core, self.wait)
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

    /// Credentials of the peer.
    pub fn peer_credentials(&self) -> Credentials {
        self.core.peer
    }

    /// The timeout of calls without an explicit one.
    pub(crate) fn default_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Makes room for a record of `len` bytes before `deadline`: checks
    /// the peer, writes an abort record that is owed first, waits for
    /// space.
    /// `mid`: the record continues a fragmented message already started
    /// (see [`Sender::wait_space_mid`]).
    pub(crate) fn space_for(
        &mut self,
        len: usize,
        deadline: Option<Instant>,
        mid: bool,
    ) -> Result<()> {
        self.core.check_peer()?;
        if self.core.abort_pending {
            self.write_abort(deadline)?;
        }
        if mid {
            if !self.core.can_reserve(len)? {
                self.wait_space_mid(len, deadline)?;
            }
            return Ok(());
        }
        self.ensure_space(len, deadline)
    }

    /// Starts a message of `len` bytes (any size up to the peer's limit)
    /// to be written in place, chunk by chunk: zero copies whatever the
    /// size, without branching on [`Sender::max_inline`]. A message that
    /// fits one record is one chunk; a larger one streams through the ring
    /// in fragments that the receiver consumes while the next is written.
    ///
    /// # Examples
    /// ```no_run
    /// # fn demo(tx: &mut shmsock_transport::Sender, file: &mut std::fs::File) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::io::Read;
    /// let len = file.metadata()?.len() as usize;
    /// let mut w = tx.write_message(len)?;
    /// while let Some(mut chunk) = w.next_chunk()? {
    ///     file.read_exact(&mut chunk)?; // straight into shared memory
    ///     chunk.commit()?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] above the peer's limit,
    /// [`Error::Disconnected`].
    pub fn write_message(&mut self, len: usize) -> Result<MessageWriter<'_>> {
        self.core.check_len(len)?;
        self.core.check_peer()?;
        Ok(MessageWriter::new(self, len))
    }

    /// Waits until a record of `len` bytes fits, per the wait strategy.
    fn wait_space(&mut self, len: usize, deadline: Option<Instant>) -> Result<()> {
        self.wait_until(deadline, |p| p.can_reserve(len))
    }

    /// [`Sender::wait_space`] in the middle of a fragmented message, whose
    /// receiver is copying our fragments out right now: a `Block` or
    /// `Adaptive` sender first spins for the space, a fragment's copy time
    /// at most
    /// ([`mid_message::spin_window`]), before it parks.
    pub(crate) fn wait_space_mid(&mut self, len: usize, deadline: Option<Instant>) -> Result<()> {
        if mid_message::spins_mid_message(self.wait) {
            let window =
                mid_message::within(mid_message::spin_window(self.core.fragment_len()), deadline);
            let pid = self.core.peer.pid;
            let prod = &mut self.core.prod;
            let caught = mid_message::spin_until(window, || {
                prod.can_reserve(len)
                    .map_err(|e| crate::error_map::send_ring_err(pid, e))
            })?;
            if caught {
                return Ok(());
            }
        }
        self.wait_space(len, deadline)
    }

    /// Waits until `ready` holds, per the wait strategy ([`wait::wait_until`]).
    /// `ready` may only depend on the consumer's progress, which is what
    /// wakes us.
    fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Producer) -> shmsock_shm::Result<bool>,
    ) -> Result<()> {
        wait::wait_until(self, deadline, |s| {
            let r = ready(&mut s.core.prod);
            r.map_err(|e| s.core.ring_err(e))
        })
    }

    /// Waits (until `deadline`) for the space a record of `len` bytes
    /// needs, unless it fits already.
    #[inline]
    fn ensure_space(&mut self, len: usize, deadline: Option<Instant>) -> Result<()> {
        if !self.core.can_reserve(len)? {
            self.wait_space(len, deadline)?;
        }
        Ok(())
    }

    /// Sends `data`: inline through the ring if it fits in one record, else
    /// streamed through the ring in fragments that the receiver copies out
    /// as they arrive. Waits for space per the wait strategy and the default
    /// timeout.
    ///
    /// # Errors
    /// [`Error::Disconnected`], [`Error::Timeout`],
    /// [`Error::MessageTooLarge`] (above the peer's limit),
    /// [`Error::Protocol`], [`Error::Io`].
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.send_within(data, self.timeout)
    }

    /// [`Sender::send`] with an explicit timeout. The timeout bounds the
    /// time spent waiting (for ring space or socket room); a send that does
    /// not have to wait never reads the clock.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send_timeout(&mut self, data: &[u8], timeout: Duration) -> Result<()> {
        self.send_within(data, Some(timeout))
    }

    /// Sends with a timeout that starts counting only if the call has to wait
    /// (no clock read on the fast path).
    #[inline]
    fn send_within(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.core.check_len(data.len())?;
        if self.core.fragments(data.len()) {
            return self.send_large(data, timeout);
        }
        self.core.check_peer()?;
        let mut deadline = Deadline::new(timeout);
        if self.core.abort_pending {
            self.write_abort(deadline.get())?;
        }
        loop {
            if let Some(mut g) = self.core.try_take(data.len(), TAG_INLINE)? {
                g.fill_from(data);
                let wake = g.commit();
                return self.core.wake_reader(wake);
            }
            // Space found by the wait cannot vanish (the producer's copy of
            // the consumer cursor only moves forward): the next try fits.
            self.wait_space(data.len(), deadline.get())?;
        }
    }

    /// Sends the messages of `msgs` in order, publishing them to the peer
    /// with one cursor store and at most one wake-up: for a stream of small
    /// messages this costs a fraction of one [`Sender::send`] each.
    ///
    /// Messages that fit one ring record ([`Sender::max_inline`]) are
    /// written back to back and published together. When the ring is full,
    /// what is written so far is published first (so the receiver can make
    /// progress), then the call waits for space per the wait strategy and
    /// the default timeout, which bounds all the waiting the call does. A
    /// larger message goes as [`Sender::send`] sends it, after what is
    /// written before it is published.
    ///
    /// Returns how many messages were sent, from the first: `msgs.len()`,
    /// or fewer if an error (a timeout, the peer's departure) came after at
    /// least one was sent, as [`std::io::Write::write`] does. Every message
    /// counted was published; the rest were not sent (a larger message cut
    /// short is dropped by the receiver). A lasting error (the peer left, a
    /// protocol violation) is returned by the next call.
    ///
    /// # Examples
    /// ```no_run
    /// # fn main() -> Result<(), shmsock_transport::Error> {
    /// let mut conn = shmsock_transport::Connection::connect("/tmp/s.sock")?;
    /// let ticks: Vec<[u8; 64]> = (0..32u8).map(|i| [i; 64]).collect();
    /// let batch: Vec<&[u8]> = ticks.iter().map(|t| &t[..]).collect();
    /// let mut sent = 0;
    /// while sent < batch.len() {
    ///     sent += conn.send_batch(&batch[sent..])?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Sender::send`], when nothing was sent. [`Error::MessageTooLarge`]
    /// if any message is above the peer's limit (then nothing is sent).
    pub fn send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        self.send_batch_within(msgs, self.timeout)
    }

    /// [`Sender::send_batch`] with an explicit timeout, which bounds the
    /// time the whole call spends waiting.
    ///
    /// # Errors
    /// As [`Sender::send_batch`].
    pub fn send_batch_timeout(&mut self, msgs: &[&[u8]], timeout: Duration) -> Result<usize> {
        self.send_batch_within(msgs, Some(timeout))
    }

    fn send_batch_within(&mut self, msgs: &[&[u8]], timeout: Option<Duration>) -> Result<usize> {
        for m in msgs {
            self.core.check_len(m.len())?;
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        self.core
            .check_peer_after(u32::try_from(msgs.len()).unwrap_or(u32::MAX))?;
        let mut deadline = Deadline::new(timeout);
        let mut done = 0;
        let written = self.write_batch(msgs, &mut deadline, &mut done);
        // Every record written is complete: publish them whatever happened.
        let woken = self.core.publish_staged();
        match written.and(woken) {
            Ok(()) => Ok(done),
            Err(e) if done == 0 => Err(e),
            Err(_) => Ok(done),
        }
    }

    /// Starts a batch: messages sent or reserved through it are staged and
    /// published together, with one cursor store and at most one wake-up,
    /// by [`Batch::publish`] or when the batch is dropped. The zero-copy
    /// counterpart of [`Sender::send_batch`]. A wait for space publishes
    /// what is staged first; the default timeout bounds all the waiting the
    /// batch does.
    ///
    /// # Examples
    /// ```no_run
    /// # fn main() -> Result<(), shmsock_transport::Error> {
    /// let mut conn = shmsock_transport::Connection::connect("/tmp/s.sock")?;
    /// let mut batch = conn.batch();
    /// for i in 0..32u8 {
    ///     let mut g = batch.reserve(64)?;
    ///     g.fill_from(&[i; 64]);
    ///     g.commit();
    /// }
    /// batch.send(b"and a copied one")?;
    /// assert_eq!(batch.publish()?, 33);
    /// # Ok(()) }
    /// ```
    pub fn batch(&mut self) -> Batch<'_> {
        Batch {
            deadline: Deadline::new(self.timeout),
            tx: self,
            count: 0,
            published: false,
        }
    }

    /// Writes `msgs`, staging inline ones; counts in `done` the messages
    /// written (staged or published).
    fn write_batch(
        &mut self,
        msgs: &[&[u8]],
        deadline: &mut Deadline,
        done: &mut usize,
    ) -> Result<()> {
        if self.core.abort_pending {
            self.write_abort(deadline.get())?;
        }
        for m in msgs {
            if self.core.fragments(m.len()) {
                self.core.publish_staged()?;
                let left = deadline.remaining();
                self.send_large(m, left)?;
            } else {
                loop {
                    if let Some(mut g) = self.core.try_take(m.len(), TAG_INLINE)? {
                        g.fill_from(m);
                        g.commit_deferred();
                        break;
                    }
                    // Full: let the receiver at what is staged, then wait.
                    self.core.publish_staged()?;
                    self.wait_space(m.len(), deadline.get())?;
                }
            }
            *done += 1;
        }
        Ok(())
    }

    /// Tries to send without waiting: `Ok(false)` if the ring is full (the
    /// peer is then asked to wake us: our socket becomes readable when space
    /// frees up). Large messages never return `Ok(false)`.
    ///
    /// # Errors
    /// As [`Sender::send`] (never [`Error::Timeout`]).
    pub fn try_send(&mut self, data: &[u8]) -> Result<bool> {
        self.core.check_len(data.len())?;
        // Our socket may have woken an event loop: consume the wake-ups so
        // a level-triggered poller does not report them again.
        self.core.disarm()?;
        if self.core.fragments(data.len()) {
            return self.send_large(data, self.timeout).map(|()| true);
        }
        self.core.check_peer()?;
        // The abort record owed by a timed-out large send goes first; each
        // record is written only once it fits, so nothing here waits.
        if self.core.abort_pending {
            if !self.core.try_space(0)? {
                return Ok(false);
            }
            self.write_abort(None)?;
        }
        if !self.core.try_space(data.len())? {
            return Ok(false);
        }
        self.send_within(data, None).map(|()| true)
    }

    /// Reserves `len` bytes in the ring for zero-copy writing; write the
    /// message into the grant and [`commit`](WriteGrant::commit) it.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `len` exceeds [`Sender::max_inline`]
    /// (large messages cannot be reserved), and as [`Sender::send`].
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.reserve_within(len, self.timeout)
    }

    /// [`Sender::reserve`] with an explicit timeout.
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.reserve_within(len, Some(timeout))
    }

    fn reserve_within(&mut self, len: usize, timeout: Option<Duration>) -> Result<WriteGrant<'_>> {
        self.core.check_reservable(len)?;
        self.core.check_peer()?;
        let deadline = deadline(timeout);
        if self.core.abort_pending {
            self.write_abort(deadline)?;
        }
        self.ensure_space(len, deadline)?;
        WriteGrant::new(&mut self.core, len)
    }

    /// Tells the peer to drop the fragmented message we cut short, waiting
    /// for the space until `deadline`.
    fn write_abort(&mut self, deadline: Option<Instant>) -> Result<()> {
        while !self.core.try_write_abort()? {
            self.wait_space(0, deadline)?;
        }
        Ok(())
    }

    /// Streams a message too big for one record through the ring as
    /// fragments (see [`crate::core::frag`]). The receiver copies each
    /// fragment out and releases it while we write the next. If the
    /// deadline passes after the first fragment was published, the message
    /// is abandoned: the next record we write tells the peer to drop it.
    fn send_large(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        // Fragments are copies of at least a few KiB: a clock read is noise.
        let deadline = deadline(timeout);
        self.core.check_peer()?;
        if self.core.abort_pending {
            self.write_abort(deadline)?;
        }
        let mut ls = self.core.large_start(data.len());
        loop {
            let step = match self.core.large_step(&mut ls, data) {
                Ok(None) => return Ok(()),
                Ok(Some(len)) if ls.started => self.wait_space_mid(len, deadline),
                Ok(Some(len)) => self.wait_space(len, deadline),
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                self.core.large_abandon(&ls);
                return Err(e);
            }
        }
    }
}

impl AsFd for Sender {
    /// The socket on which the peer's space wake-ups (and its hang-up)
    /// arrive: readable after [`Sender::try_send`] returned `Ok(false)` and
    /// space was freed, or when the peer is gone.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.sock.as_fd()
    }
}

impl Waiter for Sender {
    fn strategy(&self) -> WaitStrategy {
        self.wait
    }
    fn learner(&mut self) -> &mut SpinLearner {
        &mut self.learner
    }
    fn gone(&self) -> bool {
        self.core.peer_gone
    }
    fn park(&mut self, kind: WakeKind) -> u32 {
        // SYNC POINT `park-dekker`, writer side, and `wake-word`
        // (docs/design.md).
        self.core.prod.park(kind)
    }
    fn futex(&self) -> Option<(&WakeWord, &ShutFlag)> {
        self.futex.as_ref().map(|(w, s)| (w, &**s))
    }
    fn unpark(&mut self) {
        self.core.prod.unpark();
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

/// Messages published together: see [`Sender::batch`]. Dropping the batch
/// publishes what it staged (waking the reader on a best-effort basis);
/// [`Batch::publish`] does the same and reports errors.
pub struct Batch<'a> {
    tx: &'a mut Sender,
    deadline: Deadline,
    /// Messages sent or staged through this batch.
    count: usize,
    published: bool,
}

impl Batch<'_> {
    /// Adds a copy of `data` to the batch. A message larger than one ring
    /// record is sent at once, as [`Sender::send`] sends it, after what is
    /// staged is published.
    ///
    /// # Errors
    /// As [`Sender::send`]; what was staged before stays staged.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.tx.core.check_len(data.len())?;
        self.tx.core.check_peer()?;
        let mut done = 0;
        self.tx
            .write_batch(&[data], &mut self.deadline, &mut done)?;
        self.count += done;
        Ok(())
    }

    /// Reserves `len` bytes in the ring for a zero-copy message of the
    /// batch; [`BatchGrant::commit`] stages it.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `len` exceeds [`Sender::max_inline`],
    /// and as [`Sender::send`].
    pub fn reserve(&mut self, len: usize) -> Result<BatchGrant<'_>> {
        let tx = &mut *self.tx;
        tx.core.check_reservable(len)?;
        tx.core.check_peer()?;
        if tx.core.abort_pending {
            tx.write_abort(self.deadline.get())?;
        }
        if !tx.core.can_reserve(len)? {
            tx.core.publish_staged()?;
            tx.wait_space(len, self.deadline.get())?;
        }
        let grant = tx.core.take_fitting(len, TAG_INLINE)?;
        Ok(BatchGrant {
            grant,
            count: &mut self.count,
        })
    }

    /// Messages sent or staged through this batch so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was added to the batch.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Publishes every staged message with one cursor store, waking the
    /// reader if it is parked. Returns how many messages the batch sent.
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the wake-up for a parked reader cannot be
    /// sent because it is gone.
    pub fn publish(mut self) -> Result<usize> {
        self.published = true;
        self.tx.core.publish_staged()?;
        Ok(self.count)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a dead peer shows on the next call.
            let _ = self.tx.core.publish_staged();
        }
    }
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("len", &self.count).finish()
    }
}

/// A zero-copy message being written into a [`Batch`]. Deref to `[u8]` to
/// write; [`commit`](BatchGrant::commit) to stage it; drop to abandon.
pub struct BatchGrant<'a> {
    grant: ring::WriteGrant<'a>,
    count: &'a mut usize,
}

impl std::fmt::Debug for BatchGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchGrant")
            .field("len", &self.grant.len())
            .finish()
    }
}

impl BatchGrant<'_> {
    /// Stages the message: the batch publishes it.
    pub fn commit(self) {
        self.grant.commit_deferred();
        *self.count += 1;
    }

    /// Shrinks the message to its first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Copies `src` into the start of the message without forming a
    /// reference to shared memory.
    pub fn fill_from(&mut self, src: &[u8]) {
        self.grant.fill_from(src);
    }
}

impl std::ops::Deref for BatchGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.grant
    }
}

impl std::ops::DerefMut for BatchGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.grant
    }
}

/// A zero-copy message being written into the ring. Deref to `[u8]` to
/// write; [`commit`](WriteGrant::commit) to send; drop to abandon (nothing
/// is published).
pub struct WriteGrant<'a> {
    grant: ring::WriteGrant<'a>,
    sock: BorrowedFd<'a>,
    peer_gone: &'a mut bool,
}

impl<'a> WriteGrant<'a> {
    /// Reserves `len` bytes in `core`'s ring, which
    /// [`SendCore::can_reserve`] said fit. Shared by the blocking and the
    /// async sender.
    #[inline]
    pub(crate) fn new(core: &'a mut SendCore, len: usize) -> Result<Self> {
        let (grant, sock, peer_gone) = core.take_fitting_parts(len, TAG_INLINE)?;
        Ok(WriteGrant {
            grant,
            sock,
            peer_gone,
        })
    }
}

impl std::fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGrant")
            .field("len", &self.grant.len())
            .finish()
    }
}

impl WriteGrant<'_> {
    /// Sends the message (`truncate` first to send fewer bytes).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the wake-up for a parked peer cannot be
    /// sent because it is gone.
    #[inline]
    pub fn commit(self) -> Result<()> {
        let wake = self.grant.commit();
        // Nothing owed (a busy stream): no redeeming call per message.
        if !wake.is_owed() {
            return Ok(());
        }
        if let Err(e) = notify::wake_data(wake, self.sock) {
            *self.peer_gone = true;
            return Err(sock_err("sendmsg(wake)", e));
        }
        Ok(())
    }

    /// Shrinks the message to its first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Copies `src` into the start of the message without forming a
    /// reference to shared memory.
    pub fn fill_from(&mut self, src: &[u8]) {
        self.grant.fill_from(src);
    }
}

impl std::ops::Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.grant
    }
}

impl std::ops::DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.grant
    }
}
