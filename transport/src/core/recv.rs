//! The receiving half's non-blocking core: the peer's ring's consumer, the
//! socket its wake-ups and hang-up arrive on, and the reassembly of
//! fragmented messages. Never waits: [`RecvCore::poll_head`] says what the
//! head of the ring holds (or that it is empty), and the caller's policy
//! decides whether and how to wait.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use shmsock_shm::ring::{self, Consumer, RecordHead, WakeKind};

use crate::core::frag::Assembly;
use crate::core::{notify, Deadline, DRAIN_BUDGET};
use crate::error::{Error, ProtocolViolation, Result};
use crate::error_map::{protocol, ring_err, sock_err};
use crate::fdpass::{recv_control, Recv};
use crate::options::Credentials;
use crate::wire::{Control, FRAG_HEADER, TAG_FRAG, TAG_FRAG_ABORT, TAG_FRAG_START, TAG_INLINE};

/// Abandoned fragmented messages one receive call consumes before it calls
/// the peer a liar. A sender abandons a message only when its own send
/// timed out on a full ring, which cannot happen often while we consume;
/// without this bound a peer streaming start/abort pairs would keep a call
/// with no deadline (`try_recv`, `recv` without a timeout) busy forever.
/// With it, one call copies at most this many times `max_message`.
pub(crate) const MAX_ABORTS_PER_CALL: u32 = 8;

/// What the head of the ring holds once fragments are consumed.
/// A message read piece by piece ([`crate::MessageReader`]): its announced
/// length and the bytes taken from the ring so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stream {
    pub(crate) total: usize,
    pub(crate) got: usize,
}

/// What [`RecvCore::stream_next`] found.
pub(crate) enum StreamNext {
    /// The next piece, of this many bytes, is in the caller's buffer.
    Chunk(usize),
    /// The message is complete.
    End,
    /// The next fragment has not arrived yet.
    Empty,
}

/// What [`RecvCore::take_ready_inline_into`] did.
pub(crate) enum Ready {
    /// An inline message of this many bytes is in the caller's buffer.
    Taken(usize),
    /// Nothing is in progress and the ring is empty.
    Empty,
    /// Not the plain case: ask [`RecvCore::poll_head`].
    Other,
}

pub(crate) enum Head {
    /// An inline message, validated; take it with [`RecvCore::read_inline`].
    Inline(RecordHead),
    /// A message reassembled from fragments, in `RecvCore::assembled`.
    Whole,
    /// Nothing complete yet.
    Empty,
}

/// The peer's ring's consumer and its socket: the state of a receiving
/// half.
pub(crate) struct RecvCore {
    pub(crate) cons: Consumer,
    pub(crate) sock: OwnedFd,
    max_message: u64,
    pub(crate) peer: Credentials,
    /// The fragmented message being received, kept across calls that time
    /// out (or whose futures are dropped) in the middle of it.
    asm: Option<Assembly>,
    /// The last reassembled message (lent by the [`crate::Message`] that
    /// returns it), whose buffer the next one reuses: no allocation and no
    /// page faults per large message once it has grown. The peer can make
    /// it grow to `max_message` at most; a larger capacity can only come
    /// from the caller's own buffer, traded in by [`crate::Message::move_into`].
    /// Batches also copy each inline message here before lending it (never
    /// a view of the ring, which the peer can write).
    pub(crate) assembled: Vec<u8>,
    /// The message a [`crate::MessageReader`] is reading.
    pub(crate) stream: Option<Stream>,
    /// The rest of a message whose reader was dropped early: discarded
    /// before anything else is read.
    skip: Option<Stream>,
    /// Payload bytes of the last fragment taken: sizes a `Block`
    /// receiver's spin for the next one, so that a peer can keep us
    /// spinning only as long as its fragments' bytes take to copy.
    last_fragment: usize,
    /// A transport-level violation was seen; every later call fails.
    broken: bool,
    pub(crate) peer_eof: bool,
}

impl RecvCore {
    pub(crate) fn new(cons: Consumer, sock: OwnedFd, peer: Credentials, max_message: u64) -> Self {
        RecvCore {
            cons,
            sock,
            max_message,
            peer,
            asm: None,
            assembled: Vec::new(),
            stream: None,
            skip: None,
            last_fragment: 0,
            broken: false,
            peer_eof: false,
        }
    }

    fn protocol(&self, violation: ProtocolViolation) -> Error {
        protocol(self.peer.pid, violation)
    }

    /// Whether a fragmented message is being reassembled: its sender is
    /// writing the next fragment.
    pub(crate) fn assembling(&self) -> bool {
        self.asm.is_some()
    }

    /// Payload bytes of the last fragment taken (0 before the first).
    pub(crate) fn last_fragment(&self) -> usize {
        self.last_fragment
    }

