//! A lock-free single-producer/single-consumer ring of variable-length
//! records, laid out in shared memory and safe against a lying peer.
//!
//! Design after rtrb (producer/consumer halves, cached peer cursor) and the
//! Linux `io_uring`/`virtio` rings (free-running 64-bit cursors masked into a
//! power-of-two area); record framing after LMAX/Aeron log buffers (a length
//! word, padding records at the wrap). The memory-ordering argument is in
//! `docs/design.md`; each Release/Acquire pair is labelled `SYNC POINT`.
//!
//! # Unsafe
//! This module keeps one invariant: `RingShared::prod`, `RingShared::cons`
//! and `RingShared::data` point into memory that lives as long as the
//! `RingShared` (it holds the owners), the headers are 128-aligned and the
//! data area is `cap` bytes. A half writes only the memory it owns (the
//! producer `prod` and the data area, the consumer the consumer words of
//! `cons`), and attaching refuses memory this process cannot write where
//! the half needs to: the peer's segment is mapped read-only.
//! Offsets used on the data area are always `pos & mask` of an 8-aligned
//! position plus a length that was checked to end before `cap`.

mod consumer;
#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod data;
pub(crate) mod layout;
mod producer;
mod wake;

use std::sync::Arc;

pub use consumer::{Consumer, ReadGuard, RecordHead};
pub use layout::{
    max_record_len, segment_size, HEADER_SIZE, MAX_CAPACITY, MIN_CAPACITY, PARK_FUTEX,
    RECORD_ALIGN, RECORD_HEADER, RING_MAGIC, RING_VERSION,
};
pub use producer::{Producer, WriteGrant};
#[cfg(not(loom))]
pub use wake::{Slept, WakeWord};
pub use wake::{Wake, WakeKind};

use crate::error::{Error, Result, Violation};
#[cfg(not(loom))]
use crate::sync::Ordering;
use data::Data;
use layout::RingHeader;

/// Memory a ring can live in: a shared [`crate::Segment`] in production, a
/// [`HeapMemory`] in tests and single-process use.
///
/// # Safety
/// `base()` must be 128-byte aligned and valid for reads of `size()` bytes,
/// at a fixed address, for as long as the value lives; if `writable()`
/// returns `true` it must be valid for writes as well.
pub unsafe trait RingMemory: Send + Sync + 'static {
    /// Start of the memory.
    fn base(&self) -> *mut u8;
    /// Length of the memory in bytes.
    fn size(&self) -> usize;
    /// Whether this process may write the memory. The peer's segment is
    /// mapped read-only: no ring half writes it.
    fn writable(&self) -> bool;
}

#[cfg(not(loom))]
// SAFETY: a Segment maps `len` bytes page-aligned (so 128-aligned) and keeps
// the mapping until it is dropped; the size is sealed, so it cannot shrink;
// it reports itself writable only if it was mapped `PROT_WRITE`.
unsafe impl RingMemory for crate::Segment {
    fn base(&self) -> *mut u8 {
        self.as_ptr()
    }
    fn size(&self) -> usize {
        self.len()
    }
    fn writable(&self) -> bool {
        self.is_writable()
    }
}

/// Zeroed, 4096-aligned heap memory for a ring that stays in one process.
#[derive(Debug)]
pub struct HeapMemory {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: HeapMemory owns its allocation; all access goes through raw
// pointers whose use the ring synchronises with atomics.
unsafe impl Send for HeapMemory {}
// SAFETY: as above; `&HeapMemory` only exposes the base pointer.
unsafe impl Sync for HeapMemory {}

impl HeapMemory {
    /// Allocates `len` zeroed bytes.
    ///
    /// # Errors
    /// [`Error::TooLarge`] if `len` is zero or cannot be allocated.
    pub fn new(len: usize) -> Result<Self> {
        let layout =
            std::alloc::Layout::from_size_align(len, 4096).map_err(|_| Error::TooLarge {
                size: len as u64,
                max: isize::MAX as u64,
            })?;
        if len == 0 {
            return Err(Error::TooLarge { size: 0, max: 0 });
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).ok_or(Error::TooLarge {
            size: len as u64,
            max: 0,
        })?;
        Ok(HeapMemory { ptr, layout })
    }
}

impl Drop for HeapMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: the allocation is 4096-aligned, `layout.size()` bytes, readable
// and writable, and lives until drop.
unsafe impl RingMemory for HeapMemory {
    fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn size(&self) -> usize {
        self.layout.size()
    }
    fn writable(&self) -> bool {
        true
    }
}

/// How a publish (or release) is ordered against the peer's park: the two
/// fences of SYNC POINT `park-dekker` (`docs/design.md`).
///
/// Both halves of a ring must use the same mode, and
/// [`Fences::Asymmetric`] is correct only if both processes registered for
/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` ([`crate::membarrier::register`]): the
/// transport agrees on it in the handshake. A wrong choice can lose
/// wake-ups (liveness), never memory safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fences {
    /// A SeqCst fence on both sides (every publish and release pays one).
    #[default]
    Symmetric,
    /// No fence on the hot path (a compiler fence only); the side that
    /// parks pays with `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which
    /// runs a full barrier on every CPU running a registered process.
    Asymmetric,
}

