//! Connections: a [`Sender`] (our ring + the socket carrying our wake-ups
//! and large-message fds) and a [`Receiver`] (the peer's ring + the socket
//! carrying its). See `docs/design.md` for the notification protocol.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use shmsock_shm::ring::{self, Consumer, Producer, RecordHead};

use crate::error::{Error, ProtocolViolation, Result};
use crate::fdpass::{recv_control, send_control, Recv};
use crate::frag::{fragment_len, Assembly};
use crate::options::{Credentials, WaitStrategy};
use crate::shutdown::{ShutFlag, ShutdownHandle};
use crate::wait::{self, past, SpinLearner, Waiter};
use crate::wire::{Control, FRAG_HEADER, TAG_FRAG, TAG_FRAG_ABORT, TAG_FRAG_START, TAG_INLINE};

/// Control messages handled per drain, so a flooding peer cannot keep us
/// in the drain loop forever.
const DRAIN_BUDGET: usize = 64;
/// Sends between two non-blocking looks at the socket for a dead peer.
const LIVENESS_EVERY: u32 = 256;

/// The instant `timeout` from now; `None` (wait forever) for no timeout or
/// one too large to represent, as std's channels treat `Duration::MAX`.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Maps a socket error on a connected socket: the peer's death shows as
/// `EPIPE`/`ECONNRESET`.
pub(crate) fn sock_err(op: &'static str, e: Errno) -> Error {
    match e {
        Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN => Error::Disconnected,
        e => Error::io(op, e),
    }
}

/// The sending half of a connection. `Send`, not `Sync`.
pub struct Sender {
    prod: Producer,
    sock: OwnedFd,
    wait: WaitStrategy,
    timeout: Option<Duration>,
    peer_max_message: u64,
    peer: Credentials,
    /// A fragmented message was cut short (its send timed out): the next
    /// record we write must be `TAG_FRAG_ABORT`.
    abort_pending: bool,
    peer_gone: bool,
    since_check: u32,
    /// `try_send` found the ring full and armed the space wake-up.
    armed: bool,
    /// How often waits for space were caught spinning (sizes `Adaptive`).
    learner: SpinLearner,
    /// Set by a [`ShutdownHandle`]: every later send fails at once.
    shut: Arc<ShutFlag>,
}

/// The receiving half of a connection. `Send`, not `Sync`.
pub struct Receiver {
    cons: Consumer,
    sock: OwnedFd,
    wait: WaitStrategy,
    timeout: Option<Duration>,
    max_message: u64,
    peer: Credentials,
    /// The fragmented message being received, kept across calls that time
    /// out in the middle of it.
    asm: Option<Assembly>,
    /// The last reassembled message (lent by the [`Message`] that returns
    /// it), whose buffer the next one reuses: no allocation and no page
    /// faults per large message once it has grown. At most `max_message`.
    /// [`Receiver::recv_batch`] also copies each inline message here before
    /// lending it (never a view of the ring, which the peer can write).
    assembled: Vec<u8>,
    /// A transport-level violation was seen; every later call fails.
    broken: bool,
    peer_eof: bool,
    /// How often waits for data were caught spinning (sizes `Adaptive`).
    learner: SpinLearner,
}

/// What the head of the ring holds once fragments are consumed.
enum Head {
    /// An inline message, validated; take it with [`Consumer::read`].
    Inline(RecordHead),
    /// A message reassembled from fragments, in `Receiver::assembled`.
    Whole,
    /// Nothing complete yet.
    Empty,
}

/// A call's deadline, computed on first use so that a call that never has
/// to wait never reads the clock, and the abandoned messages the call has
/// consumed (bounded by [`MAX_ABORTS_PER_CALL`]).
struct Deadline {
    timeout: Option<Duration>,
    at: Option<Option<Instant>>,
    aborts: u32,
}

/// Abandoned fragmented messages one receive call consumes before it calls
/// the peer a liar. A sender abandons a message only when its own send
/// timed out on a full ring, which cannot happen often while we consume;
/// without this bound a peer streaming start/abort pairs would keep a call
/// with no deadline (`try_recv`, `recv` without a timeout) busy forever.
/// With it, one call copies at most this many times `max_message`.
const MAX_ABORTS_PER_CALL: u32 = 8;

impl Deadline {
    fn new(timeout: Option<Duration>) -> Self {
        Deadline {
            timeout,
            at: None,
            aborts: 0,
        }
    }

    /// The deadline (`None`: wait forever), starting the clock if needed.
    fn get(&mut self) -> Option<Instant> {
        let timeout = self.timeout;
        *self.at.get_or_insert_with(|| deadline(timeout))
    }

