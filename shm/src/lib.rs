//! Shared-memory data plane of [shmsock](https://docs.rs/shmsock): sealed
//! memfd segments and a lock-free single-producer/single-consumer ring of
//! variable-length records that stays sound when the peer process lies.
//!
//! - [`Segment`] creates a memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`), maps it
//!   and seals its size and every future write; [`Segment::attach_read_only`]
//!   maps a memfd received from a peer read-only, only after checking its
//!   seals and size. Each side writes only its own segment. [`FrozenSegment`] adds
//!   `F_SEAL_WRITE`, so its bytes can be lent out as `&[u8]`.
//! - [`ring`] lays a ring into such a segment: [`Producer`] reserves and
//!   commits records (zero copy), [`Consumer`] reads them, validating every
//!   cursor and length the peer wrote.
//!
//! - [`fanout`] lays a one-writer, many-readers ring into a publisher's
//!   segment, with each reader's cursor in a small segment of its own.
//!
//! No sockets here: the transport crate passes segments between processes.
//!
//! # Example
//! ```
//! use shmsock_shm::{ring, SegmentOptions};
//!
//! # fn main() -> Result<(), shmsock_shm::Error> {
//! // The creating process makes the segment and gets the ring's only
//! // producer; across processes the consumer would map the segment
//! // read-only and keep its cursor in a segment of its own.
//! let (seg, mut tx) = ring::create_segment(c"demo", 4096, SegmentOptions::default())?;
//! let mut rx = ring::Consumer::attach(seg.clone(), seg)?;
//!
//! // Zero-copy write: reserve, fill in place, commit.
//! let mut grant = tx.try_reserve(5)?.expect("ring has space");
//! grant.copy_from_slice(b"hello");
//! // A parked consumer would be owed a wake-up: the caller redeems it
//! // (here nobody is parked, so nothing is owed).
//! let wake = grant.commit();
//! assert!(!wake.is_owed());
//! wake.redeem(|| Ok::<(), ()>(())).ok();
//!
//! let msg = rx.try_read()?.expect("one record");
//! assert_eq!(msg.to_vec(), b"hello");
//! drop(msg); // releases the space
//! assert!(rx.try_read()?.is_none());
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
pub mod fanout;
#[cfg(not(loom))]
pub mod membarrier;
pub mod ring;
#[cfg(not(loom))]
mod seals;
#[cfg(not(loom))]
mod segment;
mod sync;

pub use error::{Error, Result, Violation};
pub use ring::{Consumer, Producer, ReadGuard, WriteGrant};
#[cfg(not(loom))]
pub use seals::Seals;
#[cfg(not(loom))]
pub use segment::{
    seals_of, FrozenSegment, Segment, SegmentOptions, FROZEN_SEALS, REQUIRED_SEALS, RING_SEALS,
};
