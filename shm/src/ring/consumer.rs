//! The consuming half of the ring: every value the producer wrote is
//! validated before it is used.

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use super::layout::{max_record_len, record_size, unpack, FLAG_PAD, FLAG_RESERVED, RECORD_HEADER};
use super::wake::{Wake, WakeKind, Woken, WordSel};
#[cfg(not(loom))]
use super::RingMemory;
use super::{Fences, ParkSeq, RingShared};
use crate::error::{Error, Result, Violation};
use crate::sync::{fence, Ordering};

/// The reading half of a ring. `Send` but not `Sync`: exactly one thread
/// consumes at a time.
///
/// Unlike [`Producer::attach`](super::Producer::attach), attaching a consumer
/// is safe even if another consumer of the same ring exists: a consumer
/// reads the data area only through raw pointers and atomics, never through
/// a Rust reference (except the `unsafe` [`ReadGuard::as_slice_unchecked`]),
/// so a second one can only confuse the cursor protocol, not break memory
/// safety.
pub struct Consumer {
    ring: Arc<RingShared>,
    /// Our cursor: start of the next unread record. Stored to the shared
    /// `head` whenever a record is released.
    head: u64,
    /// Last validated value of the producer's `tail`; possibly stale.
    cached_tail: u64,
    /// The record at `peeked_pos`, as [`Consumer::has_data`] validated it
    /// (or a guard [`ReadGuard::unread`] left): while our cursor still
    /// stands there, asking again (the `peek_record` or `try_read` that
    /// takes the record a wait found) returns this copy instead of loading
    /// and checking the peer's header word a second time. Our cursor only
    /// moves forward, so it never comes back to a stale entry.
    peeked: Record,
    /// Where `peeked` starts; `NOT_PEEKED` (no 8-aligned cursor equals it)
    /// before the first record.
    peeked_pos: u64,
    poisoned: bool,
    /// Our private copy of our `reader_park` word (only we write it).
    park_seq: ParkSeq,
    /// The last odd value of the producer's `writer_park` we owed a
    /// wake-up for: one wake-up per park episode. Shared with the
    /// [`Wake`] tokens we hand out, so that one handed back is owed again.
    writer_woken: Arc<Woken>,
    /// Which fences order our releases against the producer's park.
    fences: Fences,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.ring.cap)
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// `Consumer::peeked_pos` before any record was validated: odd, so no
/// cursor (always a multiple of 8) equals it.
const NOT_PEEKED: u64 = u64::MAX;

/// What a validated record header says, copied out of shared memory.
#[derive(Debug, Clone, Copy)]
struct Record {
    payload_off: usize,
    len: usize,
    tag: u16,
    size: u64,
}

impl Consumer {
    /// Attaches the consuming half to a ring whose producer header and data
    /// area are in `prod` (the peer's segment, usually mapped read-only) and
    /// whose consumer words are in the header of `cons` (our own segment,
    /// which must be writable; the same memory as `prod` when both halves
    /// live in this process). Validates both headers.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] if `cons` is not writable; [`Error::Protocol`] if
    /// a header is invalid.
    #[cfg(not(loom))]
    pub fn attach(prod: Arc<dyn RingMemory>, cons: Arc<dyn RingMemory>) -> Result<Self> {
        if !cons.writable() {
            return Err(Error::ReadOnly { half: "consumer" });
        }
        let ring = Arc::new(RingShared::attach(prod, cons)?);
        // Relaxed: our own words, written only by their creator so far.
        let head = ring.cons().head.load(Ordering::Relaxed);
        let park = ring.cons().reader_park.load(Ordering::Relaxed);
        // Relaxed + Acquire fence: SYNC POINT `record-published`
        // (attach-time instance); a plain load works on a read-only mapping.
        let tail = ring.prod().tail.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        RingShared::check_aligned(head)?;
        RingShared::check_aligned(tail)?;
        if head > tail || tail - head > ring.cap {
            return Err(Violation::TailBeyondCapacity {
                tail,
                head,
                capacity: ring.cap,
            }
            .into());
        }
        // Start with an empty view: records already published are picked up
        // (and validated) by the first `refresh_tail`.
        let c = Self::from_shared(ring, head);
        c.park_seq.set(park);
        c.unpark();
        Ok(c)
    }

