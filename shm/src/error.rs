//! Errors of the shared-memory layer.

use std::io;

use thiserror::Error;

/// What a peer wrote into shared memory that broke the ring protocol.
///
/// Every variant carries the offending values, as read once from shared
/// memory, so that a log line says exactly what the peer did.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Violation {
    /// The header's magic number is not [`crate::ring::RING_MAGIC`].
    #[error("ring header magic is {found:#018x}, expected {expected:#018x}")]
    BadMagic {
        /// Magic read from the header.
        found: u64,
        /// Magic this build writes.
        expected: u64,
    },
    /// The header's layout version is not the one this build speaks.
    #[error("ring layout version {found}, this build speaks {expected}")]
    BadVersion {
        /// Version read from the header.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// The header's capacity or header size disagrees with the segment.
    #[error("ring geometry invalid: {what}")]
    BadGeometry {
        /// Which check failed.
        what: &'static str,
    },
    /// The producer cursor moved backwards.
    #[error("producer cursor went backwards: {prev} -> {now}")]
    TailBackwards {
        /// Last valid value seen.
        prev: u64,
        /// Value just read.
        now: u64,
    },
    /// The producer cursor claims more bytes than the ring holds.
    #[error(
        "producer cursor {tail} is more than capacity {capacity} ahead of consumer cursor {head}"
    )]
    TailBeyondCapacity {
        /// Value read.
        tail: u64,
        /// Our consumer cursor.
        head: u64,
        /// Ring capacity.
        capacity: u64,
    },
    /// The consumer cursor moved backwards.
    #[error("consumer cursor went backwards: {prev} -> {now}")]
    HeadBackwards {
        /// Last valid value seen.
        prev: u64,
        /// Value just read.
        now: u64,
    },
    /// The consumer cursor passed what the producer published.
    #[error("consumer cursor {head} is beyond the published producer cursor {tail}")]
    HeadBeyondTail {
        /// Value read.
        head: u64,
        /// Our published producer cursor.
        tail: u64,
    },
    /// A cursor is not a multiple of the record alignment.
    #[error("cursor {value} is not 8-byte aligned")]
    Misaligned {
        /// Value read.
        value: u64,
    },
    /// A fan-out record carries a sequence number other than the one due
    /// (or, after being lapped, one that goes backwards).
    #[error("record at {pos} has sequence number {found}, expected {expected}")]
    BadSequence {
        /// Stream position of the record.
        pos: u64,
        /// Sequence number due (the least acceptable after a lap).
        expected: u64,
        /// Sequence number read.
        found: u64,
    },
    /// A record header describes a record that does not fit.
    #[error("record at {pos} has length {len}, flags {flags:#x}: {what}")]
    BadRecord {
        /// Stream position of the record.
        pos: u64,
        /// Length field read.
        len: u32,
        /// Flag field read.
        flags: u32,
        /// Which check failed.
        what: &'static str,
    },
}

/// Errors of the shared-memory layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation that failed (`memfd_create`, `mmap`, ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The fd is not a sealable shared-memory file (a pipe, socket, regular
    /// file on disk, ...): `F_GET_SEALS` refused it.
    #[error("fd is not a sealable memfd: {0}")]
    NotMemfd(#[source] io::Error),
    /// The memfd lacks seals this side requires.
    #[error("memfd seals {have:#x} lack required seals {need:#x}")]
    MissingSeals {
        /// Seals present.
        have: u32,
        /// Seals required. For a read-only attach this includes both write
        /// seals (`F_SEAL_WRITE | F_SEAL_FUTURE_WRITE`), of which either one
        /// is enough.
        need: u32,
    },
    /// The memfd's size is not the size agreed on.
    #[error("memfd is {actual} bytes, expected {expected}")]
    WrongSize {
        /// Size agreed on.
        expected: u64,
        /// Size `fstat` reports.
        actual: u64,
    },
    /// The memfd has the agreed size but not that much memory allocated to
    /// it: a sparse file (only `ftruncate`d), or one with holes punched.
    /// Mapping and touching it would make *us* allocate the pages the peer
    /// never paid for, so it is refused before `mmap`.
    #[error("memfd of {size} bytes has only {allocated} bytes allocated (sparse)")]
    NotFullyBacked {
        /// Size of the file.
        size: u64,
        /// Bytes allocated to it (`st_blocks * 512`).
        allocated: u64,
    },
    /// A size exceeds the configured maximum.
    #[error("size {size} exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size requested or found.
        size: u64,
        /// Configured limit.
        max: u64,
    },
    /// A requested ring capacity is not usable.
    #[error("invalid ring capacity {0}: must be a power of two between 64 B and 1 TiB")]
    BadCapacity(u64),
    /// A record is larger than the ring can ever hold.
    #[error("record of {len} bytes exceeds the ring's record limit of {max} bytes")]
    RecordTooLarge {
        /// Requested length.
        len: usize,
        /// Largest record the ring accepts.
        max: usize,
    },
    /// A [`RecordHead`](crate::ring::RecordHead) passed to
    /// [`Consumer::read`](crate::ring::Consumer::read) does not describe the
    /// record at the consumer's cursor (a caller bug, not the peer's).
    #[error("record head does not match the consumer's cursor")]
    StaleRecord,
    /// The operation needs the other fan-out policy (in-place reads need
    /// `Policy::Block`).
    #[error("{0}")]
    WrongPolicy(&'static str),
    /// The peer broke the ring protocol; the ring is poisoned.
    #[error("ring protocol violation by peer: {0}")]
    Protocol(#[from] Violation),
    /// The peer closed its end and everything it published has been read.
    #[error("peer closed the ring")]
    Closed,
    /// An earlier protocol violation poisoned this ring.
    #[error("ring is poisoned by an earlier protocol violation")]
    Poisoned,
    /// A ring half was asked to write memory this process maps read-only
    /// (a producer over the peer's segment, or a consumer whose cursor
    /// words are in it).
    #[error("the {half} words of a ring must lie in memory this process can write")]
    ReadOnly {
        /// `"producer"` or `"consumer"`.
        half: &'static str,
    },
}

impl Error {
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            source: source.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
