//! A subscriber's half: the publisher's data segment mapped read-only, and
//! the subscriber's own cursor segment.

use std::cell::Cell;
#[cfg(not(loom))]
use std::ffi::CStr;
use std::marker::PhantomData;
#[cfg(not(loom))]
use std::os::fd::OwnedFd;
#[cfg(not(loom))]
use std::ptr::NonNull;
#[cfg(loom)]
use std::sync::Arc;

use super::layout::{fanout_max_record_len, record_size, CursorHeader, FanoutHeader};
#[cfg(not(loom))]
use super::layout::{
    fanout_segment_size, CURSOR_MAGIC, CURSOR_SEGMENT_SIZE, FANOUT_HEADER_SIZE, FANOUT_MAGIC,
    FANOUT_VERSION,
};
use super::layout::{FANOUT_RECORD_HEADER, FLAG_PAD, PAD_HEADER};
use super::Policy;
use crate::error::{Error, Result, Violation};
use crate::ring::data::Data;
use crate::ring::ParkSeq;
#[cfg(not(loom))]
use crate::ring::{check_capacity, MAX_CAPACITY};
use crate::sync::{fence, Ordering};
#[cfg(not(loom))]
use crate::{Segment, SegmentOptions};

/// How many times one [`FanoutReader::try_recv`] re-synchronises after
/// being lapped before it gives up for this call (`Ok(None)`): bounds the
/// work a publisher that laps us continuously (or lies) can make one call
/// do.
const MAX_RESYNC: u32 = 16;

/// Creates a subscriber's cursor segment: a sealed one-page memfd whose
/// cursor starts at `start` (the position the publisher told us). Its fd
/// goes to the publisher, which maps it read-only.
///
/// # Errors
/// [`Error::Io`] if the memfd cannot be made.
#[cfg(not(loom))]
pub fn create_cursor_segment(name: &CStr, start: u64) -> Result<Segment> {
    let seg = Segment::create(name, CURSOR_SEGMENT_SIZE, SegmentOptions::default())?;
    // SAFETY: the segment is page-aligned, CURSOR_SEGMENT_SIZE bytes (more
    // than the header) and writable (we created it); atomics only.
    let h = unsafe { &*seg.as_ptr().cast::<CursorHeader>() };
    // Relaxed: the publisher sees these only after the fd crosses the
    // socket, which orders them.
    h.cursor.store(start, Ordering::Relaxed);
    h.reader_park.store(0, Ordering::Relaxed);
    h.version.store(FANOUT_VERSION, Ordering::Relaxed);
    h.magic.store(CURSOR_MAGIC, Ordering::Relaxed);
    Ok(seg)
}

/// One message taken by [`FanoutReader::try_recv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The message's sequence number (the publisher's count of messages
    /// before it).
    pub seq: u64,
    /// Messages lost just before this one (lapped under
    /// [`Policy::DropOldest`]); always 0 under [`Policy::Block`].
    pub lost: u64,
    /// Payload length (the bytes are in the caller's buffer).
    pub len: usize,
    /// Whether the publisher is parked waiting for space and must be woken
    /// by the caller (Block only).
    pub wake_publisher: bool,
}

