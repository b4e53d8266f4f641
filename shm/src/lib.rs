//! Shared-memory data plane of [shmsock](https://docs.rs/shmsock): sealed
//! memfd segments and a lock-free single-producer/single-consumer ring of
//! variable-length records that stays sound when the peer process lies.
//!
//! - [`Segment`] creates a memfd (`MFD_CLOEXEC | MFD_ALLOW_SEALING`), seals its
//!   size and maps it; [`Segment::attach`] maps a memfd received from a peer
//!   only after checking its seals and size. [`FrozenSegment`] adds
//!   `F_SEAL_WRITE`, so its bytes can be lent out as `&[u8]`.
//! - [`ring`] lays a ring into such a segment: [`Producer`] reserves and
//!   commits records (zero copy), [`Consumer`] reads them, validating every
//!   cursor and length the peer wrote.
//!
//! No sockets here: the transport crate passes segments between processes.
//!
//! # Example
//! ```
//! use shmsock_shm::{ring, SegmentOptions};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), shmsock_shm::Error> {
//! // The creating process makes the segment; its fd would cross a socket.
//! let seg = Arc::new(ring::create_segment(c"demo", 4096, SegmentOptions::default())?);
//! let mut tx = ring::Producer::attach(seg.clone())?;
//! let mut rx = ring::Consumer::attach(seg)?;
//!
//! // Zero-copy write: reserve, fill in place, commit.
//! let mut grant = tx.try_reserve(5)?.expect("ring has space");
//! grant.copy_from_slice(b"hello");
//! grant.commit();
//!
//! let msg = rx.try_read()?.expect("one record");
//! assert_eq!(msg.to_vec(), b"hello");
//! drop(msg); // releases the space
//! assert!(rx.try_read()?.is_none());
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
pub mod ring;
#[cfg(not(loom))]
mod segment;
mod sync;

pub use error::{Error, Result, Violation};
pub use ring::{Consumer, Producer, ReadGuard, WriteGrant};
#[cfg(not(loom))]
pub use segment::{seals_of, FrozenSegment, Segment, SegmentOptions, FROZEN_SEALS, REQUIRED_SEALS};