    /// Whether the ring holds a record.
    pub(crate) fn has_data(&mut self) -> Result<bool> {
        let pid = self.peer.pid;
        self.cons.has_data().map_err(|e| ring_err(pid, e))
    }

    /// Handles one receive result on the receiver's socket: wake-ups are
    /// dropped, EOF noted, anything else is a violation. Returns `false` if
    /// nothing was there.
    pub(crate) fn handle(&mut self, r: Recv) -> Result<bool> {
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
    /// read; fewer than [`DRAIN_BUDGET`] means the socket was found empty
    /// or the peer hung up.
    pub(crate) fn drain(&mut self) -> Result<usize> {
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

    /// The head of the ring without waiting; if it is empty, arms the
    /// wake-up (parks, re-checks: the socket becomes readable when the peer
    /// commits) and returns [`Head::Empty`].
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the ring is empty and the peer is gone.
    pub(crate) fn try_head(&mut self, deadline: &mut Deadline) -> Result<Head> {
        let mut head = self.poll_head(deadline)?;
        if matches!(head, Head::Empty) {
            self.drain()?;
            head = self.poll_head(deadline)?;
        }
        if matches!(head, Head::Empty) {
            if self.peer_eof {
                return Err(Error::Disconnected);
            }
            // An event loop (or tokio) polls our socket: a socket wake-up.
            self.cons.park(WakeKind::Socket);
            head = self.poll_head(deadline)?;
            if matches!(head, Head::Empty) {
                return Ok(head);
            }
            self.cons.unpark();
        }
        Ok(head)
    }

    /// Consumes fragment records at the head of the ring until a message is
    /// ready or the ring is empty; never waits. Each record's header is
    /// loaded once ([`Consumer::peek_record`]) and every check applies to
    /// that copy, which [`Consumer::read`] then takes. The loop is fed by the
    /// peer, so it checks the call's deadline after every fragment.
    pub(crate) fn poll_head(&mut self, deadline: &mut Deadline) -> Result<Head> {
        if self.broken {
            return Err(self.protocol(ProtocolViolation::Poisoned));
        }
        // A reader leaked with `mem::forget` never ended its message.
        self.stream_end();
        if !self.skip_rest(deadline)? {
            return Ok(Head::Empty);
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
        self.last_fragment = n;
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
        // Best effort: a dead peer shows on the next wait.
        let _ = notify::wake_space(g.release(), self.sock.as_fd());
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

    /// The per-record receive: if nothing is in progress (no fragmented
    /// message, reader or skip, no violation) and the head of the ring is
    /// an inline message, takes it into `buf` as
    /// [`RecvCore::take_inline_into`] does and returns its length.
    /// [`Ready::Empty`]: the ring is empty (what `poll_head` would say).
    /// [`Ready::Other`]: anything else, for [`RecvCore::poll_head`] to deal
    /// with; a record found here is left unread but validated in
    /// the consumer ([`ring::ReadGuard::unread`]), so that call does not
    /// load its header again. The checks are `poll_head`'s for an inline
    /// record, on the one copy of the header the guard holds.
    #[inline]
    pub(crate) fn take_ready_inline_into(&mut self, buf: &mut Vec<u8>) -> Result<Ready> {
        if self.broken || self.asm.is_some() || self.stream.is_some() || self.skip.is_some() {
            return Ok(Ready::Other);
        }
        let max_message = self.max_message;
        let g = match self.cons.try_read() {
            Ok(Some(g)) => g,
            // What `poll_head` would say in this state.
            Ok(None) => return Ok(Ready::Empty),
            Err(e) => return Err(ring_err(self.peer.pid, e)),
        };
        if g.tag() != TAG_INLINE || g.len() as u64 > max_message {
            // `poll_head` takes it from here, with this copy of its header.
            g.unread();
            return Ok(Ready::Other);
        }
        buf.clear();
        g.append_to(0, buf);
        let wake = g.release();
        // Nothing owed (a busy stream): no redeeming call per message.
        if wake.is_owed() {
            // Best effort: a dead peer shows on the next wait.
            let _ = notify::wake_space(wake, self.sock.as_fd());
        }
        Ok(Ready::Taken(buf.len()))
    }

    /// Takes the inline record `head` (from [`RecvCore::poll_head`]): its
    /// read guard, and the socket to wake a parked producer on release.
    #[inline]
    pub(crate) fn read_inline(
        &mut self,
        head: RecordHead,
    ) -> Result<(ring::ReadGuard<'_>, BorrowedFd<'_>)> {
        let pid = self.peer.pid;
        // Disjoint fields: the guard borrows `cons`, the socket `sock`.
        let guard = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        Ok((guard, self.sock.as_fd()))
    }

    /// Takes the inline record `head` (from [`RecvCore::poll_head`]) into
    /// `buf` (cleared first) and releases it: [`crate::Message::move_into`]
    /// of an inline message, without the `Message`. Returns its length.
    #[inline]
    pub(crate) fn take_inline_into(
        &mut self,
        head: RecordHead,
        buf: &mut Vec<u8>,
    ) -> Result<usize> {
        let pid = self.peer.pid;
        let g = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        buf.clear();
        g.append_to(0, buf);
        let wake = g.release();
        // Nothing owed (a busy stream): no redeeming call per message.
        if wake.is_owed() {
            // Best effort: a dead peer shows on the next wait.
            let _ = notify::wake_space(wake, self.sock.as_fd());
        }
        Ok(buf.len())
    }

    /// Hands up to `max` messages, from `first` on, to `f` with one release
    /// of their ring space (one cursor store, at most one wake-up). A
    /// message larger than one record ends the batch unless it is `first`.
    /// Returns how many `f` was given (0 for [`Head::Empty`]).
    pub(crate) fn take_batch(
        &mut self,
        first: Head,
        max: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<usize> {
        let head = match first {
            Head::Empty => return Ok(0),
            Head::Whole => {
                f(&self.assembled);
                return Ok(1);
            }
            Head::Inline(h) => h,
        };
        let pid = self.peer.pid;
        let max_message = self.max_message;
        let mut g = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        let mut n = 0;
        loop {
            // No fragmented message is being assembled (the head was
            // inline), so the reassembly buffer is free to hold the copy.
            self.assembled.clear();
            g.append_to(0, &mut self.assembled);
            // Handed back below, with the whole batch.
            g.release_deferred();
            f(&self.assembled);
            n += 1;
            if n == max {
                break;
            }
            // The next inline message, if one is ready, checked on the
            // guard's copy of its header. Anything else (an empty ring, a
            // fragment, an error, which poisons the ring and so lasts) ends
            // the batch; the next call deals with it (a record left
            // `unread` keeps its validated copy for that call).
            match self.cons.try_read() {
                Ok(Some(next)) if next.tag() == TAG_INLINE && next.len() as u64 <= max_message => {
                    g = next;
                }
                Ok(Some(other)) => {
                    other.unread();
                    break;
                }
                _ => break,
            }
        }
        let wake = self.cons.flush_releases();
        if wake.is_owed() {
            // Best effort: a dead peer shows on the next wait.
            let _ = notify::wake_space(wake, self.sock.as_fd());
        }
        Ok(n)
    }

    /// Takes the head record, which must be a fragment of the message
    /// `st` is reading: its payload goes into `buf` (`keep`) or nowhere.
    /// Returns the fragment's length, `None` if the ring is empty; an
    /// abort record ends the message with [`Error::Abandoned`].
    fn take_stream_fragment(
        &mut self,
        st: &mut Stream,
        buf: Option<&mut Vec<u8>>,
    ) -> Result<Option<usize>> {
        let pid = self.peer.pid;
        let Some(head) = self.cons.peek_record().map_err(|e| ring_err(pid, e))? else {
            return Ok(None);
        };
        let n = head.len();
        let bad = match head.tag() {
            TAG_FRAG if n == 0 => Some("empty fragment"),
            TAG_FRAG if n > st.total - st.got => Some("fragment runs past the message's length"),
            TAG_FRAG => None,
            TAG_FRAG_ABORT if n == 0 => None,
            TAG_FRAG_ABORT => Some("abort record with a payload"),
            _ => Some("record tag unknown or out of place"),
        };
        if let Some(what) = bad {
            return Err(self.fail(ProtocolViolation::Fragment(what)));
        }
        let g = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        self.last_fragment = n;
        if let Some(buf) = buf {
            buf.clear();
            g.append_to(0, buf);
        }
        // Best effort: a dead peer shows on the next wait.
        let _ = notify::wake_space(g.release(), self.sock.as_fd());
        if head.tag() == TAG_FRAG_ABORT {
            return Err(Error::Abandoned);
        }
        st.got += n;
        Ok(Some(n))
    }

    /// Discards what is left of a message whose reader was dropped early.
    /// Returns whether nothing is left to discard (`false`: its next
    /// fragment has not arrived yet). Bounded by the message's length and
    /// by the call's deadline.
    fn skip_rest(&mut self, deadline: &mut Deadline) -> Result<bool> {
        while let Some(mut st) = self.skip.take() {
            if st.got == st.total {
                break;
            }
            match self.take_stream_fragment(&mut st, None) {
                Ok(Some(_)) => self.skip = Some(st),
                Ok(None) => {
                    self.skip = Some(st);
                    return Ok(false);
                }
                // The sender abandoned it: nothing left to skip.
                Err(Error::Abandoned) => break,
                Err(e) => return Err(e),
            }
            if deadline.passed() {
                return Err(Error::Timeout);
            }
        }
        Ok(true)
    }

    /// Starts reading the next message piece by piece: its first piece
    /// goes into `buf` (a message that a timed-out `recv` left half
    /// reassembled hands over what it has). `None` if no message has
    /// started yet.
    pub(crate) fn stream_start(
        &mut self,
        deadline: &mut Deadline,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Stream>> {
        if self.broken {
            return Err(self.protocol(ProtocolViolation::Poisoned));
        }
        // A reader leaked with `mem::forget` never ended its message.
        self.stream_end();
        if !self.skip_rest(deadline)? {
            return Ok(None);
        }
        if let Some(a) = self.asm.take() {
            let (total, mut got) = a.into_parts();
            std::mem::swap(buf, &mut got);
            let st = Stream {
                total,
                got: buf.len(),
            };
            self.stream = Some(st);
            return Ok(Some(st));
        }
        let pid = self.peer.pid;
        let max_message = self.max_message;
        let Some(head) = self.cons.peek_record().map_err(|e| ring_err(pid, e))? else {
            return Ok(None);
        };
        let n = head.len();
        let (skip, total) = match head.tag() {
            TAG_INLINE if n as u64 > max_message => {
                return Err(self.fail(ProtocolViolation::BadLimit {
                    what: "inline message longer than our max_message",
                    value: n as u64,
                }))
            }
            TAG_INLINE => (0, n),
            TAG_FRAG_START if n < FRAG_HEADER => {
                return Err(self.fail(ProtocolViolation::Fragment(
                    "first fragment shorter than its header",
                )))
            }
            TAG_FRAG_START => (FRAG_HEADER, 0),
            _ => {
                return Err(self.fail(ProtocolViolation::Fragment(
                    "record tag unknown or out of place",
                )))
            }
        };
        let g = self.cons.read(head).map_err(|e| ring_err(pid, e))?;
        self.last_fragment = n;
        let total = if skip == 0 {
            Ok(total)
        } else {
            let mut word = [0u8; FRAG_HEADER];
            g.copy_to(&mut word);
            let announced = u64::from_le_bytes(word);
            let first = n - FRAG_HEADER;
            if announced <= first as u64 {
                Err("fragmented message no longer than its first fragment")
            } else if announced > max_message {
                Err("fragmented message longer than our max_message")
            } else {
                usize::try_from(announced).map_err(|_| "fragmented message length overflows")
            }
        };
        if total.is_ok() {
            buf.clear();
            g.append_to(skip, buf);
        }
        // Best effort: a dead peer shows on the next wait.
        let _ = notify::wake_space(g.release(), self.sock.as_fd());
        let total = total.map_err(|what| self.fail(ProtocolViolation::Fragment(what)))?;
        let st = Stream {
            total,
            got: buf.len(),
        };
        self.stream = Some(st);
        Ok(Some(st))
    }

    /// The next piece of the message [`RecvCore::stream_start`] started,
    /// into `buf`.
    pub(crate) fn stream_next(&mut self, buf: &mut Vec<u8>) -> Result<StreamNext> {
        let Some(mut st) = self.stream.take() else {
            return Ok(StreamNext::End);
        };
        if st.got == st.total {
            return Ok(StreamNext::End);
        }
        let r = self.take_stream_fragment(&mut st, Some(buf));
        if let Ok(Some(_) | None) = r {
            self.stream = Some(st);
        }
        Ok(match r? {
            Some(n) => StreamNext::Chunk(n),
            None => StreamNext::Empty,
        })
    }

    /// Ends the reading of a message: what its reader left unread is
    /// discarded before the next message.
    pub(crate) fn stream_end(&mut self) {
        if let Some(st) = self.stream.take() {
            if st.got < st.total {
                self.skip = Some(st);
            }
        }
    }

    /// Records a violation: this receiver refuses every later call.
    fn fail(&mut self, violation: ProtocolViolation) -> Error {
        self.broken = true;
        self.asm = None;
        self.stream = None;
        self.skip = None;
        self.protocol(violation)
    }

    /// Marks the peer's ring closed on our side (advisory). Done on drop.
    fn close(&mut self) {
        // Best effort: if the peer is gone it no longer waits.
        let _ = notify::wake_space(self.cons.close(), self.sock.as_fd());
    }
}

impl std::fmt::Debug for RecvCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvCore")
            .field("peer", &self.peer)
            .field("ring", &self.cons)
            .finish()
    }
}

impl Drop for RecvCore {
    fn drop(&mut self) {
        self.close();
    }
}