/// The reading half of a fan-out ring. `Send` but not `Sync`.
pub struct FanoutReader {
    #[cfg(not(loom))]
    _data_seg: Segment,
    #[cfg(not(loom))]
    hdr: NonNull<FanoutHeader>,
    /// Under loom the publisher's header is a heap value it shares.
    #[cfg(loom)]
    hdr: Arc<FanoutHeader>,
    data: Data,
    #[cfg(not(loom))]
    cur_seg: Segment,
    /// Under loom our cursor header is a heap value shared with the
    /// publisher's [`CursorView`](super::CursorView).
    #[cfg(loom)]
    cur: Arc<CursorHeader>,
    cap: u64,
    mask: u64,
    policy: Policy,
    /// Our cursor: start of the next record to read.
    pos: u64,
    /// Sequence number the record at `pos` must carry (unless lapped).
    expected_seq: u64,
    /// Last validated `tail`.
    cached_tail: u64,
    /// Set when we re-synchronised after being lapped: the next record's
    /// sequence number may be ahead of `expected_seq` (by the loss).
    resynced: bool,
    poisoned: bool,
    park_seq: ParkSeq,
    writer_woken: u64,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the pointers target the two segments the value owns; `!Sync`.
unsafe impl Send for FanoutReader {}

impl std::fmt::Debug for FanoutReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutReader")
            .field("capacity", &self.cap)
            .field("policy", &self.policy)
            .field("pos", &self.pos)
            .field("expected_seq", &self.expected_seq)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl FanoutReader {
    /// Attaches to a publisher's data segment `data` (checked: memfd,
    /// sealed, write-sealed, exactly the size of a `capacity`-byte ring,
    /// fully allocated; mapped read-only), whose header must agree with
    /// `capacity` and `policy` (what the handshake said), reading from
    /// `start` with sequence number `start_seq`, keeping our cursor in
    /// `cursor` (made by [`create_cursor_segment`] with the same `start`).
    ///
    /// # Errors
    /// The segment checks of [`Segment::attach_read_only`] ([`Error::NotMemfd`],
    /// [`Error::MissingSeals`], [`Error::WrongSize`], ...);
    /// [`Error::BadCapacity`]; [`Error::ReadOnly`] if `cursor` is not
    /// ours; [`Error::Protocol`] if the header disagrees.
    #[cfg(not(loom))]
    pub fn attach(
        data: OwnedFd,
        capacity: u64,
        policy: Policy,
        cursor: Segment,
        start: u64,
        start_seq: u64,
    ) -> Result<Self> {
        check_capacity(capacity)?;
        if !cursor.is_writable() || cursor.len() as u64 != CURSOR_SEGMENT_SIZE {
            return Err(Error::ReadOnly { half: "consumer" });
        }
        let size = fanout_segment_size(capacity);
        let seg = Segment::attach_read_only(data, size, fanout_segment_size(MAX_CAPACITY))?;
        let base = seg.as_ptr();
        let hdr = NonNull::new(base.cast::<FanoutHeader>()).ok_or(Violation::BadGeometry {
            what: "null data segment",
        })?;
        // SAFETY: the mapping is `size` > FANOUT_HEADER_SIZE bytes and
        // page-aligned (checked by attach); atomics only, only loaded.
        let h = unsafe { hdr.as_ref() };
        // Relaxed: configuration, ordered by the fd transfer; each word
        // loaded once and checked.
        let magic = h.magic.load(Ordering::Relaxed);
        let version = h.version.load(Ordering::Relaxed);
        let header_size = h.header_size.load(Ordering::Relaxed);
        let cap = h.capacity.load(Ordering::Relaxed);
        let pol = h.policy.load(Ordering::Relaxed);
        if magic != FANOUT_MAGIC {
            return Err(Violation::BadMagic {
                found: magic,
                expected: FANOUT_MAGIC,
            }
            .into());
        }
        if version != FANOUT_VERSION {
            return Err(Violation::BadVersion {
                found: version,
                expected: FANOUT_VERSION,
            }
            .into());
        }
        if header_size as usize != FANOUT_HEADER_SIZE || cap != capacity {
            return Err(Violation::BadGeometry {
                what: "fan-out header disagrees with the handshake",
            }
            .into());
        }
        if Policy::from_code(pol) != Some(policy) {
            return Err(Violation::BadGeometry {
                what: "fan-out policy disagrees with the handshake",
            }
            .into());
        }
        if !start.is_multiple_of(8) {
            return Err(Violation::Misaligned { value: start }.into());
        }
        // SAFETY: FANOUT_HEADER_SIZE + capacity == mapping size (checked by
        // attach), 8-aligned; only read through (the mapping is read-only).
        let data = unsafe { Data::new(base.add(FANOUT_HEADER_SIZE)) };
        let r = FanoutReader {
            _data_seg: seg,
            hdr,
            data,
            cur_seg: cursor,
            cap,
            mask: cap - 1,
            policy,
            pos: start,
            expected_seq: start_seq,
            cached_tail: start,
            resynced: false,
            poisoned: false,
            park_seq: ParkSeq::default(),
            writer_woken: 0,
            _not_sync: PhantomData,
        };
        r.store_cursor();
        Ok(r)
    }

    /// A reader over the loom-modelled memory of a writer (see
    /// [`FanoutWriter::loom_subscribe`](super::FanoutWriter::loom_subscribe)),
    /// in the state `attach` leaves it in.
    #[cfg(loom)]
    #[allow(clippy::too_many_arguments)] // mirrors `attach`, plus the shared words
    pub(crate) fn new_loom(
        hdr: Arc<FanoutHeader>,
        data: Data,
        cur: Arc<CursorHeader>,
        cap: u64,
        policy: Policy,
        start: u64,
        start_seq: u64,
    ) -> Self {
        let r = FanoutReader {
            hdr,
            data,
            cur,
            cap,
            mask: cap - 1,
            policy,
            pos: start,
            expected_seq: start_seq,
            cached_tail: start,
            resynced: false,
            poisoned: false,
            park_seq: ParkSeq::default(),
            writer_woken: 0,
            _not_sync: PhantomData,
        };
        r.store_cursor();
        r
    }

    fn hdr(&self) -> &FanoutHeader {
        #[cfg(not(loom))]
        // SAFETY: see `attach`; the mapping lives as long as `self`.
        return unsafe { self.hdr.as_ref() };
        #[cfg(loom)]
        return &self.hdr;
    }

    pub(crate) fn cur(&self) -> &CursorHeader {
        #[cfg(not(loom))]
        // SAFETY: our own cursor segment: page-aligned, CURSOR_SEGMENT_SIZE
        // bytes (checked in attach), writable, alive while `self` is;
        // atomics only.
        return unsafe { &*self.cur_seg.as_ptr().cast::<CursorHeader>() };
        #[cfg(loom)]
        return &self.cur;
    }

    /// The cursor segment's fd, to pass to the publisher.
    #[cfg(not(loom))]
    pub fn cursor_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.cur_seg.fd()
    }

