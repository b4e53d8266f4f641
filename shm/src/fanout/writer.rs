//! The publisher's half: the data segment, and read-only views of the
//! subscribers' cursor segments.

use std::cell::Cell;
use std::collections::VecDeque;
#[cfg(not(loom))]
use std::ffi::CStr;
use std::marker::PhantomData;
#[cfg(not(loom))]
use std::os::fd::{BorrowedFd, OwnedFd};
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
#[cfg(not(loom))]
use crate::ring::check_capacity;
use crate::ring::data::Data;
use crate::ring::ParkSeq;
use crate::sync::{fence, Ordering};
#[cfg(not(loom))]
use crate::{Segment, SegmentOptions};

/// The writing half of a fan-out ring: owns the data segment (read-write
/// here, read-only for every subscriber). `Send` but not `Sync`.
pub struct FanoutWriter {
    #[cfg(not(loom))]
    seg: Segment,
    #[cfg(not(loom))]
    hdr: NonNull<FanoutHeader>,
    /// Under loom the header is a heap value shared with the readers.
    #[cfg(loom)]
    hdr: Arc<FanoutHeader>,
    pub(crate) data: Data,
    cap: u64,
    mask: u64,
    policy: Policy,
    /// Next byte to write; equal to the published `tail` between calls.
    write_pos: u64,
    /// Sequence number of the next record.
    next_seq: u64,
    /// Start of the oldest record not (being) overwritten: a record
    /// boundary `>= intent - cap`. Private copy of the shared `oldest`.
    oldest: u64,
    /// `(position, seq)` of the last `history_max` records, oldest first.
    history: VecDeque<(u64, u64)>,
    history_max: usize,
    park_seq: ParkSeq,
    _not_sync: PhantomData<Cell<()>>,
}

// SAFETY: the raw pointers target `seg`, which the value owns and which
// stays mapped while it lives; `!Sync` (PhantomData<Cell>) keeps access to
// one thread at a time.
unsafe impl Send for FanoutWriter {}

