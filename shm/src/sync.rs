//! The one place atomics come from, so that `loom` can model the ring.
//!
//! Under `--cfg loom` every atomic used by the ring is loom's, and the data
//! area is a heap array of loom atomics (see [`crate::ring::data`]); in normal
//! builds they are `core`'s, laid over the shared mapping.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
