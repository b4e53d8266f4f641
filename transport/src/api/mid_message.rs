//! Waiting in the middle of a fragmented message (`Block` and `Adaptive`).
//!
//! `Block` parks at once: a wait between messages may last any time, and a
//! wake-up costs less CPU than a spin of unknown length. `Adaptive` learns
//! from all its waits, most of them between messages (hundreds of µs for
//! 1 MiB round trips), and so parked too. In the middle of a
//! fragmented message it is different: the peer has announced the message
//! and is copying the next fragment into the ring (or, for a sender, the
//! receiver is copying the last one out) right now, so the event is a
//! fragment's copy time away. Parking there costs a wake-up per fragment,
//! a syscall on each side and the wake-up latency (tens of µs on a VM),
//! which undoes the pipelining that fragments are for. So a `Block` or
//! `Adaptive` half spins for the next fragment (or the space for it) for
//! about one fragment's copy time ([`spin_window`]) and parks only if it
//! has not come by then (the peer is descheduled or gone). Measured in
//! `docs/performance.md` ("Block and large messages"; for `Adaptive`,
//! "Block round trip at 1 MiB and 16 MiB").
//!
//! A hostile peer can make a receiver spin only in proportion to the bytes
//! it actually sends: the receiver's window is the copy time of the last
//! fragment it took (at least [`MIN_WINDOW`]), not of what the peer
//! announces, so trickling small fragments earns 5 µs spins (less CPU than
//! the wake-up each fragment would cost otherwise). A sender's window is
//! the copy time of its own fragments.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::options::WaitStrategy;

/// Copy rate the spin window assumes, bytes per µs: well below a cached
/// `memcpy` on the measured machines (10-20 GB/s), so that a peer copying
/// at a busy machine's pace is still waited for.
const ASSUMED_BYTES_PER_US: usize = 4096;
/// Shortest spin window.
const MIN_WINDOW: Duration = Duration::from_micros(5);
/// Longest spin window: a peer slower than this per fragment is not
/// running, and parking costs little next to the wait.
const MAX_WINDOW: Duration = Duration::from_micros(100);
/// Spins between two clock reads.
const CLOCK_EVERY: u32 = 64;

/// Whether a half with this wait strategy spins for the next fragment (or
/// the space for it) before it waits as its strategy says: `Block` and
/// `Adaptive`. (`Adaptive`'s learner sizes its spins from all its waits,
/// most of them between messages, hundreds of µs at 1 MiB, so left to
/// itself it parked between the fragments of a message.) `Spin` spins
/// anyway.
pub(crate) fn spins_mid_message(wait: WaitStrategy) -> bool {
    !matches!(wait, WaitStrategy::Spin)
}

/// The spin window for fragments of `frag` bytes.
pub(crate) fn spin_window(frag: usize) -> Duration {
    let us = u64::try_from(frag / ASSUMED_BYTES_PER_US).unwrap_or(u64::MAX);
    Duration::from_micros(us).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// `window`, cut to the time left before `deadline` (if any), so that a
/// spin never outlasts the call's deadline.
pub(crate) fn within(window: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => window.min(d.saturating_duration_since(Instant::now())),
        None => window,
    }
}

/// Spins until `ready` holds (`true`) or `window` has passed (`false`).
/// Bounded by `window` whatever the peer does; errors of `ready` end it.
pub(crate) fn spin_until(
    window: Duration,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if ready()? {
            return Ok(true);
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(CLOCK_EVERY) && start.elapsed() >= window {
            return Ok(false);
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_follows_the_fragment_within_bounds() {
        assert_eq!(spin_window(0), MIN_WINDOW);
        assert_eq!(spin_window(128 << 10), Duration::from_micros(32));
        assert_eq!(spin_window(256 << 10), Duration::from_micros(64));
        assert_eq!(spin_window(usize::MAX), MAX_WINDOW);
    }

    #[test]
    fn block_and_adaptive_spin_mid_message() {
        assert!(spins_mid_message(WaitStrategy::Block));
        assert!(spins_mid_message(WaitStrategy::default()));
        assert!(!spins_mid_message(WaitStrategy::Spin));
    }

    #[test]
    fn window_never_outlasts_the_deadline() {
        assert_eq!(within(MAX_WINDOW, None), MAX_WINDOW);
        assert_eq!(within(MAX_WINDOW, Some(Instant::now())), Duration::ZERO);
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(within(MAX_WINDOW, Some(later)), MAX_WINDOW);
    }

    #[test]
    fn spin_ends_on_ready_or_after_the_window() {
        let mut n = 0;
        assert!(spin_until(MAX_WINDOW, || {
            n += 1;
            Ok(n == 10)
        })
        .unwrap());
        let t = Instant::now();
        assert!(!spin_until(Duration::from_micros(50), || Ok(false)).unwrap());
        assert!(t.elapsed() >= Duration::from_micros(50));
        let e = spin_until(MAX_WINDOW, || Err(crate::error::Error::Disconnected));
        assert!(matches!(e, Err(crate::error::Error::Disconnected)));
    }
}