    pub(crate) fn from_shared(ring: Arc<RingShared>, head: u64) -> Self {
        Consumer {
            ring,
            head,
            cached_tail: head,
            peeked: Record {
                payload_off: 0,
                len: 0,
                tag: 0,
                size: 0,
            },
            peeked_pos: NOT_PEEKED,
            poisoned: false,
            park_seq: ParkSeq::default(),
            writer_woken: Arc::default(),
            fences: Fences::default(),
            _not_sync: PhantomData,
        }
    }

    /// Chooses the fences that order our releases against the producer's
    /// park (and our park against its publishes); see
    /// [`Producer::set_fences`](super::Producer::set_fences).
    pub fn set_fences(&mut self, fences: Fences) {
        self.fences = fences;
    }

    /// The fences in use.
    pub fn fences(&self) -> Fences {
        self.fences
    }

    /// The producer's wake word, on which a parked consumer of ours sleeps
    /// with a futex (see [`WakeWord`](super::WakeWord)).
    #[cfg(not(loom))]
    pub fn wake_word(&self) -> super::WakeWord {
        super::WakeWord::new(self.ring.clone(), WordSel::Data)
    }

    /// The peer's wake word, loaded (Relaxed + Acquire fence, SYNC POINT
    /// `wake-word`): the loom models' stand-in for `WakeWord::current`.
    #[cfg(loom)]
    pub fn wake_word_now(&self) -> u32 {
        let v = match WordSel::Data {
            WordSel::Data => self.ring.prod().data_wake.load(Ordering::Relaxed),
            WordSel::Space => self.ring.cons().space_wake.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire);
        v
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ring.cap
    }

    /// Largest payload a valid record can carry.
    pub fn max_record_len(&self) -> usize {
        max_record_len(self.ring.cap) as usize
    }

    /// Bytes consumed since creation.
    pub fn position(&self) -> u64 {
        self.head
    }

    fn poison(&mut self, v: Violation) -> Error {
        self.poisoned = true;
        Error::Protocol(v)
    }

    /// Loads and validates the producer cursor; returns it.
    #[inline]
    fn refresh_tail(&mut self) -> Result<u64> {
        // SYNC POINT `record-published`: the Acquire fence after this
        // Relaxed load pairs with the producer's Release store of `tail` in
        // `Producer::publish`: every record header and payload before `tail`
        // is visible after it. Relaxed load + fence rather than an Acquire
        // load: `tail` lies in the peer's segment, mapped read-only, where
        // Rust only promises Relaxed loads.
        let tail = self.ring.prod().tail.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if let Err(v) = RingShared::check_aligned(tail) {
            return Err(self.poison(v));
        }
        if tail < self.cached_tail {
            let prev = self.cached_tail;
            return Err(self.poison(Violation::TailBackwards { prev, now: tail }));
        }
        if tail - self.head > self.ring.cap {
            let (head, capacity) = (self.head, self.ring.cap);
            return Err(self.poison(Violation::TailBeyondCapacity {
                tail,
                head,
                capacity,
            }));
        }
        self.cached_tail = tail;
        Ok(tail)
    }

    /// Starts fetching the lines of the records that a refresh of `tail`
    /// just revealed, up to two lines past the one holding the next
    /// record's header: otherwise a record that straddles two lines (a
    /// 64 B payload after its 8 B header does) fetches its second line
    /// only once the header has arrived, because the copy's length comes
    /// from the header: a second cross-core transfer in series with the
    /// first (`docs/performance.md`, "Spin round trip against the floor").
    /// A hint on memory we already may read: no value is loaded, so
    /// nothing the peer writes is used.
    #[inline]
    fn prefetch_records(&self) {
        let off = self.head & self.ring.mask;
        let avail = self.cached_tail - self.head;
        // x86-64's line size (elsewhere the hint is a no-op).
        const LINE: u64 = 64;
        let line = off & !(LINE - 1);
        for k in 1..=2u64 {
            let at = line + LINE * k;
            if at >= self.ring.cap || at - off >= avail {
                break;
            }
            self.ring.data.prefetch(at as usize);
        }
    }