    /// The policy of the ring.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Largest payload a valid record can carry.
    pub fn max_record_len(&self) -> usize {
        fanout_max_record_len(self.cap) as usize
    }

    /// Our read position in the publisher's byte stream.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Sequence number we expect next.
    pub fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    fn store_cursor(&self) {
        // SYNC POINT `fanout-released`: Release orders our copies of every
        // record before `pos` before the store; pairs with the Acquire
        // fence after the publisher's load in `CursorView::load`. Our own
        // word.
        self.cur().cursor.store(self.pos, Ordering::Release);
    }

    fn poison(&mut self, v: Violation) -> Error {
        self.poisoned = true;
        Error::Protocol(v)
    }

    /// Loads `tail` once and checks it: aligned, never backwards.
    fn refresh_tail(&mut self) -> Result<u64> {
        // SYNC POINT `fanout-published`: the Acquire fence after this
        // Relaxed load (read-only mapping) pairs with the Release store of
        // `tail` in `FanoutGrant::publish`.
        let tail = self.hdr().tail.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if !tail.is_multiple_of(8) {
            return Err(self.poison(Violation::Misaligned { value: tail }));
        }
        if tail < self.cached_tail {
            let prev = self.cached_tail;
            return Err(self.poison(Violation::TailBackwards { prev, now: tail }));
        }
        self.cached_tail = tail;
        Ok(tail)
    }