impl Fences {
    /// The fast side's half of `park-dekker` (publish, release).
    #[inline]
    pub(crate) fn fast(self) {
        match self {
            Fences::Symmetric => crate::sync::fence(crate::sync::Ordering::SeqCst),
            // The store before and the load after must not be reordered by
            // the compiler; the CPU may reorder them, and the parker's
            // membarrier makes that harmless (docs/design.md).
            Fences::Asymmetric => {
                std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst)
            }
        }
    }

    /// The parking side's half of `park-dekker`.
    #[inline]
    pub(crate) fn heavy(self) {
        match self {
            Fences::Symmetric => crate::sync::fence(crate::sync::Ordering::SeqCst),
            Fences::Asymmetric => {
                #[cfg(not(loom))]
                crate::membarrier::global_barrier();
                #[cfg(loom)]
                crate::sync::fence(crate::sync::Ordering::SeqCst);
            }
        }
    }
}

/// The kind of wake-up a park word asks for.
pub(crate) fn wake_kind(park: u64) -> WakeKind {
    if park & PARK_FUTEX != 0 {
        WakeKind::Futex
    } else {
        WakeKind::Socket
    }
}

/// A park sequence word's private copy, kept by the side that parks (the
/// only writer of that word): odd while parked, a new odd value for every
/// park episode, so that the waker owes exactly one wake-up per episode.
/// Bit 63 of the word ([`PARK_FUTEX`]) is not part of the sequence: it
/// says which kind of wake-up this episode wants.
#[derive(Debug, Default)]
pub(crate) struct ParkSeq(std::cell::Cell<u64>);

impl ParkSeq {
    /// Resumes from the value the word had at attach time.
    #[cfg_attr(loom, allow(dead_code))] // attach is not modelled
    pub(crate) fn set(&self, value: u64) {
        self.0.set(value & !PARK_FUTEX);
    }

    /// Starts a new park episode: `word` becomes a new odd value (parking
    /// while parked starts a new one too) carrying `kind`, then the fence
    /// of SYNC POINT `park-dekker`, which orders the store before the
    /// caller's re-check and pairs with the fence on the waking side.
    pub(crate) fn park(&self, word: &crate::sync::AtomicU64, kind: WakeKind, fences: Fences) {
        let s = self.0.get();
        let next = s.wrapping_add(if s % 2 == 1 { 2 } else { 1 }) & !PARK_FUTEX;
        self.0.set(next);
        let flag = if kind == WakeKind::Futex {
            PARK_FUTEX
        } else {
            0
        };
        // Release: orders everything before it (in `park_after_snapshot`,
        // the snapshot of the peer's wake word) before a waker that loads
        // this value (and then fences, `Wake::owed`) bumps that word.
        // Ordered before the caller's re-check by the fence below. Our own
        // word.
        word.store(next | flag, crate::sync::Ordering::Release);
        fences.heavy();
    }

