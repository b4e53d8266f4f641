//! Connections: a [`Sender`] (our ring + the socket carrying our wake-ups
//! and large-message fds) and a [`Receiver`] (the peer's ring + the socket
//! carrying its). See `docs/design.md` for the notification protocol.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use shmsock_shm::ring::{self, Consumer, Producer};
use shmsock_shm::FrozenSegment;

use crate::error::{Error, ProtocolViolation, Result};
use crate::fdpass::{
    recv_control, recv_control_with, send_control, send_control_until, wait_readable, Recv,
};
use crate::options::{Credentials, WaitStrategy};
use crate::wire::Control;

/// Ring record tag of an inline message.
pub(crate) const TAG_INLINE: u16 = 0;
/// Ring record tag announcing a large message (16 bytes: seq, len).
pub(crate) const TAG_LARGE: u16 = 1;
/// Large messages a sender keeps in flight (announced, not yet consumed).
/// Bounds the fds a receiver must hold; a sender at the limit waits for
/// the consumer cursor to pass its oldest announcement.
const MAX_LARGE_IN_FLIGHT: usize = 8;
/// Fds a receiver queues ahead of their ring record before it calls the
/// peer a liar (one more than in flight: the consumer releases a record
/// before it takes the fd).
const MAX_PENDING_LARGE: usize = MAX_LARGE_IN_FLIGHT + 1;
/// Control messages handled per drain, so a flooding peer cannot keep us
/// in the drain loop forever.
const DRAIN_BUDGET: usize = 64;
/// Spins between two looks at the clock and at the socket.
const SPIN_CHECK_EVERY: u32 = 256;
/// Sends between two non-blocking looks at the socket for a dead peer.
const LIVENESS_EVERY: u32 = 256;

/// The spinning half of a wait strategy: decides, one iteration at a time,
/// whether to keep spinning (and when to look at the clock and the socket)
/// or to park.
struct Spinner {
    /// `None`: spin forever (`Spin`); otherwise park once this has passed.
    park_after: Option<Instant>,
    spins: u32,
}

/// What a waiting loop does next.
enum Step {
    /// Spin once more.
    Spin,
    /// Spin, but first check the deadline and read the socket.
    Check,
    /// Park and sleep on the socket.
    Park,
}

impl Spinner {
    fn new(wait: WaitStrategy) -> Self {
        let park_after = match wait {
            WaitStrategy::Spin => None,
            WaitStrategy::Block => Some(Instant::now()),
            WaitStrategy::Adaptive { spin } => Some(Instant::now() + spin),
        };
        Spinner {
            park_after,
            spins: 0,
        }
    }