    /// Jumps to the publisher's `oldest` intact record after being lapped
    /// (DropOldest). `Ok(false)` if the publisher's words were not
    /// consistent yet (it kept lapping us): try again.
    fn resync(&mut self) -> Result<bool> {
        // Relaxed + Acquire fence: SYNC POINT `overwrite-intent` (the
        // Release store of `intent` orders `oldest` before it).
        let intent = self.hdr().intent.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let oldest = self.hdr().oldest.load(Ordering::Relaxed);
        let tail = self.refresh_tail()?;
        if !oldest.is_multiple_of(8) {
            return Err(self.poison(Violation::Misaligned { value: oldest }));
        }
        if oldest <= self.pos {
            // An honest publisher's `oldest` is past every position it
            // announced overwriting, and we only resync once it did.
            let (head, tail) = (oldest, tail);
            return Err(self.poison(Violation::HeadBeyondTail { head, tail }));
        }
        if oldest > tail || tail - oldest > self.cap || oldest < intent.saturating_sub(self.cap) {
            // Stale pair: the publisher moved on between our loads.
            return Ok(false);
        }
        self.pos = oldest;
        self.resynced = true;
        Ok(true)
    }

    /// Copies the next message into `out` (replacing its contents) and
    /// advances our cursor. `Ok(None)` if there is nothing to read now.
    ///
    /// Under [`Policy::DropOldest`] the bytes are copied first and trusted
    /// only if `intent` shows that the publisher did not start overwriting
    /// them meanwhile; otherwise we were lapped: we jump to the oldest
    /// intact record, and its sequence number tells how many were lost
    /// ([`Delivery::lost`]).
    ///
    /// # Errors
    /// [`Error::Protocol`] if the publisher wrote an invalid cursor, record
    /// or sequence number (poisoned); [`Error::Poisoned`] afterwards;
    /// [`Error::Closed`] once the publisher closed and everything it
    /// published was read.
    pub fn try_recv(&mut self, out: &mut Vec<u8>) -> Result<Option<Delivery>> {
        match self.next_record(Some(out))? {
            None => Ok(None),
            Some(f) => Ok(Some(self.take(f))),
        }
    }