    /// Takes a snapshot of the peer's wake word `wake`, then starts a park
    /// episode as [`ParkSeq::park`] does; returns the snapshot, the value
    /// to sleep on (`FUTEX_WAIT`) if the re-check finds nothing.
    ///
    /// The snapshot must come before the episode begins (SYNC POINT
    /// `wake-word`): a waker owes this episode one wake-up, and may pay it
    /// as soon as it sees the episode, with a check that follows a publish
    /// made *before* we parked (one whose record we already took). Taken
    /// after the park store, the snapshot could already contain that bump:
    /// the re-check finds nothing new, the sleep waits for a change of the
    /// word, and the waker's later publishes owe nothing more for this
    /// episode. Taken before, it contains no bump owed to this episode
    /// (loom model `futex_wakeup_spent_before_the_sleep_is_owed_again`).
    pub(crate) fn park_after_snapshot(
        &self,
        word: &crate::sync::AtomicU64,
        kind: WakeKind,
        fences: Fences,
        wake: &crate::sync::AtomicU32,
    ) -> u32 {
        // SYNC POINT `wake-word`: Relaxed load (the peer's word, possibly in
        // a read-only mapping) + Acquire fence, pairing with the Release
        // bump in the waker's `futex_wake`: if we see a bump, the re-check
        // that follows sees the cursor store before it. The fence also
        // keeps this load before our park store below.
        let snap = wake.load(crate::sync::Ordering::Relaxed);
        crate::sync::fence(crate::sync::Ordering::Acquire);
        self.park(word, kind, fences);
        snap
    }

    /// Ends the park episode, if one is open: `word` becomes even.
    pub(crate) fn unpark(&self, word: &crate::sync::AtomicU64) {
        let s = self.0.get();
        if s % 2 == 1 {
            self.0.set(s.wrapping_add(1));
            // Relaxed: a stale odd value costs the waker one spurious
            // wake-up.
            word.store(s.wrapping_add(1), crate::sync::Ordering::Relaxed);
        }
    }
}

/// Checks a requested capacity.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn check_capacity(capacity: u64) -> Result<()> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(Error::BadCapacity(capacity));
    }
    Ok(())
}

/// One process's view of a ring: the producer's header and data area
/// (`prod`, written only by the producer) and the consumer's header
/// (`cons`, whose `head`, `consumer_closed` and `reader_park` only the
/// consumer writes). Across processes they lie in the two sides' segments;
/// in one process (heap rings, tests, loom) they may be the same memory.
pub(crate) struct RingShared {
    #[cfg(not(loom))]
    prod: std::ptr::NonNull<RingHeader>,
    #[cfg(not(loom))]
    cons: std::ptr::NonNull<RingHeader>,
    #[cfg(loom)]
    prod: Box<RingHeader>,
    #[cfg(loom)]
    cons: Box<RingHeader>,
    pub(crate) data: Data,
    /// Capacity, read once at attach time and validated; never re-read.
    pub(crate) cap: u64,
    pub(crate) mask: u64,
    /// Keeps the producer's memory alive (unused under loom).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) prod_mem: Option<Arc<dyn RingMemory>>,
    /// Keeps the consumer's memory alive (unused under loom).
    #[cfg_attr(loom, allow(dead_code))]
    _cons_mem: Option<Arc<dyn RingMemory>>,
}

// SAFETY: the pointers target memory owned by `prod_mem`/`cons_mem` (Send +
// Sync); every concurrent access goes through atomics, and byte ranges are
// handed between the halves by the cursor protocol.
unsafe impl Send for RingShared {}
// SAFETY: as above.
unsafe impl Sync for RingShared {}

/// Checks that `mem` can hold a ring header (size, alignment) and returns a
/// pointer to it.
#[cfg(not(loom))]
fn header_of(mem: &dyn RingMemory, min: u64) -> Result<std::ptr::NonNull<RingHeader>> {
    let base = mem.base();
    if (mem.size() as u64) < min || base.align_offset(128) != 0 {
        return Err(Violation::BadGeometry {
            what: "segment too small or misaligned for a ring",
        }
        .into());
    }
    std::ptr::NonNull::new(base.cast::<RingHeader>()).ok_or_else(|| {
        Violation::BadGeometry {
            what: "null segment",
        }
        .into()
    })
}

/// Validates the identification words of a header (magic, version, header
/// size), each loaded once.
#[cfg(not(loom))]
fn check_ident(hdr: &RingHeader) -> Result<()> {
    // Relaxed: configuration words, ordered by the fd transfer; each is
    // loaded exactly once and validated. Relaxed loads also work on the
    // read-only mapping of the peer's segment.
    let magic = hdr.magic.load(Ordering::Relaxed);
    let version = hdr.version.load(Ordering::Relaxed);
    let header_size = hdr.header_size.load(Ordering::Relaxed);
    if magic != RING_MAGIC {
        return Err(Violation::BadMagic {
            found: magic,
            expected: RING_MAGIC,
        }
        .into());
    }
    if version != RING_VERSION {
        return Err(Violation::BadVersion {
            found: version,
            expected: RING_VERSION,
        }
        .into());
    }
    if header_size as usize != HEADER_SIZE {
        return Err(Violation::BadGeometry {
            what: "header size field",
        }
        .into());
    }
    Ok(())
}

