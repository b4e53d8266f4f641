//! The non-blocking core of a connection: everything a send or a receive
//! does except waiting. Nothing here sleeps, spins or polls with a
//! timeout; a call that cannot make progress says so (`Ok(false)`,
//! [`recv::Head::Empty`], "need `len` bytes of space") and returns.
//!
//! - [`send::SendCore`]: our ring's producer and the socket that carries
//!   our data wake-ups: `try_space` / `take_fitting` (reserve), the large
//!   message written fragment by fragment ([`frag::LargeSend`]), liveness.
//! - [`recv::RecvCore`]: the peer's ring's consumer: `poll_head` /
//!   `try_head` (validate the next record, consume fragments), batches.
//! - [`notify`]: the wake-ups we send to a parked peer.
//! - [`frag`]: the large-message path (fragment geometry, reassembly).
//!
//! Readiness goes through the socket ([`std::os::fd::AsFd`]): a call that
//! found nothing to do can arm the wake-up (park, re-check), after which the
//! socket becomes readable when the peer makes progress. The waiting itself
//! is a policy that lives above the core: [`crate::wait`] for the blocking
//! API, the tokio wrappers for async.

pub(crate) mod frag;
pub(crate) mod notify;
pub(crate) mod recv;
pub(crate) mod send;

use std::time::{Duration, Instant};

use crate::wait::past;

/// Control messages handled per drain, so a flooding peer cannot keep us
/// in the drain loop forever.
pub(crate) const DRAIN_BUDGET: usize = 64;

/// The instant `timeout` from now; `None` (wait forever) for no timeout or
/// one too large to represent, as std's channels treat `Duration::MAX`.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A call's deadline, computed on first use so that a call that never has
/// to wait never reads the clock, and the abandoned messages the call has
/// consumed (bounded by [`recv::MAX_ABORTS_PER_CALL`]).
#[derive(Debug)]
pub(crate) struct Deadline {
    timeout: Option<Duration>,
    at: Option<Option<Instant>>,
    pub(crate) aborts: u32,
}

impl Deadline {
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        Deadline {
            timeout,
            at: None,
            aborts: 0,
        }
    }

    /// The deadline (`None`: wait forever), starting the clock if needed.
    pub(crate) fn get(&mut self) -> Option<Instant> {
        let timeout = self.timeout;
        *self.at.get_or_insert_with(|| deadline(timeout))
    }

    /// The time left (`None`: no limit), starting the clock if needed.
    pub(crate) fn remaining(&mut self) -> Option<Duration> {
        self.get()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed (never, without a timeout).
    pub(crate) fn passed(&mut self) -> bool {
        self.timeout.is_some() && past(self.get())
    }
}
