//! The ring's header, laid out byte by byte (see `docs/shm-layout.md`).
//!
//! Every field is an atomic, including the padding: the peer may write any
//! byte of the header at any time, and a shared reference to a struct is only
//! sound over concurrently-written memory when every byte sits in an
//! `UnsafeCell` (which atomics are). Nothing here is trusted: the
//! configuration line is read once at attach time and validated, cursors are
//! validated on every load.
//!
//! Since layout version 2 every segment holds only words its owner writes:
//! one side's segment carries the producer words of the ring it sends on
//! (configuration, `tail`, `producer_closed`, `writer_park`, data area) and
//! the consumer words of the ring it receives on (`head`,
//! `consumer_closed`, `reader_park`). The peer maps it read-only.

use crate::sync::{AtomicU32, AtomicU64};

/// Magic number at offset 0 of every ring segment: `"SHMSOCK"` + layout tag.
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMSOCKR");
/// Layout version this build writes and accepts.
pub const RING_VERSION: u32 = 3;
/// Size of the header; the data area starts at this offset.
pub const HEADER_SIZE: usize = 1024;
/// Smallest data-area capacity (bytes).
pub const MIN_CAPACITY: u64 = 64;
/// Largest data-area capacity (bytes): 1 TiB.
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Records are aligned to, and their headers are, this many bytes.
pub const RECORD_ALIGN: u64 = 8;
/// Size of a record header (one native-endian `u64`).
pub const RECORD_HEADER: u64 = 8;

/// Flag bit marking a padding record (filler up to the end of the data area).
pub(crate) const FLAG_PAD: u32 = 1 << 31;
/// Flag bits that must be zero in a data record: all but the 16-bit tag.
pub(crate) const FLAG_RESERVED: u32 = !0xffff;

/// One 128-byte line of padding, made of atomics (see module docs).
type Pad<const N: usize> = [AtomicU64; N];

/// The ring header at offset 0 of a ring segment. Side A's segment holds
/// the producer words of ring A→B and the consumer words of ring B→A; all of
/// them are written by A only.
///
/// | line | offset | field | written by (the segment's owner, as) | for ring |
/// |------|--------|-------|--------------------------------------|----------|
/// | 0 | 0   | `magic`            | creator, once      | A→B |
/// | 0 | 8   | `version`          | creator, once      | A→B |
/// | 0 | 12  | `header_size`      | creator, once      | A→B |
/// | 0 | 16  | `capacity`         | creator, once      | A→B |
/// | 1 | 128 | `tail`             | producer           | A→B |
/// | 1 | 136 | `producer_closed`  | producer           | A→B |
/// | 2 | 256 | `head`             | consumer           | B→A |
/// | 2 | 264 | `consumer_closed`  | consumer           | B→A |
/// | 3 | 384 | `reader_park`      | consumer (parker)  | B→A |
/// | 4 | 512 | `writer_park`      | producer (parker)  | A→B |
/// | 5 | 640 | `data_wake`        | producer (waker)   | A→B |
/// | 6 | 768 | `space_wake`       | consumer (waker)   | B→A |
///
/// A park word is a sequence number: odd while its writer is parked, even
/// otherwise; each park makes a new odd value (see `docs/design.md`); bit
/// 63 says which kind of wake-up the parker wants ([`PARK_FUTEX`]).
///
/// A wake word (`data_wake`, `space_wake`, 32 bits, since layout 3) is the
/// futex word a parked peer sleeps on: the waker adds one to it before its
/// `FUTEX_WAKE`, so that a wake-up that comes before the sleeper reaches
/// `FUTEX_WAIT` is seen by the kernel's value check and not lost.
#[repr(C, align(128))]
pub(crate) struct RingHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) header_size: AtomicU32,
    pub(crate) capacity: AtomicU64,
    _pad0: Pad<13>,
    pub(crate) tail: AtomicU64,
    pub(crate) producer_closed: AtomicU32,
    _pad1a: AtomicU32,
    _pad1: Pad<14>,
    pub(crate) head: AtomicU64,
    pub(crate) consumer_closed: AtomicU32,
    _pad2a: AtomicU32,
    _pad2: Pad<14>,
    pub(crate) reader_park: AtomicU64,
    _pad3: Pad<15>,
    pub(crate) writer_park: AtomicU64,
    _pad4: Pad<15>,
    pub(crate) data_wake: AtomicU32,
    _pad5a: AtomicU32,
    _pad5: Pad<15>,
    pub(crate) space_wake: AtomicU32,
    _pad6a: AtomicU32,
    _pad6: Pad<15>,
    _reserved: Pad<16>,
}