impl RingShared {
    /// The producer's header: configuration, `tail`, `producer_closed`,
    /// `writer_park`. Only the producer writes it.
    #[inline]
    pub(crate) fn prod(&self) -> &RingHeader {
        #[cfg(not(loom))]
        // SAFETY: `prod` points at the start of memory `prod_mem` keeps
        // alive, 128-aligned and at least HEADER_SIZE bytes (checked at
        // attach); all fields are atomics, so a shared reference tolerates
        // concurrent writes, and the consumer side (which may map it
        // read-only) only loads them, Relaxed.
        return unsafe { self.prod.as_ref() };
        #[cfg(loom)]
        return &self.prod;
    }

    /// The consumer's header: `head`, `consumer_closed`, `reader_park`.
    /// Only the consumer writes these words.
    #[inline]
    pub(crate) fn cons(&self) -> &RingHeader {
        #[cfg(not(loom))]
        // SAFETY: as in `prod`, for `cons_mem`.
        return unsafe { self.cons.as_ref() };
        #[cfg(loom)]
        return &self.cons;
    }

    /// Writes a fresh header into `mem` (the creating side). Overwrites
    /// whatever was there.
    #[cfg(not(loom))]
    fn initialize(mem: &dyn RingMemory, capacity: u64) -> Result<()> {
        check_capacity(capacity)?;
        if (mem.size() as u64) != segment_size(capacity) {
            return Err(Error::WrongSize {
                expected: segment_size(capacity),
                actual: mem.size() as u64,
            });
        }
        if !mem.writable() {
            return Err(Error::ReadOnly { half: "producer" });
        }
        let hdr = header_of(mem, segment_size(capacity))?;
        // SAFETY: aligned, large enough and writable (checked above);
        // atomics only.
        let hdr = unsafe { hdr.as_ref() };
        // Relaxed: the header reaches the peer only after the segment's fd
        // crosses the socket, which orders it (and nothing reads it before).
        hdr.tail.store(0, Ordering::Relaxed);
        hdr.head.store(0, Ordering::Relaxed);
        hdr.producer_closed.store(0, Ordering::Relaxed);
        hdr.consumer_closed.store(0, Ordering::Relaxed);
        hdr.reader_park.store(0, Ordering::Relaxed);
        hdr.writer_park.store(0, Ordering::Relaxed);
        hdr.data_wake.store(0, Ordering::Relaxed);
        hdr.space_wake.store(0, Ordering::Relaxed);
        hdr.capacity.store(capacity, Ordering::Relaxed);
        hdr.header_size.store(HEADER_SIZE as u32, Ordering::Relaxed);
        hdr.version.store(RING_VERSION, Ordering::Relaxed);
        hdr.magic.store(RING_MAGIC, Ordering::Relaxed);
        Ok(())
    }

    /// Validates the producer's header in `prod` (identification and
    /// geometry) and the consumer's header in `cons` (identification), and
    /// builds a view of the ring. Writability is the halves' business.
    #[cfg(not(loom))]
    fn attach(prod: Arc<dyn RingMemory>, cons: Arc<dyn RingMemory>) -> Result<Self> {
        let size = prod.size() as u64;
        let prod_hdr = header_of(&*prod, HEADER_SIZE as u64 + MIN_CAPACITY)?;
        let cons_hdr = header_of(&*cons, HEADER_SIZE as u64)?;
        // SAFETY: aligned and at least HEADER_SIZE bytes (checked above);
        // atomics only, so concurrent writes are tolerated, and only loaded
        // here (the memory may be read-only).
        let hdr = unsafe { prod_hdr.as_ref() };
        check_ident(hdr)?;
        // SAFETY: as above, for the consumer's memory.
        check_ident(unsafe { cons_hdr.as_ref() })?;
        // Relaxed: configuration word, ordered by the fd transfer; loaded
        // exactly once and validated.
        let cap = hdr.capacity.load(Ordering::Relaxed);
        if check_capacity(cap).is_err() {
            return Err(Violation::BadGeometry {
                what: "capacity not a power of two in range",
            }
            .into());
        }
        if segment_size(cap) != size {
            return Err(Violation::BadGeometry {
                what: "capacity disagrees with segment size",
            }
            .into());
        }
        // SAFETY: HEADER_SIZE + cap == size (checked), so the data area is
        // in bounds; HEADER_SIZE is a multiple of 128, so it stays aligned.
        let data = unsafe { Data::new(prod.base().add(HEADER_SIZE)) };
        Ok(RingShared {
            prod: prod_hdr,
            cons: cons_hdr,
            data,
            cap,
            mask: cap - 1,
            prod_mem: Some(prod),
            _cons_mem: Some(cons),
        })
    }

