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
//! 23 µs for a Unix stream, at 3.6x its CPU. So `Adaptive` spins its whole
//! window only while recent spins paid off ([`SpinLearner`]), and 2 µs
//! otherwise; a peer queued on our own core makes our spins fail, so we soon
//! park and give it the core.
//!
//! Why spinning never calls `sched_yield`: on a busy machine a yield hands
//! the core to a CPU-bound process for its whole timeslice, while a parked
//! thread that is woken preempts it. Measured (`bench --load 2`): yielding
//! after 2 µs of spinning gave 2.7-3.9 ms round trips at 64 B (pinned) and
//! 3.7 ms in the paced scenario, against 15-56 µs for `Block`.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::error_map::sock_err;
use crate::fdpass::{recv_control_with, wait_readable, Recv};
use crate::options::WaitStrategy;

/// Spins between two looks at the clock and at the socket.
const SPIN_CHECK_EVERY: u32 = 256;
/// Shortest spin window of `Adaptive`: a hot peer's answer still costs no
/// wake-up even when recent waits were long.
pub(crate) const MIN_SPIN: Duration = Duration::from_micros(2);

/// What a waiting loop does next.
pub(crate) enum Step {
    /// Spin once more.
    Spin,
    /// Spin, but first check the deadline and read the socket.
    Check,
    /// Park and sleep on the socket.
    Park,
}

/// How often the recent spins of one half have paid off (the wait ended
/// while spinning), to size the spin window of `Adaptive`.
///
/// Why a success rate and not the average wait: a wait that had to park
/// includes a wake-up (20-60 µs here), so once both sides of a ping-pong
/// park, an average of wait times stays above any spin window and the pair
/// never spins again, even when it could (measured: a pinned 64 B
/// ping-pong stuck at Block speed, 39 µs instead of 0.7 µs, after one
/// hiccup under load). A success rate recovers: every [`PROBE_EVERY`]th
/// wait spins the whole window, and one caught reply puts both sides back
/// in step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpinLearner {
    /// Recent success rate, in 1/65536 (an exponential average, weight 1/8).
    rate: u32,
    /// Waits since the last probe.
    waits: u32,
}

/// Every this many waits, spin the whole window even if spins have been
/// failing (a probe).
const PROBE_EVERY: u32 = 64;
/// Success rate (in 1/65536) from which the whole window is spun.
const SPIN_WHEN_RATE: u32 = 1 << 15;

impl Default for SpinLearner {
    fn default() -> Self {
        // Optimistic: a new connection spins until it learns otherwise.
        SpinLearner {
            rate: 1 << 16,
            waits: 0,
        }
    }
}

impl SpinLearner {
    /// The spin window for the next wait, whose strategy allows at most
    /// `max`: all of it while spins pay off (or to probe), else
    /// [`MIN_SPIN`] (a hot peer's answer still costs no wake-up).
    pub(crate) fn window(&mut self, max: Duration) -> Duration {
        self.waits = self.waits.wrapping_add(1);
        if self.rate >= SPIN_WHEN_RATE || self.waits.is_multiple_of(PROBE_EVERY) {
            max
        } else {
            MIN_SPIN.min(max)
        }
    }

    /// Records whether a wait ended while spinning (`true`) or had to park.
    pub(crate) fn record(&mut self, spun: bool) {
        let target: u32 = if spun { 1 << 16 } else { 0 };
        if target >= self.rate {
            self.rate += (target - self.rate) / 8;
        } else {
            self.rate -= (self.rate - target) / 8;
        }
    }
}

/// The spinning half of one wait: decides, one iteration at a time, whether
/// to keep spinning (and when to look at the clock and the socket)
/// or to park.
pub(crate) struct Spinner {
    /// `None`: spin forever (`Spin`); otherwise park once this has passed.
    park_after: Option<Instant>,
    /// [`Step::Park`] was returned.
    parked: bool,
    spins: u32,
}

impl Spinner {
    /// Starts a wait of `wait`, sized by what `learner` has seen.
    pub(crate) fn new(wait: WaitStrategy, learner: &mut SpinLearner) -> Self {
        let park_after = match wait {
            WaitStrategy::Spin => None,
            WaitStrategy::Block => Some(Instant::now()),
            WaitStrategy::Adaptive { spin } => Instant::now().checked_add(learner.window(spin)),
        };
        Spinner {
            park_after,
            parked: false,
            spins: 0,
        }
    }

    /// Whether this wait has told the caller to park.
    pub(crate) fn parked(&self) -> bool {
        self.parked
    }

    /// The next step.
    pub(crate) fn step(&mut self) -> Step {
        self.spins = self.spins.wrapping_add(1);
        // The clock is read every 16 spins only (a vDSO call, but not free).
        let park = self
            .park_after
            .is_some_and(|t| self.spins % 16 == 1 && Instant::now() >= t);
        if park {
            self.parked = true;
            Step::Park
        } else if self.spins.is_multiple_of(SPIN_CHECK_EVERY) {
            Step::Check
        } else {
            Step::Spin
        }
    }
}