    /// The time left (`None`: no limit), starting the clock if needed.
    fn remaining(&mut self) -> Option<Duration> {
        self.get()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed (never, without a timeout).
    fn passed(&mut self) -> bool {
        self.timeout.is_some() && past(self.get())
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("peer", &self.peer)
            .field("ring", &self.prod)
            .finish()
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("peer", &self.peer)
            .field("ring", &self.cons)
            .finish()
    }
}

/// Everything the handshake produces.
pub(crate) struct Parts {
    pub(crate) prod: Producer,
    pub(crate) tx_sock: OwnedFd,
    pub(crate) cons: Consumer,
    pub(crate) rx_sock: OwnedFd,
    pub(crate) peer: Credentials,
    pub(crate) peer_max_message: u64,
    pub(crate) max_message: u64,
    pub(crate) wait: WaitStrategy,
    pub(crate) timeout: Option<Duration>,
}

impl Sender {
    fn protocol(&self, violation: ProtocolViolation) -> Error {
        Error::Protocol {
            peer_pid: self.peer.pid,
            violation,
        }
    }

    fn ring_err(&self, e: shmsock_shm::Error) -> Error {
        send_ring_err(self.peer.pid, e)
    }

    /// Largest message that travels inline through the ring (one record);
    /// larger ones stream through it in fragments.
    pub fn max_inline(&self) -> usize {
        self.prod.max_record_len()
    }

    /// Largest message the peer accepts.
    pub fn peer_max_message(&self) -> u64 {
        self.peer_max_message
    }

    /// Credentials of the peer.
    pub fn peer_credentials(&self) -> Credentials {
        self.peer
    }

    /// Sends a wake-up to the peer's parked reader.
    fn wake_reader(&mut self) -> Result<()> {
        match send_control(self.sock.as_fd(), &Control::WakeData, &[], true) {
            // A full socket buffer already holds wake-ups for the reader.
            Ok(_) => Ok(()),
            Err(e) => {
                self.peer_gone = true;
                Err(sock_err("sendmsg(wake)", e))
            }
        }
    }

    /// Handles one receive result on the sender's socket (space wake-ups
    /// and the peer's hang-up). Returns `false` if nothing was there.
    fn handle(&mut self, r: Recv) -> Result<bool> {
        match r {
            Recv::Empty => Ok(false),
            Recv::Eof => {
                self.peer_gone = true;
                Ok(true)
            }
            Recv::Msg(m) => match m.checked().map_err(|v| self.protocol(v))? {
                (Control::WakeSpace, _) => Ok(true),
                (other, _) => Err(self.protocol(ProtocolViolation::Unexpected {
                    kind: other.kind() as u8,
                    context: "on the sender's socket",
                })),
            },
        }
    }

    /// Reads what the peer's receiver sent us, non-blocking; notes EOF.
    fn drain(&mut self) -> Result<()> {
        for _ in 0..DRAIN_BUDGET {
            let r = recv_control(self.sock.as_fd()).map_err(|e| sock_err("recvmsg", e))?;
            if !self.handle(r)? || self.peer_gone {
                break;
            }
        }
        Ok(())
    }

    /// Cheap periodic liveness check on the send fast path.
    fn check_peer(&mut self) -> Result<()> {
        self.check_peer_after(1)
    }

    /// [`Sender::check_peer`] for a call that sends `sends` messages.
    fn check_peer_after(&mut self, sends: u32) -> Result<()> {
        self.since_check = self.since_check.saturating_add(sends);
        if self.since_check >= LIVENESS_EVERY {
            self.since_check = 0;
            self.drain()?;
        }
        if self.peer_gone || self.shut.is_set() {
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Waits until a record of `len` bytes fits, per the wait strategy.
    fn wait_space(&mut self, len: usize, deadline: Option<Instant>) -> Result<()> {
        self.wait_until(deadline, |p| p.can_reserve(len))
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
            let r = ready(&mut s.prod);
            r.map_err(|e| s.ring_err(e))
        })
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

    fn check_len(&self, len: usize) -> Result<()> {
        if len as u64 > self.peer_max_message {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: self.peer_max_message,
            });
        }
        Ok(())
    }

    /// Sends with a timeout that starts counting only if the call has to wait
    /// (no clock read on the fast path).
    fn send_within(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.check_len(data.len())?;
        if data.len() > self.prod.max_record_len() {
            return self.send_large(data, timeout);
        }
        self.check_peer()?;
        if self.abort_pending {
            self.write_abort(deadline(timeout))?;
        }
        if !self
            .prod
            .can_reserve(data.len())
            .map_err(|e| self.ring_err(e))?
        {
            self.wait_space(data.len(), deadline(timeout))?;
        }
        let pid = self.peer.pid;
        let mut g = self
            .prod
            .try_reserve_tagged(data.len(), TAG_INLINE)
            .map_err(|e| send_ring_err(pid, e))?
            .ok_or(Error::Config(
                "ring space vanished between check and reserve",
            ))?;
        g.fill_from(data);
        if g.commit() {
            self.wake_reader()?;
        }
        Ok(())
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
            self.check_len(m.len())?;
        }
        if msgs.is_empty() {
            return Ok(0);
        }
        self.check_peer_after(u32::try_from(msgs.len()).unwrap_or(u32::MAX))?;
        let mut deadline = Deadline::new(timeout);
        let mut done = 0;
        let written = self.write_batch(msgs, &mut deadline, &mut done);
        // Every record written is complete: publish them whatever happened.
        let woken = self.publish_staged();
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

