//! A fan-out ring: one writer, many readers, each reader with a cursor in
//! memory that only it writes.
//!
//! - The **publisher's data segment** ([`FanoutWriter::create`]) holds the
//!   configuration, the publisher's words (`tail`, `intent`, `oldest`,
//!   `closed`, `writer_park`) and the data area. Only the publisher writes
//!   it; it is sealed with `F_SEAL_FUTURE_WRITE` before its fd leaves the
//!   process, so subscribers can only map it read-only.
//! - Each **subscriber's cursor segment** ([`create_cursor_segment`]) is a
//!   one-page sealed memfd holding that subscriber's `cursor` and
//!   `reader_park`. Only the subscriber writes it; the publisher maps it
//!   read-only ([`CursorView`]).
//! - Records carry a 64-bit **sequence number**, so a reader can tell
//!   exactly how many messages it lost when it was lapped.
//!
//! Two policies ([`Policy`]): under `Block` the publisher never overwrites
//! a byte some subscriber's cursor has not passed (it waits, and the
//! services layer disconnects a subscriber that makes no progress); under
//! `DropOldest` the publisher never waits, and a reader copies a record
//! out, then checks the publisher's `intent` word to see whether the bytes
//! it copied may have been overwritten meanwhile (seqlock-style, after
//! Aeron's broadcast buffer: `tailIntent` checked after the copy). The
//! ordering argument, with its `SYNC POINT` labels, is in
//! `docs/services.md`.
//!
//! # Unsafe
//! This module keeps one invariant: the header pointers and the data area
//! point into segments the value owns, whose size was checked (and sealed)
//! at creation or attach; every offset used on the data area is
//! `pos & mask` of an 8-aligned position plus a length checked to end
//! before the end of the area. The publisher writes only its own segment,
//! a subscriber only its own cursor segment; no Rust reference is formed
//! over bytes the peer writes, except to atomics.
//!
//! # Example
//! ```
//! use shmsock_shm::fanout::{self, FanoutReader, FanoutWriter, Policy};
//! use shmsock_shm::SegmentOptions;
//! use std::os::fd::AsFd;
//!
//! # fn main() -> Result<(), shmsock_shm::Error> {
//! let mut w = FanoutWriter::create(c"demo", 4096, Policy::Block, 0, SegmentOptions::default())?;
//! // A subscriber: where to start (the live head), its own cursor segment.
//! let (pos, seq) = w.start_point(0);
//! let cursor = fanout::create_cursor_segment(c"demo-cursor", pos)?;
//! let view = fanout::CursorView::attach(cursor.fd().try_clone_to_owned().unwrap(), pos)?;
//! let data_fd = w.fd().try_clone_to_owned().unwrap();
//! let mut r = FanoutReader::attach(data_fd, 4096, Policy::Block, cursor, pos, seq)?;
//!
//! // Zero-copy write: reserve, fill in place, publish.
//! let mut grant = w.try_reserve(5, Some(view.last()))?.expect("space");
//! grant.copy_from_slice(b"hello");
//! grant.publish();
//!
//! let mut buf = Vec::new();
//! let got = r.try_recv(&mut buf)?.expect("one message");
//! assert_eq!((got.seq, got.lost, &buf[..]), (0, 0, &b"hello"[..]));
//! # Ok(()) }
//! ```

mod layout;
mod reader;
mod writer;

pub use layout::{
    fanout_max_record_len, fanout_segment_size, CURSOR_MAGIC, CURSOR_SEGMENT_SIZE,
    FANOUT_HEADER_SIZE, FANOUT_MAGIC, FANOUT_RECORD_HEADER, FANOUT_VERSION,
};
#[cfg(not(loom))]
pub use reader::create_cursor_segment;
pub use reader::{Delivery, FanoutReader, FanoutSample};
pub use writer::{CursorView, FanoutGrant, FanoutWriter};

/// A fan-out writer over heap memory made of loom atomics, for loom
/// models (`shm/tests/loom_fanout.rs`): no segments, no fds. Subscribers
/// join with [`FanoutWriter::loom_subscribe`].
#[cfg(loom)]
pub fn loom_fanout(capacity: u64, policy: Policy, history_max: usize) -> FanoutWriter {
    FanoutWriter::new_loom(capacity, policy, history_max)
}

/// What the publisher does when a subscriber falls a ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The publisher waits for the slowest subscriber: no subscriber ever
    /// loses a message. (The services layer disconnects a subscriber that
    /// makes no progress for its `max_lag`.)
    Block,
    /// The publisher never waits: a subscriber that falls a ring behind
    /// loses the oldest messages and is told exactly how many
    /// ([`Delivery::lost`]).
    DropOldest,
}

impl Policy {
    pub(crate) fn code(self) -> u32 {
        match self {
            Policy::Block => layout::POLICY_BLOCK,
            Policy::DropOldest => layout::POLICY_DROP_OLDEST,
        }
    }

    #[cfg_attr(loom, allow(dead_code))] // attach is not modelled under loom
    pub(crate) fn from_code(code: u32) -> Option<Policy> {
        match code {
            layout::POLICY_BLOCK => Some(Policy::Block),
            layout::POLICY_DROP_OLDEST => Some(Policy::DropOldest),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