impl std::fmt::Debug for FanoutWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutWriter")
            .field("capacity", &self.cap)
            .field("policy", &self.policy)
            .field("write_pos", &self.write_pos)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl FanoutWriter {
    /// Creates a sealed data segment holding an empty fan-out ring of
    /// `capacity` bytes (a power of two, 64 B to 1 TiB) for `policy`,
    /// remembering the positions of the last `history_max` records for
    /// late joiners.
    ///
    /// # Errors
    /// [`Error::BadCapacity`]; [`Error::Io`] if the memfd cannot be made.
    #[cfg(not(loom))]
    pub fn create(
        name: &CStr,
        capacity: u64,
        policy: Policy,
        history_max: usize,
        opts: SegmentOptions,
    ) -> Result<Self> {
        check_capacity(capacity)?;
        let seg = Segment::create(name, fanout_segment_size(capacity), opts)?;
        let base = seg.as_ptr();
        let hdr =
            NonNull::new(base.cast::<FanoutHeader>()).ok_or(Error::TooLarge { size: 0, max: 0 })?;
        // SAFETY: the segment is page-aligned, `FANOUT_HEADER_SIZE +
        // capacity` bytes and writable (we created it); atomics only.
        let h = unsafe { hdr.as_ref() };
        // Relaxed: the header reaches subscribers only after the fd crosses
        // the socket, which orders these stores.
        h.tail.store(0, Ordering::Relaxed);
        h.intent.store(0, Ordering::Relaxed);
        h.oldest.store(0, Ordering::Relaxed);
        h.closed.store(0, Ordering::Relaxed);
        h.writer_park.store(0, Ordering::Relaxed);
        h.capacity.store(capacity, Ordering::Relaxed);
        h.policy.store(policy.code(), Ordering::Relaxed);
        h.header_size
            .store(FANOUT_HEADER_SIZE as u32, Ordering::Relaxed);
        h.version.store(FANOUT_VERSION, Ordering::Relaxed);
        h.magic.store(FANOUT_MAGIC, Ordering::Relaxed);
        // SAFETY: FANOUT_HEADER_SIZE + capacity == segment length, so the
        // data area is in bounds; 1024 keeps it 8-aligned; writable.
        let data = unsafe { Data::new(base.add(FANOUT_HEADER_SIZE)) };
        Ok(FanoutWriter {
            seg,
            hdr,
            data,
            cap: capacity,
            mask: capacity - 1,
            policy,
            write_pos: 0,
            next_seq: 0,
            oldest: 0,
            history: VecDeque::with_capacity(history_max.min(1 << 16)),
            history_max,
            park_seq: ParkSeq::default(),
            _not_sync: PhantomData,
        })
    }

    /// A writer over heap memory made of loom atomics (see
    /// [`loom_fanout`](super::loom_fanout)).
    #[cfg(loom)]
    pub(crate) fn new_loom(capacity: u64, policy: Policy, history_max: usize) -> Self {
        FanoutWriter {
            hdr: Arc::new(FanoutHeader::new_loom(capacity, policy.code())),
            data: Data::new_loom(capacity as usize),
            cap: capacity,
            mask: capacity - 1,
            policy,
            write_pos: 0,
            next_seq: 0,
            oldest: 0,
            history: VecDeque::with_capacity(history_max),
            history_max,
            park_seq: ParkSeq::default(),
            _not_sync: PhantomData,
        }
    }

    /// A new subscriber under loom: what the handshake does across
    /// processes (start at [`FanoutWriter::start_point`], a fresh cursor
    /// header holding that start, the publisher's view of it), in one
    /// step. Returns the subscriber's reader and the publisher's view.
    #[cfg(loom)]
    pub fn loom_subscribe(&self, history: usize) -> (super::FanoutReader, CursorView) {
        let (start, start_seq) = self.start_point(history);
        let cur = Arc::new(CursorHeader::new_loom(start));
        let reader = super::FanoutReader::new_loom(
            self.hdr.clone(),
            self.data.share_loom(),
            cur.clone(),
            self.cap,
            self.policy,
            start,
            start_seq,
        );
        let view = CursorView {
            hdr: cur,
            last: start,
            woken: 0,
        };
        (reader, view)
    }

    pub(crate) fn hdr(&self) -> &FanoutHeader {
        #[cfg(not(loom))]
        // SAFETY: `hdr` points at the start of `seg` (aligned, at least
        // FANOUT_HEADER_SIZE bytes), alive while `self` is; all fields are
        // atomics.
        return unsafe { self.hdr.as_ref() };
        #[cfg(loom)]
        return &self.hdr;
    }

    /// The data segment's fd, to pass to subscribers.
    #[cfg(not(loom))]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.seg.fd()
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// The slow-subscriber policy written into the header.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Largest payload of one message.
    pub fn max_record_len(&self) -> usize {
        fanout_max_record_len(self.cap) as usize
    }

    /// The published `tail`: every record before it is complete.
    pub fn position(&self) -> u64 {
        self.write_pos
    }

    /// Sequence number the next message will carry (= messages published).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where a new subscriber starts: `(position, sequence number)` of the
    /// `history`-th last message still intact in the ring (fewer if fewer
    /// are kept or intact), or the live head `(tail, next_seq)`.
    pub fn start_point(&self, history: usize) -> (u64, u64) {
        let n = history.min(self.history.len());
        let live = (self.write_pos, self.next_seq);
        if n == 0 {
            return live;
        }
        // Records before `oldest` may be overwritten already.
        self.history
            .iter()
            .skip(self.history.len() - n)
            .find(|(pos, _)| *pos >= self.oldest)
            .copied()
            .unwrap_or(live)
    }

    /// Position just past a record of `len` bytes reserved now (padding
    /// included).
    fn needed(&self, len: usize) -> (u64, u64) {
        let rec = record_size(len as u64);
        let to_end = self.cap - (self.write_pos & self.mask);
        let pad = if rec <= to_end { 0 } else { to_end };
        (pad, self.write_pos + pad + rec)
    }

    /// The position a [`Policy::Block`] floor must have reached for a
    /// message of `len` bytes to fit: `end - capacity`.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`].
    pub fn floor_needed(&self, len: usize) -> Result<u64> {
        let max = self.max_record_len();
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        Ok(self.needed(len).1.saturating_sub(self.cap))
    }

    /// Reserves a record of `len` payload bytes. `floor` is the lowest
    /// cursor of the subscribers the publisher waits for (`None`: wait for
    /// nobody, as under [`Policy::DropOldest`]); the reservation fails with
    /// `Ok(None)` if it would overwrite a byte at or after `floor`.
    ///
    /// Under either policy this announces the overwrite first (SYNC POINT
    /// `overwrite-intent`): a reader that copies bytes we are about to
    /// overwrite learns it when it re-checks `intent`.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`]; [`Error::Protocol`] if `floor` is beyond
    /// what was published (a caller bug: floors come from validated
    /// cursors).
    pub fn try_reserve(
        &mut self,
        len: usize,
        floor: Option<u64>,
    ) -> Result<Option<FanoutGrant<'_>>> {
        let max = self.max_record_len();
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        let (pad, end) = self.needed(len);
        if let Some(f) = floor {
            if f > self.write_pos {
                return Err(Violation::HeadBeyondTail {
                    head: f,
                    tail: self.write_pos,
                }
                .into());
            }
            if end - f > self.cap {
                return Ok(None);
            }
        }
        self.announce(end);
        let rec_start = self.write_pos + pad;
        Ok(Some(FanoutGrant {
            payload_off: ((rec_start & self.mask) + FANOUT_RECORD_HEADER) as usize,
            pad,
            len,
            w: self,
        }))
    }

    /// Advances `oldest` past every record that a write up to `end` will
    /// overwrite, then stores `oldest` and `intent = end`.
    fn announce(&mut self, end: u64) {
        let limit = end.saturating_sub(self.cap);
        while self.oldest < limit && self.oldest < self.write_pos {
            let off = (self.oldest & self.mask) as usize;
            // Our own record headers (only we write this segment): trusted.
            let word = self.data.load_word(off);
            let (len, flags) = ((word as u32) as u64, (word >> 32) as u32);
            self.oldest += if flags & FLAG_PAD != 0 {
                len + PAD_HEADER
            } else {
                record_size(len)
            };
        }
        let h = self.hdr();
        // Relaxed: ordered before `intent` by the Release store below.
        h.oldest.store(self.oldest, Ordering::Relaxed);
        // SYNC POINT `overwrite-intent` (writer side): the Release store
        // orders `oldest` before `intent` (a reader that sees this intent
        // and then loads `oldest` sees at least this `oldest`); the Release
        // fence orders `intent` before every byte we write into the
        // reserved range afterwards. Pairs with the Acquire fence a
        // DropOldest reader runs between its copy and its load of `intent`
        // (`FanoutReader::try_recv`).
        h.intent.store(end, Ordering::Release);
        fence(Ordering::Release);
    }

    /// Marks the publisher as waiting for space (Block): starts a new park
    /// episode on `writer_park`. Re-check the cursors after this and only
    /// sleep if there is still no space.
    pub fn park(&self) {
        // SYNC POINT `fanout-park` (publisher parks): see `ParkSeq::park`.
        // The fan-out ring wakes through its socket, with ordinary fences.
        self.park_seq.park(
            &self.hdr().writer_park,
            crate::ring::WakeKind::Socket,
            crate::ring::Fences::Symmetric,
        );
    }

    /// Ends the park episode.
    pub fn unpark(&self) {
        self.park_seq.unpark(&self.hdr().writer_park);
    }

    /// Marks the ring closed: subscribers drain what was published, then
    /// see [`Error::Closed`].
    pub fn close(&mut self) {
        // SYNC POINT `fanout-closed`: Release orders the last `tail` store
        // before the flag; pairs with the Acquire fence after the reader's
        // load of `closed`.
        self.hdr().closed.store(1, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}

/// A reserved record in the publisher's own segment. Write the payload
/// through `DerefMut` (or [`FanoutGrant::fill_from`]), then
/// [`publish`](FanoutGrant::publish). Dropping it publishes nothing.
pub struct FanoutGrant<'a> {
    w: &'a mut FanoutWriter,
    pad: u64,
    payload_off: usize,
    len: usize,
}