    #[cfg(loom)]
    pub(crate) fn new_loom(capacity: u64) -> Self {
        RingShared {
            prod: Box::new(RingHeader::new_loom(capacity)),
            cons: Box::new(RingHeader::new_loom(capacity)),
            data: Data::new_loom(capacity as usize),
            cap: capacity,
            mask: capacity - 1,
            prod_mem: None,
            _cons_mem: None,
        }
    }

    /// Validates a cursor value read from the peer: aligned.
    #[inline]
    pub(crate) fn check_aligned(value: u64) -> Result<(), Violation> {
        if !value.is_multiple_of(RECORD_ALIGN) {
            return Err(Violation::Misaligned { value });
        }
        Ok(())
    }
}

/// Writes a fresh ring header of `capacity` bytes into `mem`.
///
/// The memory must be exactly [`segment_size`]`(capacity)` bytes.
///
/// # Errors
/// [`Error::BadCapacity`], [`Error::WrongSize`], or [`Error::ReadOnly`].
#[cfg(not(loom))]
pub fn initialize(mem: &dyn RingMemory, capacity: u64) -> Result<()> {
    RingShared::initialize(mem, capacity)
}

/// Creates a ring of `capacity` bytes in process-local heap memory and
/// returns both halves.
///
/// # Errors
/// [`Error::BadCapacity`] if `capacity` is not a power of two in
/// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
#[cfg(not(loom))]
pub fn heap_ring(capacity: u64) -> Result<(Producer, Consumer)> {
    check_capacity(capacity)?;
    let mem = HeapMemory::new(segment_size(capacity) as usize)?;
    initialize(&mem, capacity)?;
    let mem: Arc<dyn RingMemory> = Arc::new(mem);
    // SAFETY: the memory was allocated just above and nothing else holds
    // it: this is the only producer of the ring.
    let prod = unsafe { Producer::attach(mem.clone(), mem.clone()) }?;
    Ok((prod, Consumer::attach(mem.clone(), mem)?))
}

/// Creates a sealed memfd [`crate::Segment`] holding a fresh ring of
/// `capacity` bytes, and returns it with the ring's only [`Producer`].
///
/// The producer reads the consumer's words from the same segment at first
/// (a consumer in this process attaches with
/// `Consumer::attach(seg.clone(), seg)`); when the consumer is the peer,
/// point the producer at the peer's segment with
/// [`Producer::with_consumer_words`].
///
/// # Errors
/// [`Error::BadCapacity`], or [`Error::Io`] if the memfd cannot be made.
#[cfg(not(loom))]
pub fn create_segment(
    name: &std::ffi::CStr,
    capacity: u64,
    opts: crate::SegmentOptions,
) -> Result<(Arc<crate::Segment>, Producer)> {
    check_capacity(capacity)?;
    let seg = crate::Segment::create(name, segment_size(capacity), opts)?;
    initialize(&seg, capacity)?;
    let seg = Arc::new(seg);
    let mem: Arc<dyn RingMemory> = seg.clone();
    // SAFETY: the segment was created just above and only `seg` holds it:
    // this is the only producer of the ring in this process, and nobody
    // else can write it (F_SEAL_FUTURE_WRITE).
    let prod = unsafe { Producer::attach(mem.clone(), mem) }?;
    Ok((seg, prod))
}

#[cfg(loom)]
/// Both halves over one loom-modelled ring.
pub fn loom_ring(capacity: u64) -> (Producer, Consumer) {
    let shared = Arc::new(RingShared::new_loom(capacity));
    (
        Producer::from_shared(shared.clone(), 0, 0),
        Consumer::from_shared(shared, 0),
    )
}

#[cfg(test)]
mod tests;