    /// Publishes the staged records; wakes the reader if it is parked.
    fn publish_staged(&mut self) -> Result<()> {
        if self.prod.publish() {
            self.wake_reader()?;
        }
        Ok(())
    }

    /// Writes `msgs`, staging inline ones; counts in `done` the messages
    /// written (staged or published).
    fn write_batch(
        &mut self,
        msgs: &[&[u8]],
        deadline: &mut Deadline,
        done: &mut usize,
    ) -> Result<()> {
        if self.abort_pending {
            self.write_abort(deadline.get())?;
        }
        let max = self.prod.max_record_len();
        let pid = self.peer.pid;
        for m in msgs {
            if m.len() > max {
                self.publish_staged()?;
                let left = deadline.remaining();
                self.send_large(m, left)?;
            } else {
                if !self
                    .prod
                    .can_reserve(m.len())
                    .map_err(|e| self.ring_err(e))?
                {
                    self.publish_staged()?;
                    self.wait_space(m.len(), deadline.get())?;
                }
                let mut g = self
                    .prod
                    .try_reserve_tagged(m.len(), TAG_INLINE)
                    .map_err(|e| send_ring_err(pid, e))?
                    .ok_or(Error::Config(
                        "ring space vanished between check and reserve",
                    ))?;
                g.fill_from(m);
                g.commit_deferred();
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
        self.check_len(data.len())?;
        if self.armed {
            // Our socket may have woken an event loop: consume the wake-ups
            // so a level-triggered poller does not report them again.
            self.armed = false;
            self.drain()?;
            if self.peer_gone {
                return Err(Error::Disconnected);
            }
        }
        if data.len() > self.prod.max_record_len() {
            return self.send_large(data, self.timeout).map(|()| true);
        }
        self.check_peer()?;
        // The abort record owed by a timed-out large send goes first; each
        // record is written only once it fits, so nothing here waits.
        if self.abort_pending {
            if !self.try_space(0)? {
                return Ok(false);
            }
            self.write_abort(None)?;
        }
        if !self.try_space(data.len())? {
            return Ok(false);
        }
        self.send_within(data, None).map(|()| true)
    }

    /// Whether a record of `len` bytes fits now; if not, arms the space
    /// wake-up (parks, re-checks) and returns `false`.
    fn try_space(&mut self, len: usize) -> Result<bool> {
        if self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
            return Ok(true);
        }
        self.prod.park();
        if !self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
            self.armed = true;
            return Ok(false);
        }
        self.prod.unpark();
        Ok(true)
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
        self.check_len(len)?;
        let max = self.prod.max_record_len();
        if len > max {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: max as u64,
            });
        }
        self.check_peer()?;
        let deadline = deadline(timeout);
        if self.abort_pending {
            self.write_abort(deadline)?;
        }
        if !self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
            self.wait_space(len, deadline)?;
        }
        let pid = self.peer.pid;
        let grant = self
            .prod
            .try_reserve_tagged(len, TAG_INLINE)
            .map_err(|e| send_ring_err(pid, e))?
            .ok_or(Error::Config(
                "ring space vanished between check and reserve",
            ))?;
        Ok(WriteGrant {
            grant,
            sock: self.sock.as_fd(),
            peer_gone: &mut self.peer_gone,
        })
    }

    /// Writes one record of `len` bytes tagged `tag`, filled by `fill`,
    /// waiting for space until `deadline`. Wakes a parked reader.
    fn write_record(
        &mut self,
        len: usize,
        tag: u16,
        deadline: Option<Instant>,
        fill: impl FnOnce(&mut ring::WriteGrant<'_>),
    ) -> Result<()> {
        if !self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
            self.wait_space(len, deadline)?;
        }
        let pid = self.peer.pid;
        let mut g = self
            .prod
            .try_reserve_tagged(len, tag)
            .map_err(|e| send_ring_err(pid, e))?
            .ok_or(Error::Config(
                "ring space vanished between check and reserve",
            ))?;
        fill(&mut g);
        if g.commit() {
            self.wake_reader()?;
        }
        Ok(())
    }

    /// Tells the peer to drop the fragmented message we cut short.
    fn write_abort(&mut self, deadline: Option<Instant>) -> Result<()> {
        self.write_record(0, TAG_FRAG_ABORT, deadline, |_| {})?;
        self.abort_pending = false;
        Ok(())
    }

    /// Streams a message too big for one record through the ring as
    /// fragments (see [`crate::frag`]). The receiver copies each fragment
    /// out and releases it while we write the next. If the deadline passes
    /// after the first fragment was published, the message is abandoned:
    /// the next record we write tells the peer to drop it.
    fn send_large(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        // Fragments are copies of at least a few KiB: a clock read is noise.
        let deadline = deadline(timeout);
        self.check_peer()?;
        if self.abort_pending {
            self.write_abort(deadline)?;
        }
        let frag = fragment_len(self.prod.capacity(), self.prod.max_record_len());
        let total = (data.len() as u64).to_le_bytes();
        let first = data.len().min(frag - FRAG_HEADER);
        self.write_record(FRAG_HEADER + first, TAG_FRAG_START, deadline, |g| {
            g.fill_from(&total);
            g.fill_at(FRAG_HEADER, &data[..first]);
        })?;
        for chunk in data[first..].chunks(frag) {
            if let Err(e) =
                self.write_record(chunk.len(), TAG_FRAG, deadline, |g| g.fill_from(chunk))
            {
                self.abort_pending = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Publishes nothing new; marks our ring closed so the peer drains it
    /// and then sees [`Error::Disconnected`]. Also done on drop.
    fn close(&mut self) {
        if self.prod.close() {
            let _ = send_control(self.sock.as_fd(), &Control::WakeData, &[], true);
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsFd for Sender {
    /// The socket on which the peer's space wake-ups (and its hang-up)
    /// arrive: readable after [`Sender::try_send`] returned `Ok(false)` and
    /// space was freed, or when the peer is gone.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
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
        self.tx.check_len(data.len())?;
        self.tx.check_peer()?;
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
        tx.check_len(len)?;
        let max = tx.prod.max_record_len();
        if len > max {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: max as u64,
            });
        }
        tx.check_peer()?;
        if tx.abort_pending {
            tx.write_abort(self.deadline.get())?;
        }
        if !tx.prod.can_reserve(len).map_err(|e| tx.ring_err(e))? {
            tx.publish_staged()?;
            tx.wait_space(len, self.deadline.get())?;
        }
        let pid = tx.peer.pid;
        let grant = tx
            .prod
            .try_reserve_tagged(len, TAG_INLINE)
            .map_err(|e| send_ring_err(pid, e))?
            .ok_or(Error::Config(
                "ring space vanished between check and reserve",
            ))?;
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
        self.tx.publish_staged()?;
        Ok(self.count)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a dead peer shows on the next call.
            let _ = self.tx.publish_staged();
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
/// write; [`commit`](WriteGrant::commit) to send; drop to abandon.
pub struct WriteGrant<'a> {
    grant: ring::WriteGrant<'a>,
    sock: BorrowedFd<'a>,
    peer_gone: &'a mut bool,
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
    pub fn commit(self) -> Result<()> {
        if self.grant.commit() {
            if let Err(e) = send_control(self.sock, &Control::WakeData, &[], true) {
                *self.peer_gone = true;
                return Err(sock_err("sendmsg(wake)", e));
            }
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

/// A received message. Inline messages are read in place from the ring
/// and release their space on drop; larger ones were reassembled from
/// fragments into the receiver's own buffer, which the message lends.
pub struct Message<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Ring {
        guard: Option<ring::ReadGuard<'a>>,
        sock: BorrowedFd<'a>,
    },
    /// A message reassembled from fragments into the receiver's buffer.
    Assembled(&'a mut Vec<u8>),
}

impl Message<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Ring { guard, .. } => guard.as_ref().map_or(0, |g| g.len()),
            Inner::Assembled(v) => v.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the first `dst.len().min(self.len())` bytes into `dst` and
    /// returns how many were copied.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        match &self.inner {
            Inner::Ring { guard, .. } => guard.as_ref().map_or(0, |g| g.copy_to(dst)),
            Inner::Assembled(v) => {
                let n = dst.len().min(v.len());
                dst[..n].copy_from_slice(&v[..n]);
                n
            }
        }
    }

    /// Copies the payload into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.copy_to(&mut v);
        v
    }

    /// The payload as a vector: moved out without a copy for a message that
    /// was reassembled from fragments, copied for an inline one (whose ring
    /// space is released when this returns).
    pub fn into_vec(mut self) -> Vec<u8> {
        match &mut self.inner {
            Inner::Assembled(v) => std::mem::take(&mut **v),
            Inner::Ring { .. } => self.to_vec(),
        }
    }

    /// The payload as a slice, if that is sound whatever the peer does:
    /// `Some` for messages larger than one ring record, which were
    /// reassembled into our own memory; `None` for inline ones, which are
    /// read in place from the ring (see [`Message::as_slice_unchecked`]).
    pub fn as_sealed(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Ring { .. } => None,
            Inner::Assembled(v) => Some(v),
        }
    }

    /// Raw pointer to the payload, valid for [`len`](Message::len) bytes
    /// until the message is dropped; never null (dangling but aligned when
    /// the payload is empty). For foreign-language bindings that must hand
    /// out an address without forming a Rust reference to memory the peer
    /// can write: for inline messages the bytes lie in the peer's ring (see
    /// [`Message::as_slice_unchecked`]), so read them as untrusted.
    pub fn as_ptr(&self) -> *const u8 {
        match &self.inner {
            Inner::Ring { guard, .. } => match guard {
                Some(g) => g.as_ptr(),
                None => std::ptr::NonNull::<u8>::dangling().as_ptr(),
            },
            Inner::Assembled(v) => v.as_ptr(),
        }
    }

    /// The payload in place, without copying.
    ///
    /// # Safety
    /// For inline messages the bytes lie in the ring, which the peer can
    /// still write if it breaks the protocol. The caller must trust the
    /// peer not to modify a message it has sent while the slice lives.
    /// (Reassembled messages are always safe; prefer [`Message::as_sealed`].)
    #[allow(unsafe_code)] // the one place the transport lends ring memory; contract above
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        match &self.inner {
            Inner::Ring { guard, .. } => match guard {
                // SAFETY: forwarded to the caller (see above).
                Some(g) => unsafe { g.as_slice_unchecked() },
                None => &[],
            },
            Inner::Assembled(v) => v,
        }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        if let Inner::Ring { guard, sock } = &mut self.inner {
            if let Some(g) = guard.take() {
                if g.release() {
                    // Best effort: if the peer is gone it no longer waits.
                    let _ = send_control(*sock, &Control::WakeSpace, &[], true);
                }
            }
        }
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.len())
            .field("sealed", &self.as_sealed().is_some())
            .finish()
    }
}