    fn step(&mut self) -> Step {
        self.spins = self.spins.wrapping_add(1);
        // The clock is read every 16 spins only (a vDSO call, but not free).
        let park = self
            .park_after
            .is_some_and(|t| self.spins % 16 == 1 && Instant::now() >= t);
        if park {
            Step::Park
        } else if self.spins % SPIN_CHECK_EVERY == 0 {
            Step::Check
        } else {
            Step::Spin
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Maps a socket error on a connected socket: the peer's death shows as
/// `EPIPE`/`ECONNRESET`.
fn sock_err(op: &'static str, e: Errno) -> Error {
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
    large_seq: u64,
    /// Ring positions just past each large announcement not yet consumed.
    large_in_flight: VecDeque<u64>,
    peer_gone: bool,
    since_check: u32,
    /// `try_send` found the ring full and armed the space wake-up.
    armed: bool,
}

/// The receiving half of a connection. `Send`, not `Sync`.
pub struct Receiver {
    cons: Consumer,
    sock: OwnedFd,
    wait: WaitStrategy,
    timeout: Option<Duration>,
    max_message: u64,
    peer: Credentials,
    pending: VecDeque<(u64, u64, OwnedFd)>,
    next_large: u64,
    peer_eof: bool,
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

    /// Largest message that travels inline through the ring; larger ones
    /// go as a sealed memfd.
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

    /// Sleeps until one control message (or the hang-up) arrives or the
    /// deadline passes (`false`). Without a deadline this is a single
    /// blocking `recvmsg`; with one, `poll` and one `recvmsg`. Leftover
    /// wake-ups are harmless: the caller re-checks the ring.
    fn wait_one(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let blocking = deadline.is_none();
        if !blocking {
            match wait_readable(self.sock.as_fd(), deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(Error::io("poll", e)),
            }
        }
        let r =
            recv_control_with(self.sock.as_fd(), blocking).map_err(|e| sock_err("recvmsg", e))?;
        self.handle(r)?;
        Ok(true)
    }

    /// Cheap periodic liveness check on the send fast path.
    fn check_peer(&mut self) -> Result<()> {
        self.since_check += 1;
        if self.since_check >= LIVENESS_EVERY {
            self.since_check = 0;
            self.drain()?;
        }
        if self.peer_gone {
            return Err(Error::Disconnected);
        }
        Ok(())
    }

    /// Waits until a record of `len` bytes fits, per the wait strategy.
    fn wait_space(&mut self, len: usize, deadline: Option<Instant>) -> Result<()> {
        self.wait_until(deadline, |p| p.can_reserve(len))
    }

    /// Waits until `ready` holds, per the wait strategy. `ready` may only
    /// depend on the consumer's progress, which is what wakes us.
    fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Producer) -> shmsock_shm::Result<bool>,
    ) -> Result<()> {
        let mut spinner = Spinner::new(self.wait);
        loop {
            if ready(&mut self.prod).map_err(|e| self.ring_err(e))? {
                return Ok(());
            }
            if self.peer_gone {
                return Err(Error::Disconnected);
            }
            match spinner.step() {
                Step::Spin => {
                    std::hint::spin_loop();
                    continue;
                }
                Step::Check => {
                    if past(deadline) {
                        return Err(Error::Timeout);
                    }
                    self.drain()?;
                    continue;
                }
                Step::Park => {}
            }
            // Park: flag, re-check, sleep on the socket (SYNC POINT
            // `park-dekker`, writer side; see docs/design.md).
            self.prod.park();
            match ready(&mut self.prod) {
                Ok(false) => {}
                r => {
                    self.prod.unpark();
                    return r.map(drop).map_err(|e| self.ring_err(e));
                }
            }
            let woke = self.wait_one(deadline);
            self.prod.unpark();
            if !woke? {
                return Err(Error::Timeout);
            }
        }
    }

    /// Sends `data`: inline through the ring if it fits, else as a sealed
    /// memfd. Waits for space per the wait strategy and the default timeout.
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
        let len = data.len();
        if !self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
            self.prod.park();
            if !self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
                self.armed = true;
                return Ok(false);
            }
            self.prod.unpark();
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
        self.check_len(len)?;
        let max = self.prod.max_record_len();
        if len > max {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: max as u64,
            });
        }
        self.check_peer()?;
        if !self.prod.can_reserve(len).map_err(|e| self.ring_err(e))? {
            self.wait_space(len, deadline(timeout))?;
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

    fn send_large(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        // A large message costs milliseconds: the clock read is noise here.
        let deadline = deadline(timeout);
        let len = data.len() as u64;
        if len > self.peer_max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.peer_max_message,
            });
        }
        self.check_peer()?;
        if self.large_in_flight.len() >= MAX_LARGE_IN_FLIGHT {
            let oldest = self.large_in_flight.front().copied().unwrap_or(0);
            self.wait_until(deadline, |p| Ok(p.consumed()? >= oldest))?;
        }
        if let Ok(head) = self.prod.consumed() {
            while self.large_in_flight.front().is_some_and(|&end| end <= head) {
                self.large_in_flight.pop_front();
            }
        }
        let fd = FrozenSegment::freeze(c"shmsock-large", data).map_err(Error::Shm)?;
        // Reserve the announcement first, then send the fd, then commit: the
        // fd is in the peer's socket queue before the record is visible, and
        // at most one fd is ever in flight ahead of its record.
        if !self.prod.can_reserve(16).map_err(|e| self.ring_err(e))? {
            self.wait_space(16, deadline)?;
        }
        let seq = self.large_seq;
        let pid = self.peer.pid;
        let mut g = self
            .prod
            .try_reserve_tagged(16, TAG_LARGE)
            .map_err(|e| send_ring_err(pid, e))?
            .ok_or(Error::Config(
                "ring space vanished between check and reserve",
            ))?;
        let mut ann = [0u8; 16];
        ann[..8].copy_from_slice(&seq.to_le_bytes());
        ann[8..].copy_from_slice(&len.to_le_bytes());
        g.fill_from(&ann);
        match send_control_until(
            self.sock.as_fd(),
            &Control::Large { seq, len },
            &[fd.as_fd()],
            deadline,
        ) {
            Ok(true) => {}
            Ok(false) => {
                // The peer does not read its socket: give up at the
                // deadline; the abandoned grant publishes nothing.
                let _ = g;
                return Err(Error::Timeout);
            }
            Err(e) => {
                // The grant is abandoned uncommitted: nothing is published.
                let _ = g;
                self.peer_gone = true;
                return Err(sock_err("sendmsg(large)", e));
            }
        }
        let wake = g.commit();
        self.large_seq += 1;
        self.large_in_flight.push_back(self.prod.position());
        if wake {
            self.wake_reader()?;
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

/// A zero-copy message being written into the ring. Deref to `[u8]` to
/// write; [`commit`](WriteGrant::commit) to send; drop to abandon.
pub struct WriteGrant<'a> {
    grant: ring::WriteGrant<'a>,
    sock: BorrowedFd<'a>,
    peer_gone: &'a mut bool,
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
/// and release their space on drop; large ones are a sealed, read-only
/// memfd mapping.
pub struct Message<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Ring {
        guard: Option<ring::ReadGuard<'a>>,
        sock: BorrowedFd<'a>,
    },
    Large(FrozenSegment),
}

