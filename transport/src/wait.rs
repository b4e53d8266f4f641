//! The wait policy: how long a blocked call spins before it parks, and how
//! it spins. One [`Spinner`] per wait drives the spin / check / park
//! decision for both halves; one [`SpinLearner`] per half remembers how long
//! its waits have lasted.
//!
//! Why the spin window is learned: spinning pays only when the awaited event
//! comes sooner than a wake-up would (a few tens of µs here). A fixed window
//! loses both ways. A server whose next request is milliseconds away burns
//! the whole window after every reply, and a client that spins while the
//! peer it just woke waits for a CPU (often the client's own: Linux tends to
//! wake a task on the waker's core) delays that peer by the whole window.
//! Measured with `shmsock bench` (paced scenario, not pinned, 64 B, 200 µs
//! between requests): a fixed 50 µs window gave 125 µs round trips against
//! 23 µs for a Unix stream, at 3.6x its CPU. So `Adaptive` spins about as
//! long as its recent waits lasted (an average, like glibc's adaptive
//! mutexes), at most its configured window, and parks almost at once when
//! waits are longer than that; and after a short pure spin it yields the
//! CPU between looks at the ring, so that a peer queued on our core runs.

use std::time::{Duration, Instant};

use crate::options::WaitStrategy;

/// Spins between two looks at the clock and at the socket.
const SPIN_CHECK_EVERY: u32 = 256;
/// Pure spinning (no yield) at the start of an `Adaptive` wait: a hot peer
/// on another core answers well within this (0.6 µs round trips here).
/// After it, `Adaptive` yields the CPU before every look at the ring: a
/// peer we woke may be queued on our own core. Measured (paced scenario):
/// yielding every 8th spin after 128 pure ones left round trips at 0.8x a
/// Unix stream's, yielding at every look 1.1-1.2x; yielding from the
/// first look doubled the pinned hot round trip.
const PURE_SPIN: Duration = Duration::from_micros(2);
/// Shortest spin window of `Adaptive`: a hot peer's answer still costs no
/// wake-up even when recent waits were long.
pub(crate) const MIN_SPIN: Duration = Duration::from_micros(2);
/// Waits longer than this count as this much in the average (a peer that
/// was silent for seconds must not take seconds of short waits to forget).
const LONGEST_COUNTED: Duration = Duration::from_millis(10);

/// What a waiting loop does next.
pub(crate) enum Step {
    /// Spin once more.
    Spin,
    /// Give the CPU to whoever else is runnable on it, then look again.
    Yield,
    /// Spin, but first check the deadline and read the socket.
    Check,
    /// Park and sleep on the socket.
    Park,
}

/// How long the waits of one half have lasted (an exponential average,
/// weight 1/8), to size the spin window of `Adaptive`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpinLearner {
    /// Average wait in nanoseconds; `None` before the first wait.
    avg_ns: Option<u64>,
}

impl SpinLearner {
    /// The spin window for a wait whose strategy allows at most `max`:
    /// twice the average wait (so a typical wait ends while spinning), at
    /// least [`MIN_SPIN`]; just [`MIN_SPIN`] if waits last longer than `max`
    /// on average (spinning would not pay). `max` before the first wait.
    pub(crate) fn window(&self, max: Duration) -> Duration {
        let max_ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let ns = match self.avg_ns {
            None => max_ns,
            Some(avg) if avg > max_ns => 0,
            Some(avg) => avg.saturating_mul(2).min(max_ns),
        };
        Duration::from_nanos(ns).max(MIN_SPIN.min(max))
    }

    /// Records how long a wait lasted until it was satisfied.
    pub(crate) fn record(&mut self, waited: Duration) {
        let ns = waited.min(LONGEST_COUNTED).as_nanos() as u64;
        self.avg_ns = Some(match self.avg_ns {
            None => ns,
            Some(avg) if ns >= avg => avg + (ns - avg) / 8,
            Some(avg) => avg - (avg - ns) / 8,
        });
    }

    /// The average wait, if any was recorded.
    #[cfg(test)]
    fn average(&self) -> Option<Duration> {
        self.avg_ns.map(Duration::from_nanos)
    }
}

/// The spinning half of one wait: decides, one iteration at a time, whether
/// to keep spinning (and when to yield, look at the clock and the socket)
/// or to park.
pub(crate) struct Spinner {
    start: Instant,
    /// `None`: spin forever (`Spin`); otherwise park once this has passed.
    park_after: Option<Instant>,
    /// Whether spinning turns to yielding after [`PURE_SPIN`] (`Adaptive`).
    yields: bool,
    /// Yielding now.
    yielding: bool,
    spins: u32,
}

impl Spinner {
    /// Starts a wait of `wait`, sized by what `learner` has seen.
    pub(crate) fn new(wait: WaitStrategy, learner: &SpinLearner) -> Self {
        let start = Instant::now();
        let (park_after, yields) = match wait {
            WaitStrategy::Spin => (None, false),
            WaitStrategy::Block => (Some(start), false),
            WaitStrategy::Adaptive { spin } => (start.checked_add(learner.window(spin)), true),
        };
        Spinner {
            start,
            park_after,
            yields,
            yielding: false,
            spins: 0,
        }
    }

    /// How long this wait has lasted.
    pub(crate) fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The next step.
    pub(crate) fn step(&mut self) -> Step {
        self.spins = self.spins.wrapping_add(1);
        // The clock is read every 16 spins only (a vDSO call, but not free),
        // or at each look once yielding (a syscall costs more anyway).
        let mut park = false;
        if let Some(t) = self.park_after {
            if self.yielding || self.spins % 16 == 1 {
                let now = Instant::now();
                park = now >= t;
                self.yielding = self.yields && now >= self.start + PURE_SPIN;
            }
        }
        if park {
            Step::Park
        } else if self.spins % SPIN_CHECK_EVERY == 0 {
            Step::Check
        } else if self.yielding {
            Step::Yield
        } else {
            Step::Spin
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(50);

    #[test]
    fn window_starts_at_max_and_follows_the_average() {
        let mut l = SpinLearner::default();
        assert_eq!(l.window(MAX), MAX);
        l.record(Duration::from_micros(10));
        assert_eq!(l.window(MAX), Duration::from_micros(20));
        // Short waits (a hot peer) keep the window at the floor.
        for _ in 0..100 {
            l.record(Duration::from_nanos(300));
        }
        assert_eq!(l.window(MAX), MIN_SPIN);
        // Waits longer than the maximum: spin only the floor, then park.
        for _ in 0..100 {
            l.record(Duration::from_millis(2));
        }
        assert!(l.average().unwrap() > MAX);
        assert_eq!(l.window(MAX), MIN_SPIN);
        // A window of 0 stays 0 (Block-like), never the floor.
        assert_eq!(l.window(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn long_silences_are_forgotten_quickly() {
        let mut l = SpinLearner::default();
        l.record(Duration::from_secs(60));
        assert_eq!(l.average(), Some(LONGEST_COUNTED));
        for _ in 0..40 {
            l.record(Duration::from_micros(5));
        }
        assert!(l.window(MAX) < MAX, "{:?}", l.window(MAX));
    }

    #[test]
    fn spin_never_parks_block_parks_at_once() {
        let l = SpinLearner::default();
        let mut s = Spinner::new(WaitStrategy::Spin, &l);
        for _ in 0..10_000 {
            assert!(!matches!(s.step(), Step::Park | Step::Yield));
        }
        let mut b = Spinner::new(WaitStrategy::Block, &l);
        assert!(matches!(b.step(), Step::Park));
    }
}