impl Receiver {
    fn protocol(&self, violation: ProtocolViolation) -> Error {
        Error::Protocol {
            peer_pid: self.peer.pid,
            violation,
        }
    }

    /// Credentials of the peer.
    pub fn peer_credentials(&self) -> Credentials {
        self.peer
    }

    fn has_data(&mut self) -> Result<bool> {
        let pid = self.peer.pid;
        self.cons.has_data().map_err(|e| ring_err(pid, e))
    }

    /// Handles one receive result on the receiver's socket: wake-ups are
    /// dropped, EOF noted, anything else is a violation. Returns `false` if
    /// nothing was there.
    fn handle(&mut self, r: Recv) -> Result<bool> {
        match r {
            Recv::Empty => return Ok(false),
            Recv::Eof => self.peer_eof = true,
            Recv::Msg(m) => match m.checked().map_err(|v| self.protocol(v))? {
                (Control::WakeData, _) => {}
                (other, _) => {
                    return Err(self.protocol(ProtocolViolation::Unexpected {
                        kind: other.kind() as u8,
                        context: "on the receiver's socket",
                    }))
                }
            },
        }
        Ok(true)
    }

    /// Reads pending control messages, non-blocking. Returns how many were
    /// read.
    fn drain(&mut self) -> Result<usize> {
        let mut n = 0;
        while n < DRAIN_BUDGET && !self.peer_eof {
            let r = recv_control(self.sock.as_fd()).map_err(|e| sock_err("recvmsg", e))?;
            if !self.handle(r)? {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Waits until the ring has a record, per the wait strategy
    /// ([`wait::wait_until`]).
    fn wait_data(&mut self, deadline: Option<Instant>) -> Result<()> {
        wait::wait_until(self, deadline, Receiver::has_data)
    }

    /// Receives the next message, waiting per the wait strategy and the
    /// default timeout.
    ///
    /// # Errors
    /// [`Error::Disconnected`] once the peer is gone and everything it sent
    /// was received; [`Error::Timeout`]; [`Error::Protocol`].
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

    fn recv_within(&mut self, timeout: Option<Duration>) -> Result<Message<'_>> {
        let mut deadline = Deadline::new(timeout);
        let head = loop {
            match self.poll_head(&mut deadline)? {
                Head::Inline(h) => break Some(h),
                Head::Whole => break None,
                Head::Empty => self.wait_data(deadline.get())?,
            }
        };
        match head {
            Some(h) => self.inline(h),
            None => Ok(self.assembled_message()),
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
    /// As [`Receiver::recv`] (never [`Error::Timeout`]).
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        let head = self.try_head(&mut Deadline::new(None))?;
        match head {
            Head::Inline(h) => self.inline(h).map(Some),
            Head::Whole => Ok(Some(self.assembled_message())),
            Head::Empty => Ok(None),
        }
    }

    /// The head of the ring without waiting; if it is empty, arms the
    /// wake-up (see [`Receiver::try_recv`]) and returns [`Head::Empty`].
    fn try_head(&mut self, deadline: &mut Deadline) -> Result<Head> {
        let mut head = self.poll_head(deadline)?;
        if matches!(head, Head::Empty) {
            self.drain()?;
            head = self.poll_head(deadline)?;
        }
        if matches!(head, Head::Empty) {
            if self.peer_eof {
                return Err(Error::Disconnected);
            }
            self.cons.park();
            head = self.poll_head(deadline)?;
            if matches!(head, Head::Empty) {
                return Ok(head);
            }
            self.cons.unpark();
        }
        Ok(head)
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
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let first = match wait {
            Some(timeout) => {
                let mut deadline = Deadline::new(timeout);
                loop {
                    match self.poll_head(&mut deadline)? {
                        Head::Empty => self.wait_data(deadline.get())?,
                        h => break h,
                    }
                }
            }
            None => self.try_head(&mut Deadline::new(None))?,
        };
        let mut head = match first {
            Head::Empty => return Ok(0),
            Head::Whole => {
                f(&self.assembled);
                return Ok(1);
            }
            Head::Inline(h) => h,
        };
        let pid = self.peer.pid;
        let mut n = 0;
        let taken = loop {
            // No fragmented message is being assembled (the head was
            // inline), so the reassembly buffer is free to hold the copy.
            self.assembled.clear();
            match self.cons.read(head) {
                Ok(g) => {
                    g.append_to(0, &mut self.assembled);
                    // Handed back below, with the whole batch.
                    g.release_deferred();
                }
                // Unreachable in practice (`head` was just validated), but
                // keep the count of what `f` already got.
                Err(_) if n > 0 => break Ok(n),
                Err(e) => break Err(ring_err(pid, e)),
            }
            f(&self.assembled);
            n += 1;
            if n == max {
                break Ok(n);
            }
            // The next inline message, if one is ready. Anything else (an
            // empty ring, a fragment, an error, which poisons the ring and
            // so lasts) ends the batch; the next call deals with it.
            match self.cons.peek_record() {
                Ok(Some(h)) if h.tag() == TAG_INLINE && h.len() as u64 <= self.max_message => {
                    head = h;
                }
                _ => break Ok(n),
            }
        };
        if self.cons.flush_releases() {
            // Best effort: a dead peer shows on the next wait.
            let _ = send_control(self.sock.as_fd(), &Control::WakeSpace, &[], true);
        }
        taken
    }

    /// Consumes fragment records at the head of the ring until a message is
    /// ready or the ring is empty; never waits. Each record's header is
    /// loaded once ([`Consumer::peek_record`]) and every check applies to
    /// that copy, which [`Consumer::read`] then takes. The loop is fed by the
    /// peer, so it checks the call's deadline after every fragment.
    fn poll_head(&mut self, deadline: &mut Deadline) -> Result<Head> {
        if self.broken {
            return Err(self.protocol(ProtocolViolation::Poisoned));
        }
        loop {
            let pid = self.peer.pid;
            let Some(head) = self.cons.peek_record().map_err(|e| ring_err(pid, e))? else {
                return Ok(Head::Empty);
            };
            let assembling = self.asm.is_some();
            match head.tag() {
                TAG_INLINE if !assembling => {
                    if head.len() as u64 > self.max_message {
                        return Err(self.fail(ProtocolViolation::BadLimit {
                            what: "inline message longer than our max_message",
                            value: head.len() as u64,
                        }));
                    }
                    return Ok(Head::Inline(head));
                }
                TAG_FRAG_START if !assembling => {}
                TAG_FRAG | TAG_FRAG_ABORT if assembling => {}
                _ => {
                    return Err(self.fail(ProtocolViolation::Fragment(
                        "record tag unknown or out of place",
                    )))
                }
            }
            if self.take_fragment(head)? {
                return Ok(Head::Whole);
            }
            if head.tag() == TAG_FRAG_ABORT {
                deadline.aborts += 1;
                if deadline.aborts > MAX_ABORTS_PER_CALL {
                    return Err(self.fail(ProtocolViolation::Fragment(
                        "more abandoned messages in one call than a sender's timeouts allow",
                    )));
                }
            }
            if deadline.passed() {
                return Err(Error::Timeout);
            }
        }
    }

    /// Takes one fragment record (its tag already checked against our
    /// state), copies its bytes out and releases it at once, so the sender
    /// can reuse the space while we wait for the next one. Returns whether
    /// this was the message's last fragment (the message is then in
    /// `assembled`).
    fn take_fragment(&mut self, head: RecordHead) -> Result<bool> {
        let pid = self.peer.pid;
        let max_message = self.max_message;
        let g = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        let n = head.len();
        // Only `g` (in `cons`) and `asm` are touched while the guard lives.
        let step: Result<(), &'static str> = match head.tag() {
            TAG_FRAG_ABORT if n == 0 => {
                if let Some(a) = self.asm.take() {
                    self.assembled = a.into_vec();
                }
                Ok(())
            }
            TAG_FRAG_ABORT => Err("abort record with a payload"),
            TAG_FRAG_START if n < FRAG_HEADER => Err("first fragment shorter than its header"),
            TAG_FRAG_START => {
                let mut total = [0u8; FRAG_HEADER];
                g.copy_to(&mut total);
                let total = u64::from_le_bytes(total);
                let first = n - FRAG_HEADER;
                if total <= first as u64 {
                    Err("fragmented message no longer than its first fragment")
                } else {
                    let buf = std::mem::take(&mut self.assembled);
                    Assembly::start(total, first, max_message, buf).and_then(|mut a| {
                        g.append_to(FRAG_HEADER, a.make_room(first)?);
                        self.asm = Some(a);
                        Ok(())
                    })
                }
            }
            _ if n == 0 => Err("empty fragment"),
            _ => match self.asm.as_mut() {
                Some(a) => a.make_room(n).map(|buf| {
                    g.append_to(0, buf);
                }),
                None => Err("fragment outside a message"),
            },
        };
        if g.release() {
            // Best effort: a dead peer shows on the next wait.
            let _ = send_control(self.sock.as_fd(), &Control::WakeSpace, &[], true);
        }
        if let Err(what) = step {
            return Err(self.fail(ProtocolViolation::Fragment(what)));
        }
        if self.asm.as_ref().is_some_and(Assembly::is_complete) {
            if let Some(a) = self.asm.take() {
                self.assembled = a.into_vec();
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Lends the message just reassembled.
    fn assembled_message(&mut self) -> Message<'_> {
        Message {
            inner: Inner::Assembled(&mut self.assembled),
        }
    }

    /// Takes the inline record `head` (from [`Receiver::poll_head`]).
    fn inline(&mut self, head: RecordHead) -> Result<Message<'_>> {
        let pid = self.peer.pid;
        let guard = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        // Disjoint fields: the guard borrows `cons`, the message also keeps
        // the socket to wake a parked producer on release.
        Ok(Message {
            inner: Inner::Ring {
                guard: Some(guard),
                sock: self.sock.as_fd(),
            },
        })
    }

    /// Records a violation: this receiver refuses every later call.
    fn fail(&mut self, violation: ProtocolViolation) -> Error {
        self.broken = true;
        self.asm = None;
        self.protocol(violation)
    }

    /// Marks the peer's ring closed on our side (advisory).
    fn close(&mut self) {
        if self.cons.close() {
            let _ = send_control(self.sock.as_fd(), &Control::WakeSpace, &[], true);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsFd for Receiver {
    /// The socket on which the peer's data wake-ups, large-message fds and
    /// hang-up arrive. See [`Receiver::try_recv`] for the readiness rule.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
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
        self.peer_gone
    }
    fn park(&mut self) {
        // SYNC POINT `park-dekker`, writer side (docs/design.md).
        self.prod.park();
    }
    fn unpark(&mut self) {
        self.prod.unpark();
    }
    fn drain(&mut self) -> Result<()> {
        Sender::drain(self)
    }
    fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
    fn handle(&mut self, r: Recv) -> Result<bool> {
        Sender::handle(self, r)
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
        self.peer_eof
    }
    fn park(&mut self) {
        // SYNC POINT `park-dekker`, reader side (docs/design.md).
        self.cons.park();
    }
    fn unpark(&mut self) {
        self.cons.unpark();
    }
    fn drain(&mut self) -> Result<()> {
        Receiver::drain(self).map(drop)
    }
    fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
    fn handle(&mut self, r: Recv) -> Result<bool> {
        Receiver::handle(self, r)
    }
}

/// Maps a ring error on the sending side.
fn send_ring_err(peer_pid: Option<i32>, e: shmsock_shm::Error) -> Error {
    match e {
        shmsock_shm::Error::RecordTooLarge { len, max } => Error::MessageTooLarge {
            len: len as u64,
            max: max as u64,
        },
        e => ring_err(peer_pid, e),
    }
}

/// Maps a ring error: the peer's violations become [`Error::Protocol`].
fn ring_err(peer_pid: Option<i32>, e: shmsock_shm::Error) -> Error {
    match e {
        // The producer closed its ring and everything was read.
        shmsock_shm::Error::Closed => Error::Disconnected,
        shmsock_shm::Error::Protocol(v) => Error::Protocol {
            peer_pid,
            violation: v.into(),
        },
        shmsock_shm::Error::Poisoned => Error::Protocol {
            peer_pid,
            violation: ProtocolViolation::Poisoned,
        },
        e => Error::Shm(e),
    }
}

/// A bidirectional connection: a [`Sender`] and a [`Receiver`] in one.
#[derive(Debug)]
pub struct Connection {
    tx: Sender,
    rx: Receiver,
    shut: Arc<ShutFlag>,
}

impl Connection {
    pub(crate) fn from_parts(p: Parts) -> Self {
        let shut = Arc::new(ShutFlag::default());
        Connection {
            tx: Sender {
                prod: p.prod,
                sock: p.tx_sock,
                wait: p.wait,
                timeout: p.timeout,
                peer_max_message: p.peer_max_message,
                peer: p.peer,
                abort_pending: false,
                peer_gone: false,
                since_check: 0,
                armed: false,
                learner: SpinLearner::default(),
                shut: shut.clone(),
            },
            shut,
            rx: Receiver {
                cons: p.cons,
                sock: p.rx_sock,
                wait: p.wait,
                timeout: p.timeout,
                max_message: p.max_message,
                peer: p.peer,
                asm: None,
                assembled: Vec::new(),
                broken: false,
                peer_eof: false,
                learner: SpinLearner::default(),
            },
        }
    }

    /// Connects to a listener with default options
    /// ([`Builder`](crate::Builder) for others).
    ///
    /// # Errors
    /// See [`Builder::connect`](crate::Builder::connect).
    pub fn connect(path: impl AsRef<std::path::Path>) -> Result<Connection> {
        crate::Builder::new().connect(path)
    }

    /// Sends a message (see [`Sender::send`]).
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.tx.send(data)
    }

    /// Sends with an explicit timeout (see [`Sender::send_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send_timeout(&mut self, data: &[u8], timeout: Duration) -> Result<()> {
        self.tx.send_timeout(data, timeout)
    }

    /// Sends if the ring has room (see [`Sender::try_send`]).
    ///
    /// # Errors
    /// As [`Sender::try_send`].
    pub fn try_send(&mut self, data: &[u8]) -> Result<bool> {
        self.tx.try_send(data)
    }

    /// Reserves ring space for a zero-copy message (see [`Sender::reserve`]).
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>> {
        self.tx.reserve(len)
    }

    /// Reserves with an explicit timeout (see [`Sender::reserve_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::reserve`].
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<WriteGrant<'_>> {
        self.tx.reserve_timeout(len, timeout)
    }

    /// A handle that ends this connection from any thread, waking every
    /// call that waits on it (see [`ShutdownHandle`]). Take it before
    /// [`split`](Connection::split) to end both halves.
    ///
    /// # Errors
    /// [`Error::Io`] if the sockets cannot be duplicated (fd limit).
    pub fn shutdown_handle(&self) -> Result<ShutdownHandle> {
        ShutdownHandle::new(self.shut.clone(), &[self.tx.as_fd(), self.rx.as_fd()])
    }

    /// Receives a message (see [`Receiver::recv`]).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv(&mut self) -> Result<Message<'_>> {
        self.rx.recv()
    }

    /// Receives with an explicit timeout (see [`Receiver::recv_timeout`]).
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        self.rx.recv_timeout(timeout)
    }