/// Whether `deadline` has passed (never, without one).
pub(crate) fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// One half of a connection, as the wait loop sees it: how it parks on its
/// ring, and the socket on which its peer's wake-ups and hang-up arrive.
pub(crate) trait Waiter {
    /// How this half waits.
    fn strategy(&self) -> WaitStrategy;
    /// What this half's waits have taught it.
    fn learner(&mut self) -> &mut SpinLearner;
    /// Whether the peer is gone (asked after the condition was found false).
    fn gone(&self) -> bool;
    /// Starts a park episode: mark the ring, then a SeqCst fence (SYNC POINT
    /// `park-dekker`); the caller re-checks before it sleeps.
    fn park(&mut self);
    /// Ends the park episode.
    fn unpark(&mut self);
    /// Handles what is pending on the socket, without blocking.
    fn drain(&mut self) -> Result<()>;
    /// The socket a parked waiter sleeps on.
    fn sock(&self) -> BorrowedFd<'_>;
    /// Handles one received datagram or the hang-up.
    fn handle(&mut self, r: Recv) -> Result<bool>;
}

/// THE wait loop of both halves: spins per the strategy (looking at the
/// deadline and the socket every [`SPIN_CHECK_EVERY`] spins), then parks,
/// re-checks, and sleeps on the socket, until `ready` holds, the peer is
/// gone ([`Error::Disconnected`]) or `deadline` passes ([`Error::Timeout`]).
/// `ready` may only depend on what the peer's progress changes, which is
/// what wakes us.
pub(crate) fn wait_until<W: Waiter>(
    w: &mut W,
    deadline: Option<Instant>,
    mut ready: impl FnMut(&mut W) -> Result<bool>,
) -> Result<()> {
    let strategy = w.strategy();
    let mut spinner = Spinner::new(strategy, w.learner());
    loop {
        if ready(w)? {
            w.learner().record(!spinner.parked());
            return Ok(());
        }
        if w.gone() {
            return Err(Error::Disconnected);
        }
        match spinner.step() {
            Step::Spin => {
                std::hint::spin_loop();
                continue;
            }
            Step::Check => {
                if past(deadline) {
                    return Err(Error::Timeout);
                }
                w.drain()?;
                continue;
            }
            Step::Park => {}
        }
        w.park();
        match ready(w) {
            Ok(false) => {}
            r => {
                w.unpark();
                w.learner().record(!spinner.parked());
                return r.map(drop);
            }
        }
        let woke = sleep_once(w, deadline);
        w.unpark();
        if !woke? {
            return Err(Error::Timeout);
        }
    }
}

/// Sleeps until one control message (or the hang-up) arrives or `deadline`
/// passes (`false`). Without a deadline this is a single blocking
/// `recvmsg` (the syscall count of a plain socket); with one, `poll` and
/// one `recvmsg`. Leftover wake-ups are harmless: the caller re-checks.
fn sleep_once<W: Waiter>(w: &mut W, deadline: Option<Instant>) -> Result<bool> {
    let blocking = deadline.is_none();
    if !blocking {
        match wait_readable(w.sock(), deadline) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(Error::io("poll", e)),
        }
    }
    let r = recv_control_with(w.sock(), blocking).map_err(|e| sock_err("recvmsg", e))?;
    w.handle(r)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_micros(50);

    #[test]
    fn spins_while_spinning_pays_then_probes() {
        let mut l = SpinLearner::default();
        assert_eq!(l.window(MAX), MAX);
        // Spins that keep failing (a peer that sleeps between messages):
        // the floor, except for a probe every PROBE_EVERY waits.
        for _ in 0..64 {
            l.record(false);
        }
        let windows: Vec<_> = (0..PROBE_EVERY).map(|_| l.window(MAX)).collect();
        assert_eq!(windows.iter().filter(|&&w| w == MAX).count(), 1);
        assert_eq!(
            windows.iter().filter(|&&w| w == MIN_SPIN).count(),
            PROBE_EVERY as usize - 1
        );
        // A few caught waits (a probe caught the peer hot) bring the whole
        // window back.
        for _ in 0..8 {
            l.record(true);
        }
        assert_eq!(l.window(MAX), MAX);
        // A lone miss does not stop spinning.
        l.record(false);
        assert_eq!(l.window(MAX), MAX);
        // A window of 0 stays 0 (Block-like), never the floor.
        assert_eq!(l.window(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn spin_never_parks_block_parks_at_once() {
        let mut l = SpinLearner::default();
        let mut s = Spinner::new(WaitStrategy::Spin, &mut l);
        for _ in 0..10_000 {
            assert!(!matches!(s.step(), Step::Park));
        }
        assert!(!s.parked());
        let mut b = Spinner::new(WaitStrategy::Block, &mut l);
        assert!(matches!(b.step(), Step::Park));
        assert!(b.parked());
    }
}