    /// Finds the next data record, skipping padding. `Ok(None)` if empty.
    /// A record that [`Consumer::has_data`] found (or a guard left with
    /// [`ReadGuard::unread`]) is not validated again: this returns the copy
    /// validated then (`peeked`), without loading its header a second time.
    #[inline]
    fn next_record(&mut self) -> Result<Option<Record>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.peeked_pos == self.head {
            // Still valid: it lies before `cached_tail`, which only grows,
            // and inside the data area, whose size is fixed.
            return Ok(Some(self.peeked));
        }
        self.scan_record()
    }

    /// [`Consumer::next_record`] without the copy: loads and validates the
    /// header at our cursor (refreshing `tail` if needed).
    #[inline]
    fn scan_record(&mut self) -> Result<Option<Record>> {
        loop {
            if self.head == self.cached_tail {
                if self.refresh_tail()? != self.head {
                    self.prefetch_records();
                } else {
                    // SYNC POINT `producer-closed`: the Acquire fence after this
                    // Relaxed load (read-only mapping, as in `refresh_tail`)
                    // pairs with the Release store in `Producer::close`, which
                    // follows its last publish.
                    let closed = self.ring.prod().producer_closed.load(Ordering::Relaxed);
                    fence(Ordering::Acquire);
                    if closed != 0 && self.refresh_tail()? == self.head {
                        return Err(Error::Closed);
                    }
                    return Ok(None);
                }
            }
            let pos = self.head;
            let off = pos & self.ring.mask;
            let to_end = self.ring.cap - off;
            let avail = self.cached_tail - pos;
            // The header word is loaded once; only the local copy is used.
            let (len, flags) = unpack(self.ring.data.load_word(off as usize));
            let bad = |what| Violation::BadRecord {
                pos,
                len,
                flags,
                what,
            };
            if flags & FLAG_PAD != 0 {
                if flags != FLAG_PAD {
                    return Err(self.poison(bad("padding record with other flags set")));
                }
                if u64::from(len) + RECORD_HEADER != to_end {
                    return Err(self.poison(bad("padding record does not end the data area")));
                }
                if to_end >= avail {
                    return Err(self.poison(bad("padding record not followed by a record")));
                }
                self.head += to_end;
                continue;
            }
            if flags & FLAG_RESERVED != 0 {
                return Err(self.poison(bad("reserved flag bits set")));
            }
            if u64::from(len) > max_record_len(self.ring.cap) {
                return Err(self.poison(bad("length exceeds the ring's record limit")));
            }
            let size = record_size(u64::from(len));
            if size > to_end {
                return Err(self.poison(bad("record crosses the end of the data area")));
            }
            if size > avail {
                return Err(self.poison(bad("record extends past the producer cursor")));
            }
            return Ok(Some(Record {
                payload_off: (off + RECORD_HEADER) as usize,
                len: len as usize,
                tag: flags as u16,
                size,
            }));
        }
    }

    /// Returns a guard over the next record, or `Ok(None)` if the ring is
    /// empty. Dropping the guard releases the record's space.
    ///
    /// # Errors
    /// [`Error::Protocol`] if the producer wrote an invalid cursor or record
    /// (the ring is then poisoned); [`Error::Poisoned`] afterwards;
    /// [`Error::Closed`] once the producer closed and all it published has
    /// been read.
    #[inline]
    pub fn try_read(&mut self) -> Result<Option<ReadGuard<'_>>> {
        Ok(self.next_record()?.map(|rec| ReadGuard { cons: self, rec }))
    }

    /// The next record's header, validated, without taking it: the header
    /// word is loaded once, here (or by the [`Consumer::has_data`] that
    /// first saw this record: a second look returns that copy). Pass the
    /// result to [`Consumer::read`] to
    /// take exactly that record without loading its header again (so every
    /// check a caller makes on [`RecordHead::tag`]/[`RecordHead::len`]
    /// applies to the record it reads).
    ///
    /// # Errors
    /// As [`Consumer::try_read`].
    #[inline]
    pub fn peek_record(&mut self) -> Result<Option<RecordHead>> {
        Ok(self.next_record()?.map(|rec| RecordHead {
            pos: self.head,
            rec,
        }))
    }

    /// Takes the record `head` describes. `head` must come from
    /// [`Consumer::peek_record`] on this consumer with no read or release in
    /// between; it is checked against our own (private) cursors, never
    /// against shared memory again.
    ///
    /// # Errors
    /// [`Error::StaleRecord`] if `head` does not describe the record at our
    /// cursor; [`Error::Poisoned`] after a violation.
    #[inline]
    pub fn read(&mut self, head: RecordHead) -> Result<ReadGuard<'_>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let rec = head.rec;
        // All local values: the record must start at our cursor, lie before
        // the validated producer cursor and inside the data area.
        let off = (self.head & self.ring.mask) + RECORD_HEADER;
        let fits = head.pos == self.head
            && rec.size <= self.cached_tail - self.head
            && rec.payload_off as u64 == off
            && off + rec.len as u64 <= self.ring.cap
            && record_size(rec.len as u64) == rec.size;
        if !fits {
            return Err(Error::StaleRecord);
        }
        Ok(ReadGuard { cons: self, rec })
    }

    /// Tag and payload length of the next record, without taking it.
    ///
    /// # Errors
    /// As [`Consumer::try_read`].
    pub fn peek(&mut self) -> Result<Option<(u16, usize)>> {
        Ok(self.next_record()?.map(|r| (r.tag, r.len)))
    }

    /// Whether a record is ready to read (validating what it looks at). The
    /// record it finds is kept validated: the [`Consumer::peek_record`] or
    /// [`Consumer::try_read`] that follows does not load its header again.
    ///
    /// # Errors
    /// As [`Consumer::try_read`].
    #[inline]
    pub fn has_data(&mut self) -> Result<bool> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.peeked_pos == self.head {
            return Ok(true);
        }
        match self.scan_record()? {
            Some(rec) => {
                // `scan_record` moved our cursor past any padding: the
                // record starts there.
                self.peeked = rec;
                self.peeked_pos = self.head;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Releases `size` bytes: stores the new `head` and returns the
    /// wake-up owed to a parked producer.
    #[inline]
    fn release(&mut self, size: u64) -> Wake {
        self.head += size;
        self.publish_head()
    }

    /// Publishes every release made with [`ReadGuard::release_deferred`]
    /// with one cursor store. Returns the wake-up owed to the producer if
    /// it is parked waiting for space.
    #[inline]
    pub fn flush_releases(&mut self) -> Wake {
        self.publish_head()
    }

    /// The wake-up still owed to a parked producer, if any (one handed
    /// back by a dropped [`Wake`] or [`ReadGuard`]), with the usual
    /// hysteresis. Call it after reading with guards that were dropped.
    pub fn owed_wake(&mut self) -> Wake {
        self.fences.fast();
        self.writer_owed()
    }

    #[inline]
    fn publish_head(&mut self) -> Wake {
        // SYNC POINT `space-released`: Release orders our reads of the record
        // before the producer may overwrite it; pairs with the Acquire fence
        // after the load of `head` in `Producer::refresh_head`. Our own word.
        self.ring.cons().head.store(self.head, Ordering::Release);
        // SYNC POINT `park-dekker` (writer side): a SeqCst fence between our
        // store of `head` and our load of `writer_park` (asymmetric mode: a
        // compiler fence, the producer's membarrier pays); pairs with the
        // fence in `Producer::park` (see docs/design.md).
        self.fences.fast();
        self.writer_owed()
    }

    /// After the fence: whether the producer's park episode is owed a
    /// wake-up now (with hysteresis); records it if so.
    #[inline]
    fn writer_owed(&mut self) -> Wake {
        // Relaxed: ordered by the fence before; the producer's word, loaded
        // once.
        let seq = self.ring.prod().writer_park.load(Ordering::Relaxed);
        let prev = self.writer_woken.get();
        if seq.is_multiple_of(2) || seq == prev {
            return Wake::NONE;
        }
        // Hysteresis, as sockets do for write space: wake a parked producer
        // only once at most half the ring is in use, so a stream blocked on
        // a full ring costs one wake-up per half ring, not one per record.
        // The episode is not recorded as woken, so a later release
        // re-checks; a consumer that reads until the ring is empty always
        // gets there. Relaxed: the value only steers this decision (a lying
        // producer can only delay its own wake-up).
        let used = self
            .ring
            .prod()
            .tail
            .load(Ordering::Relaxed)
            .wrapping_sub(self.head);
        if used > self.ring.cap / 2 && used <= self.ring.cap {
            return Wake::NONE;
        }
        self.owe(seq, prev)
    }

    fn owe(&mut self, seq: u64, prev: u64) -> Wake {
        self.writer_woken.set(seq);
        Wake::owed(
            super::wake_kind(seq),
            seq,
            prev,
            &self.writer_woken,
            &self.ring,
            WordSel::Space,
        )
    }

    /// Whether the producer is parked in an episode we have not woken yet
    /// (no hysteresis); if so, records it.
    fn writer_wake_owed(&mut self) -> Wake {
        // SYNC POINT `park-dekker` (writer side), as in `publish_head`.
        self.fences.fast();
        // Relaxed: ordered by the fence above; loaded once.
        let seq = self.ring.prod().writer_park.load(Ordering::Relaxed);
        let prev = self.writer_woken.get();
        if seq % 2 == 1 && seq != prev {
            return self.owe(seq, prev);
        }
        Wake::NONE
    }

    /// Marks the consumer as parked (about to sleep): starts a new park
    /// episode (our `reader_park` word becomes a new odd value, saying
    /// which `kind` of wake-up we want). The caller must then re-check with
    /// [`Consumer::has_data`] and only sleep if it is still empty; the
    /// producer's next publish reports that a wake-up is owed, once for
    /// this episode.
    ///
    /// Returns the producer's wake word as it was just before the episode
    /// began: to sleep on the futex, pass it to
    /// [`WakeWord::sleep`](super::WakeWord::sleep) on
    /// [`Consumer::wake_word`]. (Only a snapshot taken before the episode
    /// begins is safe to sleep on: see `docs/design.md`, "Futex
    /// wake-ups".) A socket sleeper ignores it.
    pub fn park(&self, kind: WakeKind) -> u32 {
        // SYNC POINT `park-dekker` (reader side) and `wake-word`: see
        // `ParkSeq::park_after_snapshot`.
        self.park_seq.park_after_snapshot(
            &self.ring.cons().reader_park,
            kind,
            self.fences,
            &self.ring.prod().data_wake,
        )
    }

    /// Ends our park episode: our `reader_park` word becomes even.
    pub fn unpark(&self) {
        self.park_seq.unpark(&self.ring.cons().reader_park);
    }

    /// Whether the producer has marked the ring closed.
    pub fn is_producer_closed(&self) -> bool {
        // Relaxed: advisory; `try_read` does the ordered check.
        self.ring.prod().producer_closed.load(Ordering::Relaxed) != 0
    }

    /// Marks the ring closed by the consumer (advisory, for the producer).
    /// Returns the wake-up owed to the producer if it was parked.
    pub fn close(&mut self) -> Wake {
        // Relaxed: advisory flag; our own word.
        self.ring.cons().consumer_closed.store(1, Ordering::Relaxed);
        self.writer_wake_owed()
    }

    /// Whether a protocol violation poisoned this half.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

/// A validated record header from [`Consumer::peek_record`]: a private
/// copy, so reading its fields never touches shared memory.
#[derive(Debug, Clone, Copy)]
pub struct RecordHead {
    pos: u64,
    rec: Record,
}

impl RecordHead {
    /// The record's tag.
    #[inline]
    pub fn tag(&self) -> u16 {
        self.rec.tag
    }

    /// Payload length in bytes (at most the ring's record limit).
    #[inline]
    pub fn len(&self) -> usize {
        self.rec.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }
}

/// A record being read. Its space is released when the guard is dropped (or
/// [`released`](ReadGuard::release) explicitly). Dropping it hands back a
/// wake-up owed to a parked producer (see [`Wake`]): the next release,
/// flush or [`Consumer::owed_wake`] owes it again. Use
/// [`ReadGuard::release`] to get the wake-up at once.
///
/// The payload lies in memory the producer can still write if it breaks the
/// protocol, so the guard never lends it out as `&[u8]` safely: copy it out
/// with [`copy_to`](ReadGuard::copy_to) / [`to_vec`](ReadGuard::to_vec), or,
/// if you trust the peer not to write a published record, borrow it with the
/// `unsafe` [`as_slice_unchecked`](ReadGuard::as_slice_unchecked).
pub struct ReadGuard<'a> {
    cons: &'a mut Consumer,
    rec: Record,
}

impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("len", &self.rec.len)
            .field("tag", &self.rec.tag)
            .finish()
    }
}

