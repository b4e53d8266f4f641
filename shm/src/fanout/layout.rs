//! The fan-out ring's two segment layouts, byte by byte (see
//! `docs/services.md`).
//!
//! As in the SPSC ring, every field is an atomic (padding included): the
//! peer may write any byte of its own segment at any time, and a shared
//! reference over concurrently written memory is only sound when every
//! byte sits in an `UnsafeCell`. Nothing here is trusted by the other side.

use crate::sync::{AtomicU32, AtomicU64};

/// Magic at offset 0 of a publisher's data segment.
pub const FANOUT_MAGIC: u64 = u64::from_le_bytes(*b"SHMSOCKF");
/// Magic at offset 0 of a subscriber's cursor segment.
pub const CURSOR_MAGIC: u64 = u64::from_le_bytes(*b"SHMSOCKC");
/// Layout version of both segments.
pub const FANOUT_VERSION: u32 = 1;
/// Size of the data segment's header; the data area starts here.
pub const FANOUT_HEADER_SIZE: usize = 1024;
/// Size of a subscriber's cursor segment (one page).
pub const CURSOR_SEGMENT_SIZE: u64 = 4096;
/// Size of a data record's header: the length/flags word and the sequence
/// number.
pub const FANOUT_RECORD_HEADER: u64 = 16;
/// Size of a padding record's header (the length/flags word only).
pub(crate) const PAD_HEADER: u64 = 8;
/// Flag bit of a padding record.
pub(crate) const FLAG_PAD: u32 = 1 << 31;

/// Policy code stored in the header: [`Policy::Block`](super::Policy::Block).
pub(crate) const POLICY_BLOCK: u32 = 1;
/// Policy code stored in the header: [`Policy::DropOldest`](super::Policy::DropOldest).
pub(crate) const POLICY_DROP_OLDEST: u32 = 2;

type Pad<const N: usize> = [AtomicU64; N];

/// Header of the publisher's data segment. Every word is written by the
/// publisher only; subscribers map the segment read-only.
///
/// | line | offset | field | written | read by subscribers |
/// |------|--------|-------|---------|---------------------|
/// | 0 | 0   | `magic`       | once | once at attach |
/// | 0 | 8   | `version`     | once | once at attach |
/// | 0 | 12  | `header_size` | once | once at attach |
/// | 0 | 16  | `capacity`    | once | once at attach |
/// | 0 | 24  | `policy`      | once | once at attach |
/// | 1 | 128 | `tail`        | after each publish (Release) | to find data |
/// | 1 | 136 | `intent`      | before each overwrite        | after each copy (DropOldest) |
/// | 1 | 144 | `oldest`      | before each overwrite        | when lapped |
/// | 1 | 152 | `closed`      | once, at close (Release)     | when empty |
/// | 2 | 256 | `writer_park` | parker (Block, waiting)      | after each cursor store |
#[repr(C, align(128))]
pub(crate) struct FanoutHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) header_size: AtomicU32,
    pub(crate) capacity: AtomicU64,
    pub(crate) policy: AtomicU32,
    _pad0a: AtomicU32,
    _pad0: Pad<12>,
    pub(crate) tail: AtomicU64,
    pub(crate) intent: AtomicU64,
    pub(crate) oldest: AtomicU64,
    pub(crate) closed: AtomicU32,
    _pad1a: AtomicU32,
    _pad1: Pad<12>,
    pub(crate) writer_park: AtomicU64,
    _pad2: Pad<15>,
    _reserved: Pad<80>,
}