    /// Receives without blocking (see [`Receiver::try_recv`]).
    ///
    /// # Errors
    /// As [`Receiver::try_recv`].
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        self.rx.try_recv()
    }

    /// Sends many messages with one publication (see
    /// [`Sender::send_batch`]).
    ///
    /// # Errors
    /// As [`Sender::send_batch`].
    pub fn send_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        self.tx.send_batch(msgs)
    }

    /// Sends a batch with an explicit timeout (see
    /// [`Sender::send_batch_timeout`]).
    ///
    /// # Errors
    /// As [`Sender::send_batch`].
    pub fn send_batch_timeout(&mut self, msgs: &[&[u8]], timeout: Duration) -> Result<usize> {
        self.tx.send_batch_timeout(msgs, timeout)
    }

    /// Starts a batch of messages published together (see
    /// [`Sender::batch`]).
    pub fn batch(&mut self) -> Batch<'_> {
        self.tx.batch()
    }

    /// Receives up to `max` messages with one release (see
    /// [`Receiver::recv_batch`]).
    ///
    /// # Errors
    /// As [`Receiver::recv_batch`].
    pub fn recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.rx.recv_batch(max, f)
    }

    /// Receives a batch with an explicit timeout (see
    /// [`Receiver::recv_batch_timeout`]).
    ///
    /// # Errors
    /// As [`Receiver::recv_batch`].
    pub fn recv_batch_timeout(
        &mut self,
        max: usize,
        timeout: Duration,
        f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        self.rx.recv_batch_timeout(max, timeout, f)
    }

    /// Receives a batch without blocking (see [`Receiver::try_recv_batch`]).
    ///
    /// # Errors
    /// As [`Receiver::try_recv_batch`].
    pub fn try_recv_batch(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.rx.try_recv_batch(max, f)
    }

    /// Splits into halves that can live on two threads.
    pub fn split(self) -> (Sender, Receiver) {
        (self.tx, self.rx)
    }

    /// The sending half.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.tx
    }

    /// The receiving half.
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.rx
    }

    /// Credentials of the peer process (`SO_PEERCRED` at connect time).
    pub fn peer_credentials(&self) -> Credentials {
        self.tx.peer
    }

    /// Largest message that travels inline through the ring.
    pub fn max_inline(&self) -> usize {
        self.tx.max_inline()
    }
}

impl AsFd for Connection {
    /// The receiving socket: see [`Receiver::try_recv`] for what
    /// readability means.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}
