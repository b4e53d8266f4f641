//! The producing half of the ring.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use super::layout::{max_record_len, pack, record_size, FLAG_PAD, RECORD_HEADER};
use super::wake::{Wake, WakeKind, Woken, WordSel};
#[cfg(not(loom))]
use super::RingMemory;
use super::{Fences, ParkSeq, RingShared};
use crate::error::{Error, Result, Violation};
use crate::sync::{fence, Ordering};

/// The writing half of a ring. `Send` but not `Sync`: exactly one thread
/// produces at a time; and there is at most one `Producer` per ring in a
/// process (the safe constructors return the only one, [`Producer::attach`]
/// is `unsafe` for that reason).
pub struct Producer {
    ring: Arc<RingShared>,
    /// Next byte to write, including staged (unpublished) records.
    write_pos: u64,
    /// Last value stored to the shared `tail`.
    published: u64,
    /// Last validated value of the consumer's `head`; possibly stale.
    cached_head: u64,
    poisoned: bool,
    /// Our private copy of our `writer_park` word (only we write it).
    park_seq: ParkSeq,
    /// The last odd value of the consumer's `reader_park` we owed a
    /// wake-up for: one wake-up per park episode. Shared with the
    /// [`Wake`] tokens we hand out, so that one handed back is owed again.
    reader_woken: Arc<Woken>,
    /// Which fences order our publish against the consumer's park.
    fences: Fences,
    _not_sync: PhantomData<Cell<()>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.ring.cap)
            .field("write_pos", &self.write_pos)
            .field("published", &self.published)
            .field("cached_head", &self.cached_head)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Producer {
    /// Attaches the producing half to a ring whose producer header and data
    /// area are in `prod` (which this process must be able to write) and
    /// whose consumer words are in the header of `cons` (the consumer's
    /// segment, possibly read-only; the same memory as `prod` when both
    /// halves live in this process). Validates both headers (magic,
    /// version, geometry, cursors).
    ///
    /// Prefer the safe constructors, which return the ring's only producer:
    /// [`heap_ring`](super::heap_ring), [`create_segment`](super::create_segment)
    /// and [`Producer::with_consumer_words`].
    ///
    /// # Safety
    /// No other `Producer` of the same ring (the same `prod` memory) may be
    /// alive in this process, now or while the returned one lives: two
    /// producers would hand out overlapping [`WriteGrant`]s, whose
    /// `&mut [u8]` must be exclusive. Likewise no other process may be able
    /// to write `prod` while the producer lives: true of a segment made by
    /// [`Segment::create`](crate::Segment::create) (sealed with
    /// `F_SEAL_FUTURE_WRITE`) and of [`HeapMemory`](super::HeapMemory), not
    /// of a memfd a peer can still map writable.
    ///
    /// Safe code cannot make a second producer of a ring it got from a safe
    /// constructor:
    /// ```compile_fail,E0133
    /// use shmsock_shm::ring::{self, Producer, RingMemory};
    /// use std::sync::Arc;
    /// let (seg, _only) = ring::create_segment(c"x", 4096, Default::default()).unwrap();
    /// let mem: Arc<dyn RingMemory> = seg;
    /// let _second = Producer::attach(mem.clone(), mem); // needs `unsafe`
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`] if `prod` is not writable; [`Error::Protocol`]
    /// if a header is invalid.
    #[cfg(not(loom))]
    pub unsafe fn attach(prod: Arc<dyn RingMemory>, cons: Arc<dyn RingMemory>) -> Result<Self> {
        if !prod.writable() {
            return Err(Error::ReadOnly { half: "producer" });
        }
        let ring = Arc::new(RingShared::attach(prod, cons)?);
        let head = Self::attach_head(&ring)?;
        // Relaxed: our own words; at attach time only the creator wrote them.
        let tail = ring.prod().tail.load(Ordering::Relaxed);
        let park = ring.prod().writer_park.load(Ordering::Relaxed);
        RingShared::check_aligned(tail)?;
        if head > tail || tail - head > ring.cap {
            return Err(Violation::HeadBeyondTail { head, tail }.into());
        }
        let p = Self::from_shared(ring, tail, head);
        p.park_seq.set(park);
        p.unpark();
        Ok(p)
    }

    /// Loads (once) and checks the consumer cursor at attach time.
    #[cfg(not(loom))]
    fn attach_head(ring: &RingShared) -> Result<u64> {
        // Relaxed + Acquire fence: the attach-time instance of SYNC POINT
        // `space-released` (a plain load, so it works on a read-only
        // mapping).
        let head = ring.cons().head.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        RingShared::check_aligned(head)?;
        Ok(head)
    }

    /// Points this producer at the consumer words in `cons` (the header of
    /// the peer's segment, usually mapped read-only), keeping everything
    /// else: the ring stays in our memory, and this stays its only
    /// producer. Used when the consumer's segment arrives after ours was
    /// created.
    ///
    /// # Errors
    /// [`Error::Protocol`] if `cons` holds no valid ring header or its
    /// consumer cursor disagrees with what we published (this producer is
    /// consumed either way); [`Error::Poisoned`] if it was poisoned.
    #[cfg(not(loom))]
    pub fn with_consumer_words(self, cons: Arc<dyn RingMemory>) -> Result<Producer> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let prod = self
            .ring
            .prod_mem
            .clone()
            .ok_or(Error::ReadOnly { half: "producer" })?;
        let ring = Arc::new(RingShared::attach(prod, cons)?);
        let head = Self::attach_head(&ring)?;
        if head > self.published || self.published - head > ring.cap {
            return Err(Violation::HeadBeyondTail {
                head,
                tail: self.published,
            }
            .into());
        }
        Ok(Producer {
            ring,
            cached_head: head,
            reader_woken: Arc::default(),
            ..self
        })
    }

    pub(crate) fn from_shared(ring: Arc<RingShared>, tail: u64, head: u64) -> Self {
        Producer {
            ring,
            write_pos: tail,
            published: tail,
            cached_head: head,
            poisoned: false,
            park_seq: ParkSeq::default(),
            reader_woken: Arc::default(),
            fences: Fences::default(),
            _not_sync: PhantomData,
        }
    }

    /// Chooses the fences that order our publishes against the consumer's
    /// park (and our park against its releases). [`Fences::Asymmetric`]
    /// is only correct if both processes registered for
    /// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` and both halves of the ring use it
    /// (see [`Fences`]); a wrong choice costs wake-ups (liveness), never
    /// memory safety.
    pub fn set_fences(&mut self, fences: Fences) {
        self.fences = fences;
    }

    /// The fences in use.
    pub fn fences(&self) -> Fences {
        self.fences
    }

    /// The consumer's wake word, on which a parked producer of ours sleeps
    /// with a futex (see [`WakeWord`](super::WakeWord)).
    #[cfg(not(loom))]
    pub fn wake_word(&self) -> super::WakeWord {
        super::WakeWord::new(self.ring.clone(), WordSel::Space)
    }

    /// The peer's wake word, loaded (Relaxed + Acquire fence, SYNC POINT
    /// `wake-word`): the loom models' stand-in for `WakeWord::current`.
    #[cfg(loom)]
    pub fn wake_word_now(&self) -> u32 {
        let v = match WordSel::Space {
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

    /// Largest payload one record can carry (half the capacity minus the
    /// record header).
    pub fn max_record_len(&self) -> usize {
        max_record_len(self.ring.cap) as usize
    }

    /// Bytes the producer has written (published or staged) since creation.
    pub fn position(&self) -> u64 {
        self.write_pos
    }

    /// Loads and validates the consumer cursor.
    #[inline]
    fn refresh_head(&mut self) -> Result<u64> {
        // SYNC POINT `space-released`: the Acquire fence after this Relaxed
        // load pairs with the consumer's Release store of `head` in
        // `Consumer::publish_head`; the consumer's reads of the released
        // records happen before we overwrite them. Relaxed load + fence
        // rather than an Acquire load: `head` lies in the peer's segment,
        // mapped read-only, where Rust only promises Relaxed loads.
        let head = self.ring.cons().head.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let check = || -> Result<(), Violation> {
            RingShared::check_aligned(head)?;
            if head < self.cached_head {
                return Err(Violation::HeadBackwards {
                    prev: self.cached_head,
                    now: head,
                });
            }
            if head > self.published {
                return Err(Violation::HeadBeyondTail {
                    head,
                    tail: self.published,
                });
            }
            Ok(())
        };
        if let Err(v) = check() {
            self.poisoned = true;
            return Err(v.into());
        }
        self.cached_head = head;
        Ok(head)
    }

    /// Space a record of `len` payload bytes needs at the current write
    /// position, padding included.
    #[inline]
    fn needed(&self, len: usize) -> (u64, u64) {
        let rec = record_size(len as u64);
        let to_end = self.ring.cap - (self.write_pos & self.ring.mask);
        let pad = if rec <= to_end { 0 } else { to_end };
        (pad, self.write_pos + pad + rec)
    }

    /// Whether a record of `len` bytes could be reserved now (refreshing
    /// the consumer cursor if needed).
    ///
    /// # Errors
    /// As [`Producer::try_reserve_tagged`].
    #[inline]
    pub fn can_reserve(&mut self, len: usize) -> Result<bool> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let max = self.max_record_len();
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        let (_, end) = self.needed(len);
        Ok(end - self.cached_head <= self.ring.cap || end - self.refresh_head()? <= self.ring.cap)
    }

    /// Reserves a record of `len` payload bytes, tagged `tag`.
    ///
    /// Returns `Ok(None)` when the ring lacks space right now. The tag is
    /// carried to the consumer untouched (the transport uses it to tell
    /// inline messages from announcements).
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] if `len` exceeds [`Producer::max_record_len`];
    /// [`Error::Protocol`] if the consumer's cursor is invalid (the ring is
    /// then poisoned); [`Error::Poisoned`] after that.
    #[inline]
    pub fn try_reserve_tagged(&mut self, len: usize, tag: u16) -> Result<Option<WriteGrant<'_>>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let max = self.max_record_len();
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        let cap = self.ring.cap;
        let (pad, end) = self.needed(len);
        if end - self.cached_head > cap && end - self.refresh_head()? > cap {
            return Ok(None);
        }
        // Nothing is written yet: the padding (if any) and the record header
        // are written when the grant is committed, so an abandoned grant
        // leaves no trace.
        let rec_start = self.write_pos + pad;
        let payload_off = ((rec_start & self.ring.mask) + RECORD_HEADER) as usize;
        Ok(Some(WriteGrant {
            #[cfg(loom)]
            staging: vec![0; len],
            prod: self,
            pad,
            payload_off,
            len,
            tag,
        }))
    }

    /// Reserves a record of `len` bytes with tag 0. See
    /// [`Producer::try_reserve_tagged`].
    ///
    /// # Errors
    /// As [`Producer::try_reserve_tagged`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<Option<WriteGrant<'_>>> {
        self.try_reserve_tagged(len, 0)
    }

    /// Copies `data` into a new record and publishes it. Returns `Ok(None)`
    /// when the ring is full, else the wake-up owed to the consumer (if it
    /// parked).
    ///
    /// # Errors
    /// As [`Producer::try_reserve_tagged`].
    pub fn try_push(&mut self, data: &[u8]) -> Result<Option<Wake>> {
        match self.try_reserve(data.len())? {
            Some(mut g) => {
                g.fill_from(data);
                Ok(Some(g.commit()))
            }
            None => Ok(None),
        }
    }

    /// Publishes every staged record with one cursor store. Returns the
    /// wake-up owed to the consumer if it has parked (see
    /// [`Producer::park`]).
    #[inline]
    pub fn publish(&mut self) -> Wake {
        if self.write_pos != self.published {
            // SYNC POINT `record-published`: Release makes the record headers
            // and payloads written before it visible; pairs with the Acquire
            // load of `tail` in `Consumer::refresh_tail`.
            self.ring
                .prod()
                .tail
                .store(self.write_pos, Ordering::Release);
            self.published = self.write_pos;
        }
        self.reader_wake_owed()
    }

    /// Whether the consumer is parked in an episode we have not woken yet;
    /// if so, records it: the caller then owes it exactly one wake-up.
    #[inline]
    fn reader_wake_owed(&mut self) -> Wake {
        // SYNC POINT `park-dekker` (reader side): a SeqCst fence between our
        // store of `tail` and our load of `reader_park` (asymmetric mode: a
        // compiler fence, the consumer's membarrier pays); pairs with the
        // fence in `Consumer::park` between its store of `reader_park` and
        // its re-check of `tail`. At least one side sees the other's store:
        // no lost wake-up (docs/design.md).
        self.fences.fast();
        // Relaxed: ordered by the fence above; the consumer's word, loaded
        // once. Any value is harmless: a lying consumer only gets wake-ups,
        // at most one per value it writes.
        let seq = self.ring.cons().reader_park.load(Ordering::Relaxed);
        let prev = self.reader_woken.get();
        if seq % 2 == 1 && seq != prev {
            self.reader_woken.set(seq);
            return Wake::owed(
                super::wake_kind(seq),
                seq,
                prev,
                &self.reader_woken,
                &self.ring,
                WordSel::Data,
            );
        }
        Wake::NONE
    }

    /// The wake-up still owed to a parked consumer, if any (one handed back
    /// by a dropped [`Wake`], or an episode no publish has seen yet).
    pub fn owed_wake(&mut self) -> Wake {
        self.reader_wake_owed()
    }

    /// Marks the producer as waiting for space: starts a new park episode
    /// (our `writer_park` word becomes a new odd value, saying which
    /// `kind` of wake-up we want). The caller must re-check for space
    /// (`try_reserve`) after this and only sleep if there is none; the
    /// consumer's release then reports that a wake-up is owed, once for
    /// this episode.
    ///
    /// Returns the consumer's wake word as it was just before the episode
    /// began: to sleep on the futex, pass it to
    /// [`WakeWord::sleep`](super::WakeWord::sleep) on
    /// [`Producer::wake_word`] (see [`Consumer::park`](super::Consumer::park)).
    /// A socket sleeper ignores it.
    pub fn park(&self, kind: WakeKind) -> u32 {
        // SYNC POINT `park-dekker` (writer side) and `wake-word`: see
        // `ParkSeq::park_after_snapshot`.
        self.park_seq.park_after_snapshot(
            &self.ring.prod().writer_park,
            kind,
            self.fences,
            &self.ring.cons().space_wake,
        )
    }

    /// Ends our park episode (after waking or giving up): our `writer_park`
    /// word becomes even.
    pub fn unpark(&self) {
        self.park_seq.unpark(&self.ring.prod().writer_park);
    }

    /// Marks the ring closed by the producer after publishing everything
    /// staged. The consumer drains what was published, then gets
    /// [`Error::Closed`]. Returns the wake-up owed to the consumer.
    pub fn close(&mut self) -> Wake {
        let wake = self.publish();
        // SYNC POINT `producer-closed`: Release orders the final `tail` store
        // before the flag; pairs with the Acquire load in `Consumer::try_read`.
        self.ring.prod().producer_closed.store(1, Ordering::Release);
        // A wake-up owed now is for a newer episode than `wake`'s (if both
        // are owed, the older one has ended: its parker re-parked).
        self.reader_wake_owed().or(wake)
    }

    /// Whether the consumer has closed its end.
    pub fn is_consumer_closed(&self) -> bool {
        // Relaxed: advisory flag; nothing is read on the strength of it.
        self.ring.cons().consumer_closed.load(Ordering::Relaxed) != 0
    }

    /// Whether a protocol violation poisoned this half.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The consumer's cursor, freshly loaded and validated: every record
    /// that starts before it has been released by the consumer.
    ///
    /// # Errors
    /// [`Error::Protocol`] if the consumer cursor is invalid.
    pub fn consumed(&mut self) -> Result<u64> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        self.refresh_head()
    }

    /// Bytes free for writing according to the last validated consumer
    /// cursor (refreshing it first).
    ///
    /// # Errors
    /// [`Error::Protocol`] if the consumer cursor is invalid.
    pub fn free_space(&mut self) -> Result<u64> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let head = self.refresh_head()?;
        Ok(self.ring.cap - (self.write_pos - head))
    }
}

