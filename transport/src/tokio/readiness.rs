//! Readiness of a connection's socket in the tokio reactor, and the short
//! spin before a task parks.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ::tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use ::tokio::io::Interest;

use crate::error::{Error, Result};
use crate::options::WaitStrategy;

/// Read readiness of one socket in the tokio reactor, through a
/// duplicate of its fd that the registration owns: the registration stays
/// valid whatever happens to the original (the core's) fd.
#[derive(Debug)]
pub(crate) struct Readiness(AsyncFd<OwnedFd>);

impl Readiness {
    /// Registers a duplicate of `sock` (read interest only: wake-ups and
    /// hang-ups are what a waiting half reads).
    ///
    /// # Panics
    /// Outside a tokio runtime (as every tokio I/O type does).
    #[allow(unsafe_code)] // tokio's registration is `unsafe fn`; contract below
    pub(crate) fn new(sock: BorrowedFd<'_>) -> Result<Self> {
        let fd = sock
            .try_clone_to_owned()
            .map_err(|e| Error::io("dup(socket)", e))?;
        // SAFETY: the `AsyncFd` owns `fd`, an `OwnedFd`: it stays open and
        // refers to the same file description, and `as_raw_fd` returns the
        // same number, until the `AsyncFd` drops it.
        let r = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        r.map(Readiness)
            .map_err(|e| Error::io("register with the tokio reactor", std::io::Error::from(e)))
    }

    /// Waits until the reactor reports the socket readable.
    pub(crate) async fn readable(&self) -> Result<AsyncFdReadyGuard<'_, OwnedFd>> {
        self.0
            .readable()
            .await
            .map_err(|e| Error::io("tokio readiness", e))
    }
}

/// The longest spin of an async wait, per the connection's strategy: a
/// task must not hold its worker thread for long, so `Spin` is treated as
/// `Adaptive` with the default window.
pub(crate) fn max_spin(wait: WaitStrategy) -> Duration {
    match wait {
        WaitStrategy::Block => Duration::ZERO,
        WaitStrategy::Adaptive { spin } => spin,
        WaitStrategy::Spin => match WaitStrategy::default() {
            WaitStrategy::Adaptive { spin } => spin,
            _ => Duration::ZERO,
        },
    }
}

/// Spins for up to `window` until `ready` holds. Returns whether it did.
/// The clock is read every 16 looks.
pub(crate) fn spin_until(
    window: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    if window.is_zero() {
        return Ok(false);
    }
    let start = Instant::now();
    let mut looks = 0u32;
    loop {
        if ready()? {
            return Ok(true);
        }
        looks = looks.wrapping_add(1);
        if looks.is_multiple_of(16) && start.elapsed() >= window {
            return Ok(false);
        }
        std::hint::spin_loop();
    }
}