impl ReadGuard<'_> {
    /// Payload length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.rec.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }

    /// The record's tag.
    #[inline]
    pub fn tag(&self) -> u16 {
        self.rec.tag
    }

    /// Copies the first `dst.len().min(self.len())` payload bytes into `dst`
    /// and returns how many were copied.
    #[inline]
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.rec.len);
        // SAFETY: payload_off + len lies within the data area (validated in
        // next_record) and n <= len.
        unsafe {
            self.cons
                .ring
                .data
                .copy_out(self.rec.payload_off, &mut dst[..n])
        };
        n
    }

    /// Copies the payload into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.rec.len];
        self.copy_to(&mut v);
        v
    }

    /// Appends the payload bytes from `start` on to `dst` (nothing if
    /// `start >= len()`) and returns how many were appended. No zeroing and
    /// no reference to shared memory: the bytes are copied through a raw
    /// pointer into `dst`'s spare capacity.
    #[cfg(not(loom))]
    #[inline]
    pub fn append_to(&self, start: usize, dst: &mut Vec<u8>) -> usize {
        let n = self.rec.len.saturating_sub(start);
        dst.reserve(n);
        let src = self
            .cons
            .ring
            .data
            .ptr(self.rec.payload_off + start.min(self.rec.len));
        // SAFETY: `payload_off + len` lies within the data area (validated
        // in next_record) and `start + n == len`, so the source range is in
        // bounds; `reserve` made room for `n` bytes after `dst.len()`, and
        // `dst` is private memory, so the ranges cannot overlap. A peer that
        // scribbles meanwhile makes us copy garbage, never out of bounds.
        unsafe { src.copy_to_nonoverlapping(dst.as_mut_ptr().add(dst.len()), n) };
        // SAFETY: the `n` bytes after the old length were initialised above.
        unsafe { dst.set_len(dst.len() + n) };
        n
    }

    /// Raw pointer to the payload; valid for `len()` bytes until the guard
    /// is released.
    #[cfg(not(loom))]
    pub fn as_ptr(&self) -> *const u8 {
        self.cons.ring.data.ptr(self.rec.payload_off)
    }

    /// Borrows the payload in place (zero copy).
    ///
    /// # Safety
    /// The caller must trust the peer not to write this record while the
    /// slice is alive. A well-behaved producer never writes a published
    /// record; a malicious one could change the bytes under the borrow, which
    /// Rust's aliasing rules forbid.
    #[cfg(not(loom))]
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        // SAFETY: in bounds as in `copy_to`; immutability is the caller's
        // contract.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.rec.len) }
    }

    /// Releases the record now. Returns the wake-up owed to the producer
    /// if it is parked waiting for space.
    #[inline]
    pub fn release(self) -> Wake {
        // Not dropped: `Drop` would release it a second time.
        let mut g = ManuallyDrop::new(self);
        let size = g.rec.size;
        g.cons.release(size)
    }

    /// Releases the record without telling the producer yet: its space is
    /// handed back by the next [`Consumer::flush_releases`] or the next
    /// ordinary release, with one cursor store for the whole batch. A
    /// producer waiting for space waits until then.
    #[inline]
    pub fn release_deferred(self) {
        // Not dropped: `Drop` would release it now.
        let mut g = ManuallyDrop::new(self);
        g.cons.head += g.rec.size;
    }

    /// Leaves the record unread: it stays at the head of the ring, and the
    /// next look at it ([`Consumer::peek_record`], [`Consumer::try_read`],
    /// [`Consumer::has_data`]) returns this guard's validated copy of its
    /// header instead of loading it again. For a reader that took a record
    /// it then finds it must leave to another path.
    #[inline]
    pub fn unread(self) {
        // Not dropped: `Drop` would release it.
        let mut g = ManuallyDrop::new(self);
        g.cons.peeked = g.rec;
        g.cons.peeked_pos = g.cons.head;
    }
}

impl Drop for ReadGuard<'_> {
    // Inline: after `release`, this check is all a drop does.
    #[inline]
    fn drop(&mut self) {
        // Not released yet (`release`, `release_deferred` and `unread` do
        // not drop the guard). Dropping the token pays a futex wake-up and
        // hands a socket one back to the consumer (owed again at its next
        // release).
        drop(self.cons.release(self.rec.size));
    }
}