/// A reserved, writable record. Write the payload through `DerefMut`, then
/// [`commit`](WriteGrant::commit). Dropping the grant without committing
/// publishes nothing.
///
/// The slice lies in our own segment: the peer maps it read-only (the memfd
/// is sealed with `F_SEAL_FUTURE_WRITE`), and we are the ring's only
/// producer, so nobody else can write it while the grant lives; that is
/// what makes lending it out as `&mut [u8]` sound (see `docs/design.md`).
pub struct WriteGrant<'a> {
    prod: &'a mut Producer,
    /// Bytes of padding to write before the record (0 or the distance from
    /// `write_pos` to the end of the data area).
    pad: u64,
    payload_off: usize,
    len: usize,
    tag: u16,
    #[cfg(loom)]
    staging: Vec<u8>,
}

impl std::fmt::Debug for WriteGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGrant")
            .field("len", &self.len)
            .field("tag", &self.tag)
            .finish()
    }
}

impl WriteGrant<'_> {
    /// Length of the reserved payload.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the reserved payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raw pointer to the payload, for writers that fill it from C or with
    /// their own copy routines. Valid for `len()` bytes until commit or drop.
    #[cfg(not(loom))]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.prod.ring.data.ptr(self.payload_off)
    }

    /// Copies `src` (at most `len()` bytes of it) to the start of the
    /// payload, without forming a reference to shared memory.
    #[inline]
    pub fn fill_from(&mut self, src: &[u8]) {
        let n = src.len().min(self.len);
        #[cfg(not(loom))]
        // SAFETY: payload_off + n lies within the reserved range, which the
        // producer owns until commit.
        unsafe {
            self.prod.ring.data.copy_in(self.payload_off, &src[..n])
        };
        #[cfg(loom)]
        self.staging[..n].copy_from_slice(&src[..n]);
    }

    /// Copies `src` to payload offset `offset` (a multiple of 8), clipped
    /// to the reserved length, without forming a reference to shared memory.
    pub fn fill_at(&mut self, offset: usize, src: &[u8]) {
        debug_assert_eq!(offset % 8, 0, "fill_at offset must be 8-aligned");
        if offset >= self.len {
            return;
        }
        let n = src.len().min(self.len - offset);
        #[cfg(not(loom))]
        // SAFETY: payload_off + offset + n <= payload_off + len, within the
        // reserved range, which the producer owns until commit; both offsets
        // are 8-aligned.
        unsafe {
            self.prod
                .ring
                .data
                .copy_in(self.payload_off + offset, &src[..n])
        };
        #[cfg(loom)]
        self.staging[offset..offset + n].copy_from_slice(&src[..n]);
    }

    /// Shrinks the record to its first `len` bytes before committing (for
    /// writers that reserve an upper bound). Larger values are ignored.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.len = len;
            #[cfg(loom)]
            self.staging.truncate(len);
        }
    }

    #[inline]
    fn stage(&mut self) {
        let ring = &self.prod.ring;
        #[cfg(loom)]
        // SAFETY: the payload range was reserved in try_reserve and lies
        // within the data area; the producer owns it until publication.
        unsafe {
            ring.data.copy_in(self.payload_off, &self.staging)
        };
        if self.pad != 0 {
            // The padding record fills the data area to its end; it is
            // published together with the record that follows it.
            let off = (self.prod.write_pos & ring.mask) as usize;
            ring.data
                .store_word(off, pack((self.pad - RECORD_HEADER) as u32, FLAG_PAD));
            self.prod.write_pos += self.pad;
        }
        let hdr_off = self.payload_off - RECORD_HEADER as usize;
        ring.data
            .store_word(hdr_off, pack(self.len as u32, u32::from(self.tag)));
        self.prod.write_pos += record_size(self.len as u64);
    }

    /// Publishes the record. Returns the wake-up owed to the consumer if it
    /// has parked (the caller redeems it).
    #[inline]
    pub fn commit(mut self) -> Wake {
        self.stage();
        self.prod.publish()
    }

    /// Writes the record without publishing it; a later
    /// [`Producer::publish`] (or a committed grant) publishes every staged
    /// record with one cursor store.
    #[inline]
    pub fn commit_deferred(mut self) {
        self.stage();
    }
}

impl std::ops::Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        #[cfg(not(loom))]
        // SAFETY: payload_off + len lies within the data area (checked in
        // try_reserve) and the producer owns the range until commit: the
        // data area is in our memory, which no other process can write
        // (F_SEAL_FUTURE_WRITE; the peer maps it read-only) and no other
        // producer in this process exists (`Producer::attach` contract); our
        // consumer, if in this process, does not read unpublished bytes.
        return unsafe {
            std::slice::from_raw_parts(self.prod.ring.data.ptr(self.payload_off), self.len)
        };
        #[cfg(loom)]
        return &self.staging;
    }
}

impl std::ops::DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        #[cfg(not(loom))]
        // SAFETY: as in `deref`; `&mut self` makes the borrow exclusive
        // within this process, and no other process can write the range.
        return unsafe {
            std::slice::from_raw_parts_mut(self.prod.ring.data.ptr(self.payload_off), self.len)
        };
        #[cfg(loom)]
        return &mut self.staging;
    }
}