impl std::fmt::Debug for FanoutGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutGrant")
            .field("len", &self.len)
            .finish()
    }
}

impl FanoutGrant<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` (at most `len()` bytes of it) to the payload.
    pub fn fill_from(&mut self, src: &[u8]) {
        let n = src.len().min(self.len);
        // SAFETY: payload_off + n lies in the reserved range (checked in
        // try_reserve), which only this grant writes until publish.
        unsafe { self.w.data.copy_in(self.payload_off, &src[..n]) };
    }

    /// Shrinks the message to its first `len` bytes (larger values are
    /// ignored).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Publishes the message: writes the padding (if any) and the record
    /// header with the next sequence number, then stores `tail`. Returns
    /// the message's sequence number.
    ///
    /// After this, the caller checks each subscriber's park word
    /// ([`CursorView::wake_owed`]): the SeqCst fence of SYNC POINT
    /// `fanout-park` is run here.
    pub fn publish(self) -> u64 {
        let w = self.w;
        if self.pad != 0 {
            let off = (w.write_pos & w.mask) as usize;
            w.data
                .store_word(off, (self.pad - PAD_HEADER) | (u64::from(FLAG_PAD) << 32));
            w.write_pos += self.pad;
        }
        let seq = w.next_seq;
        let hdr_off = self.payload_off - FANOUT_RECORD_HEADER as usize;
        w.data.store_word(hdr_off, self.len as u64);
        w.data.store_word(hdr_off + 8, seq);
        if w.history_max > 0 {
            if w.history.len() == w.history_max {
                w.history.pop_front();
            }
            w.history.push_back((w.write_pos, seq));
        }
        w.write_pos += record_size(self.len as u64);
        w.next_seq += 1;
        // SYNC POINT `fanout-published`: Release makes the record (header,
        // sequence number, payload) visible before `tail`; pairs with the
        // Acquire fence after a reader's load of `tail`.
        w.hdr().tail.store(w.write_pos, Ordering::Release);
        // SYNC POINT `fanout-park` (publisher wakes): SeqCst fence between
        // our `tail` store and the loads of the readers' park words; pairs
        // with the fence in the reader's `park`.
        fence(Ordering::SeqCst);
        seq
    }
}

#[cfg(not(loom))]
impl std::ops::Deref for FanoutGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: payload_off + len lies in the data area (try_reserve);
        // the range is ours until publish: no other process can write the
        // segment (F_SEAL_FUTURE_WRITE), and `&mut FanoutWriter` makes the
        // grant the only writer in this process. Readers only copy it
        // through raw pointers (never as references).
        unsafe { std::slice::from_raw_parts(self.w.data.ptr(self.payload_off), self.len) }
    }
}

#[cfg(not(loom))]
impl std::ops::DerefMut for FanoutGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.w.data.ptr(self.payload_off), self.len) }
    }
}

/// The publisher's read-only view of one subscriber's cursor segment.
/// Every word is loaded once per use and validated; a lying subscriber can
/// only make itself look slow (then the services layer drops it) or fail
/// validation (dropped at once).
pub struct CursorView {
    /// Keeps the mapping alive (read through `hdr`).
    #[cfg(not(loom))]
    _seg: Segment,
    #[cfg(not(loom))]
    hdr: NonNull<CursorHeader>,
    /// Under loom the cursor header is a heap value shared with its reader.
    #[cfg(loom)]
    hdr: Arc<CursorHeader>,
    /// Last validated cursor (the start position before the first load).
    last: u64,
    /// Last odd `reader_park` value a wake-up was owed for.
    woken: u64,
}

// SAFETY: the pointer targets `seg`, owned by the value; only atomics are
// accessed through it.
unsafe impl Send for CursorView {}

impl std::fmt::Debug for CursorView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorView")
            .field("last", &self.last)
            .finish()
    }
}

impl CursorView {
    /// Maps a subscriber's cursor segment read-only after checking its fd
    /// (memfd, sealed against resizing and writing by anyone but its
    /// creator, exactly [`CURSOR_SEGMENT_SIZE`] bytes, fully allocated) and
    /// its identification words. `start` is the position the subscriber
    /// was told to start at: its cursor may never go below it.
    ///
    /// # Errors
    /// The segment checks of [`Segment::attach_read_only`];
    /// [`Error::Protocol`] for a wrong magic or version.
    #[cfg(not(loom))]
    pub fn attach(fd: OwnedFd, start: u64) -> Result<Self> {
        let seg = Segment::attach_read_only(fd, CURSOR_SEGMENT_SIZE, CURSOR_SEGMENT_SIZE)?;
        let hdr =
            NonNull::new(seg.as_ptr().cast::<CursorHeader>()).ok_or(Violation::BadGeometry {
                what: "null cursor segment",
            })?;
        let view = CursorView {
            _seg: seg,
            hdr,
            last: start,
            woken: 0,
        };
        let h = view.hdr();
        // Relaxed: identification words, ordered by the fd transfer;
        // each loaded once and checked.
        let magic = h.magic.load(Ordering::Relaxed);
        let version = h.version.load(Ordering::Relaxed);
        if magic != CURSOR_MAGIC {
            return Err(Violation::BadMagic {
                found: magic,
                expected: CURSOR_MAGIC,
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
        Ok(view)
    }

    fn hdr(&self) -> &CursorHeader {
        #[cfg(not(loom))]
        // SAFETY: `hdr` points at the start of `seg` (page-aligned,
        // CURSOR_SEGMENT_SIZE bytes, checked), alive while `self` is; all
        // fields are atomics and are only loaded (the mapping is
        // read-only).
        return unsafe { self.hdr.as_ref() };
        #[cfg(loom)]
        return &self.hdr;
    }

    /// The last validated cursor.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Loads the subscriber's cursor once and validates it against the
    /// publisher's published `tail`: 8-aligned, never backwards, never
    /// beyond `tail`. Returns the validated value.
    ///
    /// # Errors
    /// The [`Violation`] found; the caller disconnects the subscriber.
    pub fn load(&mut self, tail: u64) -> Result<u64, Violation> {
        // SYNC POINT `fanout-released`: the Acquire fence after this
        // Relaxed load (read-only mapping) pairs with the subscriber's
        // Release store of its cursor: its copies of the records before
        // the cursor happen before we overwrite them.
        let c = self.hdr().cursor.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if !c.is_multiple_of(8) {
            return Err(Violation::Misaligned { value: c });
        }
        if c < self.last {
            return Err(Violation::HeadBackwards {
                prev: self.last,
                now: c,
            });
        }
        if c > tail {
            return Err(Violation::HeadBeyondTail { head: c, tail });
        }
        self.last = c;
        Ok(c)
    }

    /// Whether the subscriber is parked in an episode we have not woken
    /// yet; if so, records it (one wake-up per park episode). Call after
    /// [`FanoutGrant::publish`], whose SeqCst fence orders our `tail` store
    /// before this load (SYNC POINT `fanout-park`).
    pub fn wake_owed(&mut self) -> bool {
        // Relaxed: ordered by the publisher's SeqCst fence; loaded once, not
        // validated (a lie costs the liar a missed or spurious wake-up).
        let p = self.hdr().reader_park.load(Ordering::Relaxed);
        if p % 2 == 1 && p != self.woken {
            self.woken = p;
            return true;
        }
        false
    }
}