    /// The next message, read in place (zero copy): a guard over the record
    /// in the publisher's ring, which stays there until the guard is
    /// released (dropped). [`Policy::Block`] only: under DropOldest the
    /// publisher may overwrite a record while it is being read, so only
    /// [`FanoutReader::try_recv`] (copy, then check) is offered.
    ///
    /// # Errors
    /// [`Error::WrongPolicy`] under DropOldest; otherwise as
    /// [`FanoutReader::try_recv`].
    pub fn try_read(&mut self) -> Result<Option<FanoutSample<'_>>> {
        if self.policy != Policy::Block {
            return Err(Error::WrongPolicy(
                "in-place reads need Policy::Block (DropOldest readers copy, then check)",
            ));
        }
        Ok(self.next_record(None)?.map(|found| FanoutSample {
            r: self,
            found,
            released: false,
        }))
    }

    /// Whether a message is ready (`tail` past our cursor).
    ///
    /// # Errors
    /// As [`FanoutReader::try_recv`].
    pub fn has_data(&mut self) -> Result<bool> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.pos != self.cached_tail || self.refresh_tail()? != self.pos {
            return Ok(true);
        }
        self.check_closed()?;
        Ok(false)
    }

    /// At `tail`: [`Error::Closed`] if the publisher closed (and nothing
    /// was published after our last look).
    fn check_closed(&mut self) -> Result<()> {
        // SYNC POINT `fanout-closed`: Acquire fence after the Relaxed load
        // pairs with the Release store in `close`.
        let closed = self.hdr().closed.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if closed != 0 && self.refresh_tail()? == self.pos {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Takes a found record: advances our cursor past it (stored for the
    /// publisher) and says whether the publisher must be woken.
    fn take(&mut self, f: Found) -> Delivery {
        self.resynced = false;
        self.expected_seq = f.seq.wrapping_add(1);
        self.pos += f.size;
        self.store_cursor();
        let wake_publisher = self.policy == Policy::Block && self.writer_wake_owed();
        Delivery {
            seq: f.seq,
            lost: f.lost,
            len: f.len,
            wake_publisher,
        }
    }

    /// Finds and validates the next data record (skipping padding, and
    /// re-synchronising after a lap under DropOldest), copying its payload
    /// into `out` if given. Does not advance past it.
    fn next_record(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<Option<Found>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let mut resyncs = 0;
        loop {
            if self.pos == self.cached_tail && self.refresh_tail()? == self.pos {
                self.check_closed()?;
                return Ok(None);
            }
            let pos = self.pos;
            let avail = self.cached_tail - pos;
            if avail > self.cap {
                // Lapped: the publisher wrote more than a ring past us.
                if self.policy == Policy::Block {
                    let (tail, head, capacity) = (self.cached_tail, pos, self.cap);
                    return Err(self.poison(Violation::TailBeyondCapacity {
                        tail,
                        head,
                        capacity,
                    }));
                }
                resyncs += 1;
                if resyncs > MAX_RESYNC {
                    return Ok(None);
                }
                self.resync()?;
                continue;
            }
            let step = self.locate(pos, avail);
            if let (Ok(Step::Msg { off, len, .. }), Some(out)) = (&step, out.as_deref_mut()) {
                self.copy_out(*off, *len, out);
            }
            // SYNC POINT `overwrite-intent` (reader side): the Acquire
            // fence orders our reads above (header, payload copy) before
            // this load. If they saw any byte the publisher wrote after
            // announcing an intent, the publisher's Release fence
            // synchronises with ours and we see that intent (or a later
            // one) here. Under Block an honest publisher never laps us
            // while we are subscribed; it does after evicting us, and the
            // check keeps us from delivering what it overwrote.
            fence(Ordering::Acquire);
            let intent = self.hdr().intent.load(Ordering::Relaxed);
            // Every byte we read lies at a position >= pos; the publisher
            // overwrites position q - cap when it writes q < intent.
            // Nothing we read was overwritten iff intent - cap <= pos.
            if intent > pos + self.cap {
                if self.policy == Policy::Block {
                    let capacity = self.cap;
                    return Err(self.poison(Violation::TailBeyondCapacity {
                        tail: intent,
                        head: pos,
                        capacity,
                    }));
                }
                resyncs += 1;
                if resyncs > MAX_RESYNC {
                    return Ok(None);
                }
                self.resync()?;
                continue;
            }
            match step {
                Err(v) => return Err(self.poison(v)),
                Ok(Step::Skip(n)) => {
                    self.pos += n;
                    continue;
                }
                Ok(Step::Msg {
                    seq,
                    off,
                    len,
                    size,
                }) => {
                    let ok = if self.resynced {
                        seq >= self.expected_seq
                    } else {
                        seq == self.expected_seq
                    };
                    if !ok {
                        let expected = self.expected_seq;
                        return Err(self.poison(Violation::BadSequence {
                            pos,
                            expected,
                            found: seq,
                        }));
                    }
                    return Ok(Some(Found {
                        seq,
                        lost: seq - self.expected_seq,
                        pos,
                        off,
                        len,
                        size,
                    }));
                }
            }
        }
    }

    /// Whether the record at `pos` may have been overwritten since it was
    /// published (the publisher announced writing a ring past it).
    fn overwritten(&self, pos: u64) -> bool {
        // SYNC POINT `overwrite-intent` (reader side), as in `next_record`.
        fence(Ordering::Acquire);
        self.hdr().intent.load(Ordering::Relaxed) > pos + self.cap
    }

    /// Validates the record header at `pos`, `avail` bytes before `tail`
    /// (each word loaded once). Under DropOldest the result is only trusted
    /// after the caller's `intent` check.
    fn locate(&self, pos: u64, avail: u64) -> Result<Step, Violation> {
        let off = pos & self.mask;
        let to_end = self.cap - off;
        let word = self.data.load_word(off as usize);
        let (len, flags) = (word as u32, (word >> 32) as u32);
        let bad = |what| Violation::BadRecord {
            pos,
            len,
            flags,
            what,
        };
        if flags == FLAG_PAD {
            if u64::from(len) + PAD_HEADER != to_end {
                return Err(bad("padding record does not end the data area"));
            }
            if to_end >= avail {
                return Err(bad("padding record not followed by a record"));
            }
            return Ok(Step::Skip(to_end));
        }
        if flags != 0 {
            return Err(bad("flag bits set in a data record"));
        }
        if u64::from(len) > fanout_max_record_len(self.cap) {
            return Err(bad("length exceeds the ring's record limit"));
        }
        let size = record_size(u64::from(len));
        if size > to_end {
            return Err(bad("record crosses the end of the data area"));
        }
        if size > avail {
            return Err(bad("record extends past the publisher's tail"));
        }
        Ok(Step::Msg {
            seq: self.data.load_word(off as usize + 8),
            off: off as usize + FANOUT_RECORD_HEADER as usize,
            len: len as usize,
            size,
        })
    }

    /// Copies `len` payload bytes at data offset `off` into `out`
    /// (replacing its contents). `off + len` must lie in the data area (as
    /// `locate` checked).
    #[cfg(not(loom))]
    fn copy_out(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(len);
        let src = self.data.ptr(off);
        // SAFETY: `off + len <= cap` (the record was checked to end before
        // the end of the data area in `locate`), so the source is in the
        // mapping; `reserve` made room for `len` bytes in `out`, private
        // memory, so the ranges cannot overlap. The publisher may be
        // overwriting the source (DropOldest, lapped): we then copy
        // garbage, never out of bounds, and the caller's `intent` check
        // discards it.
        unsafe { src.copy_to_nonoverlapping(out.as_mut_ptr(), len) };
        // SAFETY: the `len` bytes were initialised just above.
        unsafe { out.set_len(len) };
    }

    /// Under loom: the same copy, word by word through the data area's
    /// loom atomics (`Relaxed`), so that a stale or torn copy shows up.
    #[cfg(loom)]
    fn copy_out(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        out.clear();
        out.resize(len, 0);
        // SAFETY: `off + len <= cap` (checked in `locate`), `off` is 8-aligned
        // (a record's payload offset); under loom the copy is safe code.
        unsafe { self.data.copy_out(off, out) };
    }

    /// After a cursor store: whether the publisher is parked in an episode
    /// we have not woken, once at most half the ring is unread by us
    /// (hysteresis, as the SPSC ring).
    fn writer_wake_owed(&mut self) -> bool {
        // SYNC POINT `fanout-park` (subscriber wakes): SeqCst fence between
        // our cursor store and the load of `writer_park`; pairs with the
        // fence in `FanoutWriter::park`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence; loaded once, not validated (a lie
        // costs the publisher its own wake-up).
        let p = self.hdr().writer_park.load(Ordering::Relaxed);
        if p.is_multiple_of(2) || p == self.writer_woken {
            return false;
        }
        // Relaxed: only steers the hysteresis decision.
        let used = self
            .hdr()
            .tail
            .load(Ordering::Relaxed)
            .wrapping_sub(self.pos);
        if used > self.cap / 2 && used <= self.cap {
            return false;
        }
        self.writer_woken = p;
        true
    }

    /// Marks us parked (about to sleep): a new odd `reader_park` value,
    /// then the SeqCst fence of SYNC POINT `fanout-park`. Re-check with
    /// [`FanoutReader::try_recv`] and only sleep if it finds nothing.
    pub fn park(&self) {
        // The fan-out ring wakes through its socket, with ordinary fences.
        self.park_seq.park(
            &self.cur().reader_park,
            crate::ring::WakeKind::Socket,
            crate::ring::Fences::Symmetric,
        );
    }

    /// Ends our park episode.
    pub fn unpark(&self) {
        self.park_seq.unpark(&self.cur().reader_park);
    }

    /// Whether a violation poisoned this reader.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

enum Step {
    Skip(u64),
    Msg {
        seq: u64,
        off: usize,
        len: usize,
        size: u64,
    },
}

/// A validated record at our cursor, not taken yet.
#[derive(Debug, Clone, Copy)]
struct Found {
    seq: u64,
    lost: u64,
    /// Stream position of the record.
    pos: u64,
    /// Data-area offset of the payload.
    off: usize,
    len: usize,
    size: u64,
}

/// A message read in place by [`FanoutReader::try_read`] (Block only). The
/// record stays in the publisher's ring, unread as far as the publisher
/// knows, until the sample is [released](FanoutSample::release) or dropped.
///
/// The bytes lie in memory the publisher can write: an honest publisher
/// under Block does not overwrite them while the sample lives, unless it
/// evicted this subscriber. So the safe accessors copy and then check
/// ([`FanoutSample::copy_to`]); borrowing in place is `unsafe`
/// ([`FanoutSample::as_slice_unchecked`]), and [`FanoutSample::is_intact`]
/// tells afterwards whether what was borrowed may have changed.
pub struct FanoutSample<'a> {
    r: &'a mut FanoutReader,
    found: Found,
    released: bool,
}

impl std::fmt::Debug for FanoutSample<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutSample")
            .field("seq", &self.found.seq)
            .field("len", &self.found.len)
            .finish()
    }
}