/// Header of a subscriber's cursor segment (the whole segment is
/// [`CURSOR_SEGMENT_SIZE`] bytes). Every word is written by the subscriber
/// only; the publisher maps the segment read-only.
///
/// | line | offset | field | written | read by the publisher |
/// |------|--------|-------|---------|-----------------------|
/// | 0 | 0   | `magic`       | once | once at attach |
/// | 0 | 8   | `version`     | once | once at attach |
/// | 1 | 128 | `cursor`      | after each message read (Release) | when short of space (Block) |
/// | 2 | 256 | `reader_park` | parker | after each publish |
#[repr(C, align(128))]
pub(crate) struct CursorHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    _pad0a: AtomicU32,
    _pad0: Pad<14>,
    pub(crate) cursor: AtomicU64,
    _pad1: Pad<15>,
    pub(crate) reader_park: AtomicU64,
    _pad2: Pad<15>,
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<FanoutHeader>() == FANOUT_HEADER_SIZE);
    assert!(align_of::<FanoutHeader>() == 128);
    assert!(offset_of!(FanoutHeader, magic) == 0);
    assert!(offset_of!(FanoutHeader, version) == 8);
    assert!(offset_of!(FanoutHeader, header_size) == 12);
    assert!(offset_of!(FanoutHeader, capacity) == 16);
    assert!(offset_of!(FanoutHeader, policy) == 24);
    assert!(offset_of!(FanoutHeader, tail) == 128);
    assert!(offset_of!(FanoutHeader, intent) == 136);
    assert!(offset_of!(FanoutHeader, oldest) == 144);
    assert!(offset_of!(FanoutHeader, closed) == 152);
    assert!(offset_of!(FanoutHeader, writer_park) == 256);
    assert!(size_of::<CursorHeader>() == 384);
    assert!(offset_of!(CursorHeader, cursor) == 128);
    assert!(offset_of!(CursorHeader, reader_park) == 256);
    assert!(size_of::<CursorHeader>() as u64 <= CURSOR_SEGMENT_SIZE);
};

#[cfg(loom)]
fn pad<const N: usize>() -> Pad<N> {
    std::array::from_fn(|_| AtomicU64::new(0))
}

#[cfg(loom)]
impl FanoutHeader {
    /// A heap header for loom models (loom atomics cannot be laid over raw
    /// bytes), as [`FanoutWriter::create`](super::FanoutWriter::create)
    /// writes it.
    pub(crate) fn new_loom(capacity: u64, policy: u32) -> Self {
        FanoutHeader {
            magic: AtomicU64::new(FANOUT_MAGIC),
            version: AtomicU32::new(FANOUT_VERSION),
            header_size: AtomicU32::new(FANOUT_HEADER_SIZE as u32),
            capacity: AtomicU64::new(capacity),
            policy: AtomicU32::new(policy),
            _pad0a: AtomicU32::new(0),
            _pad0: pad(),
            tail: AtomicU64::new(0),
            intent: AtomicU64::new(0),
            oldest: AtomicU64::new(0),
            closed: AtomicU32::new(0),
            _pad1a: AtomicU32::new(0),
            _pad1: pad(),
            writer_park: AtomicU64::new(0),
            _pad2: pad(),
            _reserved: pad(),
        }
    }
}

#[cfg(loom)]
impl CursorHeader {
    /// A heap cursor header for loom models, as
    /// [`create_cursor_segment`](super::create_cursor_segment) writes it.
    pub(crate) fn new_loom(start: u64) -> Self {
        CursorHeader {
            magic: AtomicU64::new(CURSOR_MAGIC),
            version: AtomicU32::new(FANOUT_VERSION),
            _pad0a: AtomicU32::new(0),
            _pad0: pad(),
            cursor: AtomicU64::new(start),
            _pad1: pad(),
            reader_park: AtomicU64::new(0),
            _pad2: pad(),
        }
    }
}

/// Size of a data record carrying `len` payload bytes: the 16-byte header
/// plus the payload rounded up to 8.
#[inline]
pub(crate) const fn record_size(len: u64) -> u64 {
    FANOUT_RECORD_HEADER + ((len + 7) & !7)
}

/// Largest payload of one record: a record never exceeds half the ring, so
/// that it fits whatever the wrap point.
#[inline]
pub const fn fanout_max_record_len(capacity: u64) -> u64 {
    capacity / 2 - FANOUT_RECORD_HEADER
}

/// Size of a data segment holding a fan-out ring of `capacity` bytes.
#[inline]
pub const fn fanout_segment_size(capacity: u64) -> u64 {
    FANOUT_HEADER_SIZE as u64 + capacity
}