/// Bit 63 of a park word: the parker sleeps on the futex word of the
/// waker's segment (`data_wake`/`space_wake`) and wants a `FUTEX_WAKE`;
/// clear: it sleeps on the socket (or an event loop polls it) and wants a
/// wake-up datagram.
pub const PARK_FUTEX: u64 = 1 << 63;

#[cfg(not(loom))]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RingHeader>() == HEADER_SIZE);
    assert!(align_of::<RingHeader>() == 128);
    assert!(offset_of!(RingHeader, magic) == 0);
    assert!(offset_of!(RingHeader, version) == 8);
    assert!(offset_of!(RingHeader, header_size) == 12);
    assert!(offset_of!(RingHeader, capacity) == 16);
    assert!(offset_of!(RingHeader, tail) == 128);
    assert!(offset_of!(RingHeader, producer_closed) == 136);
    assert!(offset_of!(RingHeader, head) == 256);
    assert!(offset_of!(RingHeader, consumer_closed) == 264);
    assert!(offset_of!(RingHeader, reader_park) == 384);
    assert!(offset_of!(RingHeader, writer_park) == 512);
    assert!(offset_of!(RingHeader, data_wake) == 640);
    assert!(offset_of!(RingHeader, space_wake) == 768);
};

#[cfg(loom)]
impl RingHeader {
    /// A heap header for loom models (loom atomics cannot be laid over raw
    /// bytes).
    pub(crate) fn new_loom(capacity: u64) -> Self {
        fn pad<const N: usize>() -> Pad<N> {
            std::array::from_fn(|_| AtomicU64::new(0))
        }
        RingHeader {
            magic: AtomicU64::new(RING_MAGIC),
            version: AtomicU32::new(RING_VERSION),
            header_size: AtomicU32::new(HEADER_SIZE as u32),
            capacity: AtomicU64::new(capacity),
            _pad0: pad(),
            tail: AtomicU64::new(0),
            producer_closed: AtomicU32::new(0),
            _pad1a: AtomicU32::new(0),
            _pad1: pad(),
            head: AtomicU64::new(0),
            consumer_closed: AtomicU32::new(0),
            _pad2a: AtomicU32::new(0),
            _pad2: pad(),
            reader_park: AtomicU64::new(0),
            _pad3: pad(),
            writer_park: AtomicU64::new(0),
            _pad4: pad(),
            data_wake: AtomicU32::new(0),
            _pad5a: AtomicU32::new(0),
            _pad5: pad(),
            space_wake: AtomicU32::new(0),
            _pad6a: AtomicU32::new(0),
            _pad6: pad(),
            _reserved: pad(),
        }
    }
}

/// Total size of a record carrying `len` payload bytes: header plus payload
/// rounded up to [`RECORD_ALIGN`].
#[inline]
pub(crate) const fn record_size(len: u64) -> u64 {
    RECORD_HEADER + ((len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1))
}

/// Packs a record header word.
#[inline]
pub(crate) const fn pack(len: u32, flags: u32) -> u64 {
    (len as u64) | ((flags as u64) << 32)
}

/// Unpacks a record header word into `(len, flags)`.
#[inline]
pub(crate) const fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// Largest payload of one record in a ring of `capacity` bytes. Half the ring,
/// so that a record always fits once the ring drains, whatever the wrap point.
#[inline]
pub const fn max_record_len(capacity: u64) -> u64 {
    capacity / 2 - RECORD_HEADER
}

/// Size of the segment holding a ring of `capacity` bytes.
#[inline]
pub const fn segment_size(capacity: u64) -> u64 {
    HEADER_SIZE as u64 + capacity
}