impl FanoutSample<'_> {
    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.found.seq
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.found.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.found.len == 0
    }

    /// Raw pointer to the payload (read-only mapping), valid for `len()`
    /// bytes while the sample lives.
    #[cfg(not(loom))]
    pub fn as_ptr(&self) -> *const u8 {
        self.r.data.ptr(self.found.off)
    }

    /// Whether the publisher has not announced overwriting this record
    /// yet: if true after a read of the bytes, the read saw them as
    /// published (SYNC POINT `overwrite-intent`).
    pub fn is_intact(&self) -> bool {
        !self.r.overwritten(self.found.pos)
    }

    /// Copies the first `dst.len().min(self.len())` payload bytes into
    /// `dst`, then checks that they were not overwritten meanwhile.
    ///
    /// # Errors
    /// [`Error::Protocol`] (`TailBeyondCapacity`) if the publisher
    /// overwrote the record while we copied (it evicted us, or lies).
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<usize> {
        let n = dst.len().min(self.found.len);
        #[cfg(not(loom))]
        // SAFETY: the payload lies in the data area (checked by `locate`)
        // and `n <= len`; `dst` is private memory. A publisher that
        // overwrites meanwhile makes us copy garbage, never out of bounds;
        // the check below reports it.
        unsafe {
            self.as_ptr().copy_to_nonoverlapping(dst.as_mut_ptr(), n)
        };
        #[cfg(loom)]
        // SAFETY: as above (in bounds, 8-aligned payload offset); under
        // loom the copy is word by word through loom atomics.
        unsafe {
            self.r.data.copy_out(self.found.off, &mut dst[..n])
        };
        if !self.is_intact() {
            return Err(Violation::TailBeyondCapacity {
                tail: self.r.hdr().intent.load(Ordering::Relaxed),
                head: self.found.pos,
                capacity: self.r.cap,
            }
            .into());
        }
        Ok(n)
    }

    /// Borrows the payload in place (zero copy).
    ///
    /// # Safety
    /// The publisher must not write these bytes while the slice is alive:
    /// true of an honest publisher under Block that has not evicted this
    /// subscriber. A malicious publisher could change them under the
    /// borrow, which Rust's aliasing rules forbid. Check
    /// [`FanoutSample::is_intact`] after use to learn of an eviction.
    #[cfg(not(loom))]
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        // SAFETY: in bounds (checked by `locate`); immutability is the
        // caller's contract.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.found.len) }
    }

    /// Releases the record: advances our cursor past it. Returns `true` if
    /// the publisher is parked waiting for space and must be woken.
    pub fn release(mut self) -> bool {
        self.released = true;
        self.r.take(self.found).wake_publisher
    }
}

impl Drop for FanoutSample<'_> {
    fn drop(&mut self) {
        if !self.released {
            // A wake-up owed here is not sent (no socket at this layer):
            // the services wrapper releases explicitly.
            self.r.take(self.found);
        }
    }
}