impl Message<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Ring { guard, .. } => guard.as_ref().map_or(0, |g| g.len()),
            Inner::Large(s) => s.as_slice().len(),
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
            Inner::Large(s) => {
                let src = s.as_slice();
                let n = dst.len().min(src.len());
                dst[..n].copy_from_slice(&src[..n]);
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

    /// The payload as a slice, if that is sound whatever the peer does:
    /// `Some` for large messages (the memfd is sealed against writes),
    /// `None` for inline ones (see [`Message::as_slice_unchecked`]).
    pub fn as_sealed(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Ring { .. } => None,
            Inner::Large(s) => Some(s.as_slice()),
        }
    }

    /// The payload in place, without copying.
    ///
    /// # Safety
    /// For inline messages the bytes lie in the ring, which the peer can
    /// still write if it breaks the protocol. The caller must trust the
    /// peer not to modify a message it has sent while the slice lives.
    /// (Large messages are always safe; prefer [`Message::as_sealed`].)
    #[allow(unsafe_code)] // the one place the transport lends ring memory; contract above
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        match &self.inner {
            Inner::Ring { guard, .. } => match guard {
                // SAFETY: forwarded to the caller (see above).
                Some(g) => unsafe { g.as_slice_unchecked() },
                None => &[],
            },
            Inner::Large(s) => s.as_slice(),
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
    /// dropped, large-message fds queued, EOF noted. Returns `false` if
    /// nothing was there.
    fn handle(&mut self, r: Recv) -> Result<bool> {
        match r {
            Recv::Empty => return Ok(false),
            Recv::Eof => self.peer_eof = true,
            Recv::Msg(m) => match m.checked().map_err(|v| self.protocol(v))? {
                (Control::WakeData, _) => {}
                (Control::Large { seq, len }, mut fds) => {
                    if self.pending.len() >= MAX_PENDING_LARGE {
                        return Err(self.protocol(ProtocolViolation::TooManyFds));
                    }
                    if let Some(fd) = fds.pop() {
                        self.pending.push_back((seq, len, fd));
                    }
                }
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

    /// Sleeps until one control message (or the hang-up) arrives or the
    /// deadline passes (`false`); see [`Sender::wait_one`].
    fn wait_one(&mut self, deadline: Option<Instant>) -> Result<bool> {
        let blocking = deadline.is_none();
        if !blocking {
            match wait_readable(self.sock.as_fd(), deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(Error::io("poll", e)),
            }
        }
        let r =
            recv_control_with(self.sock.as_fd(), blocking).map_err(|e| sock_err("recvmsg", e))?;
        self.handle(r)?;
        Ok(true)
    }

    /// Waits until the ring has a record, per the wait strategy.
    fn wait_data(&mut self, deadline: Option<Instant>) -> Result<()> {
        let mut spinner = Spinner::new(self.wait);
        loop {
            if self.has_data()? {
                return Ok(());
            }
            if self.peer_eof {
                // Everything committed before the hang-up was in the ring
                // already (commit precedes close), and it is now empty.
                return Err(Error::Disconnected);
            }
            match spinner.step() {
                Step::Spin => {
                    std::hint::spin_loop();
                    continue;
                }
                Step::Check => {
                    if past(deadline) {
                        return Err(Error::Timeout);
                    }
                    self.drain()?;
                    continue;
                }
                Step::Park => {}
            }
            // SYNC POINT `park-dekker`, reader side (docs/design.md).
            self.cons.park();
            let ready = self.has_data();
            if !matches!(ready, Ok(false)) {
                self.cons.unpark();
                return ready.map(drop);
            }
            let woke = self.wait_one(deadline);
            self.cons.unpark();
            if !woke? {
                return Err(Error::Timeout);
            }
        }
    }

    /// Receives the next message, waiting per the wait strategy and the
    /// default timeout.
    ///
    /// # Errors
    /// [`Error::Disconnected`] once the peer is gone and everything it sent
    /// was received; [`Error::Timeout`]; [`Error::Protocol`].
    pub fn recv(&mut self) -> Result<Message<'_>> {
        if !self.has_data()? {
            // The timeout starts when we have to wait (no clock read on the
            // fast path).
            self.wait_data(deadline(self.timeout))?;
        }
        self.take()
    }

    /// [`Receiver::recv`] with an explicit timeout.
    ///
    /// # Errors
    /// As [`Receiver::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        self.wait_data(Some(Instant::now() + timeout))?;
        self.take()
    }

    /// Receives a message if one is ready, never blocking. When it returns
    /// `Ok(None)` it has armed the wake-up: the socket ([`AsFd`]) becomes
    /// readable as soon as the peer commits, so an event loop can sleep on
    /// it (see `docs/design.md`, "Readiness").
    ///
    /// # Errors
    /// As [`Receiver::recv`] (never [`Error::Timeout`]).
    pub fn try_recv(&mut self) -> Result<Option<Message<'_>>> {
        if !self.has_data()? {
            self.drain()?;
            if !self.has_data()? {
                if self.peer_eof {
                    return Err(Error::Disconnected);
                }
                self.cons.park();
                if !self.has_data()? {
                    return Ok(None);
                }
                self.cons.unpark();
            }
        }
        self.take().map(Some)
    }

    /// Takes the record at the head of the ring (which must exist).
    fn take(&mut self) -> Result<Message<'_>> {
        let pid = self.peer.pid;
        let (tag, len) = self
            .cons
            .peek()
            .map_err(|e| ring_err(pid, e))?
            .ok_or(Error::Config("take() without a record"))?;
        if tag == TAG_INLINE {
            if len as u64 > self.max_message {
                return Err(self.protocol(ProtocolViolation::BadLimit {
                    what: "inline message longer than our max_message",
                    value: len as u64,
                }));
            }
            let guard = self
                .cons
                .try_read()
                .map_err(|e| ring_err(pid, e))?
                .ok_or(Error::Config("take() without a record"))?;
            // Disjoint fields: the guard borrows `cons`, the message also
            // keeps the socket to wake a parked producer on release.
            return Ok(Message {
                inner: Inner::Ring {
                    guard: Some(guard),
                    sock: self.sock.as_fd(),
                },
            });
        }
        if tag != TAG_LARGE || len != 16 {
            return Err(self.protocol(ProtocolViolation::Large(
                "unknown record tag or announcement size",
            )));
        }
        let mut ann = [0u8; 16];
        if let Some(g) = self.cons.try_read().map_err(|e| ring_err(pid, e))? {
            g.copy_to(&mut ann);
            if g.release() {
                let _ = send_control(self.sock.as_fd(), &Control::WakeSpace, &[], true);
            }
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(&ann[..8]);
        let seq = u64::from_le_bytes(w);
        w.copy_from_slice(&ann[8..]);
        let size = u64::from_le_bytes(w);
        self.take_large(seq, size)
    }

    /// Matches a large-message announcement with its fd and maps it.
    fn take_large(&mut self, seq: u64, size: u64) -> Result<Message<'_>> {
        if seq != self.next_large {
            return Err(self.protocol(ProtocolViolation::Large("sequence number out of order")));
        }
        if size == 0 || size > self.max_message {
            return Err(self.protocol(ProtocolViolation::BadLimit {
                what: "large message length",
                value: size,
            }));
        }
        // The peer sends the fd before it commits the announcement, so it
        // is queued already: read until it shows up, never block.
        while self.pending.is_empty() {
            if self.drain()? == 0 {
                return Err(
                    self.protocol(ProtocolViolation::Large("announced memfd never arrived"))
                );
            }
        }
        let Some((pseq, plen, fd)) = self.pending.pop_front() else {
            return Err(self.protocol(ProtocolViolation::Large("announced memfd never arrived")));
        };
        if pseq != seq || plen != size {
            return Err(self.protocol(ProtocolViolation::Large(
                "memfd announcement does not match the ring record",
            )));
        }
        let seg = FrozenSegment::attach(fd, size, self.max_message)
            .map_err(|e| self.protocol(ProtocolViolation::BadMemfd(e)))?;
        self.next_large += 1;
        Ok(Message {
            inner: Inner::Large(seg),
        })
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
}

impl Connection {
    pub(crate) fn from_parts(p: Parts) -> Self {
        Connection {
            tx: Sender {
                prod: p.prod,
                sock: p.tx_sock,
                wait: p.wait,
                timeout: p.timeout,
                peer_max_message: p.peer_max_message,
                peer: p.peer,
                large_seq: 0,
                large_in_flight: VecDeque::new(),
                peer_gone: false,
                since_check: 0,
                armed: false,
            },
            rx: Receiver {
                cons: p.cons,
                sock: p.rx_sock,
                wait: p.wait,
                timeout: p.timeout,
                max_message: p.max_message,
                peer: p.peer,
                pending: VecDeque::new(),
                next_large: 0,
                peer_eof: false,
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
