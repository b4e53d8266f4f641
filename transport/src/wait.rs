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

use shmsock_shm::ring::{Slept, WakeKind, WakeWord};

use crate::error::{Error, Result};
use crate::error_map::sock_err;
use crate::fdpass::{recv_control_with, wait_readable, Recv};
use crate::options::WaitStrategy;
use crate::shutdown::ShutFlag;

/// How long one wait sleeps on a futex before it parks on the socket
/// instead. The peer's death shows only on the socket, so a futex sleeper
/// notices it at the end of this slice (plus a drain); a wait still
/// unsatisfied after the slice parks for a socket wake-up, which a death
/// (the hang-up) ends at once, and which costs an idle wait nothing. A
/// busy peer answers well within the slice, so its wake-ups stay futex
/// wake-ups (one `FUTEX_WAKE`, no datagram). A [`ShutdownHandle`] wakes a
/// futex sleeper at once (it `FUTEX_WAKE`s the word), except when the
/// shutdown comes in the instant between the sleeper's check and its
/// `FUTEX_WAIT`: then within this.
///
/// 20 ms: ten times the longest think time `bench` paces requests with
/// (2 ms), and short next to the second within which a death must be
/// noticed, even with the scheduling delays of a loaded 2-core machine
/// (a 200 ms slice plus a delayed timer wake-up took 1.5-1.7 s there:
/// `tests/hostile_fork.rs`, `sigkill_at_random_points`).
///
/// [`ShutdownHandle`]: crate::ShutdownHandle
pub(crate) const FUTEX_SLICE: Duration = Duration::from_millis(20);

/// How a futex sleep ended.
enum FutexSleep {
    /// The call's deadline had passed.
    Deadline,
    /// Woken (or returned early): re-check.
    Woken,
    /// The slice ended: re-check, then park on the socket.
    SliceEnded,
}

/// Spins between two looks at the clock and at the socket.
const SPIN_CHECK_EVERY: u32 = 256;
/// A spin-arm wait at most this long is a hot peer: parking cannot beat
/// it (a wake-up alone costs more), so the park arm is not probed then.
const HOT: u64 = 5_000;

/// What a waiting loop does next.
pub(crate) enum Step {
    /// Spin once more.
    Spin,
    /// Spin, but first check the deadline and read the socket.
    Check,
    /// Park and sleep on the socket.
    Park,
}

/// What one half's recent waits have cost, to choose how `Adaptive` waits
/// next: spin the whole window, then park (arm [`Arm::Spin`]), or park at
/// once (arm [`Arm::Park`]).
///
/// Why the wait's cost and not whether the spin caught the event: a spin
/// that catches the reply can still make it later. Measured with `shmsock
/// bench` (paced scenario, not pinned, 64 B, 200 µs between requests): a
/// client spinning for the reply caught it every time, yet took 28 µs
/// against 21 µs for a Unix stream, whose client sleeps. Even a 2 µs spin
/// before parking cost about 10 µs per round trip in an ad-hoc two-process
/// probe on a busy machine (`docs/performance.md`; indicative). The likely
/// reason: the request's wake-up is a sync wake-up (the socket's), so Linux
/// queues the server on the client's core, and a client that does not give
/// the core up at once delays it or sends it to wake the idle one. So each arm keeps
/// an exponential average of what its waits took, from the start of the
/// wait to the event (capped: a wait much longer than the window says only
/// that the peer was not about to answer), and the cheaper arm is chosen;
/// spinning must be clearly cheaper ([`SPIN_MUST_SAVE`]), since it also
/// costs a core. The other arm is probed now and then so that its average
/// follows the peer: every [`PROBE_CLOSE`] waits while the two are within
/// 2x of each other, every [`PROBE_FAR`] waits otherwise (a probe of the
/// losing arm costs a wake-up or a wasted window, so probes stay below 1 %
/// of the waits, out of the p99). A hot peer, whose
/// answer the spin catches within [`HOT`], is never probed with a park: a
/// wake-up alone costs more.
///
/// A new half spins its first two waits (optimistic) and parks its third
/// and fourth, so that both arms have a cost from then on. The first wait
/// of each arm is not counted: the first includes the peer's start (below),
/// and a half's first park pays first-time costs: over 506 connections of
/// `examples/spaced_probe` (1 and 4 clients, 64 B at 1,000/s), the first
/// park took a median 34.5 µs where the next five took 21.1 µs (1.4x; 2.1x
/// at the 75th percentile), while the counted spin took 27.5 µs. Priced by
/// its first park, the half spun, and its spins ran out (75-90 µs each)
/// while the server it had woken waited on its CPU, several times per
/// connection before the average caught up.
///
/// Neither arm can get stuck: a probe that finds its arm cheaper than
/// believed *replaces* the arm's cost instead of moving its average by
/// 1/8, since the losing arm is sampled once in hundreds of waits.
/// Without that, one slow wait (the first message of a connection took
/// 348 µs in `block_probe`, a 64 KiB round trip) priced spinning at the
/// cap, and the spin arm needed about 20 probes (10,000 waits) to win
/// again while every wait parked: the
/// whole of a `bench` row. Now one probe that catches the reply makes
/// spinning the choice again; a lucky probe costs a few waits of the
/// wrong arm, whose every wait moves its average back. And a half's
/// first wait is not counted: it includes the peer's start (the 348 µs
/// above), so it would price its arm by the connection, not by the peer.
/// A probe that finds its arm dearer is one wait among others: when every
/// probe replaced the cost, one slow park probe (50 µs where parks took
/// 17 µs) made the half spin, and run out, until the next probe 128 waits
/// later (traced with `bench/examples/spaced_probe.rs`, 4 clients at
/// 1,000/s and one core busy). And a spin that runs out is charged its
/// window on top of its wait: the core it burnt, which the peer woken on
/// our CPU or another process may have needed. Nor is a far peer probed
/// with a spin: while parks wait half the cap or more, a spin would run
/// out, right after our last message, when the peer we woke may be queued
/// on our CPU (a server 1 ms from its next request spun every 128th wait;
/// with 4 clients and one core busy, 0.76 % of its waits; 1.07 % of the
/// clients' waits took 60-100 µs, a link inferred, not isolated). The
/// park arm's own waits show when the peer comes closer. And a probe of
/// the spin arm spins no longer than a park takes: past that, spinning
/// cannot beat parking.
/// (Probing every 128 waits in a half's first 512 was tried first and
/// dropped: this rule fixes the same lock-in without extra probes.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpinLearner {
    /// Recent wait times of each arm in ns, capped; indexed by `Arm`;
    /// [`UNKNOWN`] before its first wait.
    cost: [u64; 2],
    /// Waits since the last probe.
    waits: u32,
    /// The arm of the wait in progress.
    arm: Arm,
    /// The wait in progress probes the arm that is not the best.
    probe: bool,
    /// What the last wait took and the window it burnt, not yet folded
    /// into `cost`: [`Spinner::finish`] runs between the event and the
    /// caller (a server's reply waits for it), so it only stores them, and
    /// the next [`SpinLearner::window`], at the start of a wait, does the
    /// arithmetic (with that wait's `max`: a half's strategy is fixed).
    pending: Option<(Duration, Duration)>,
    /// Each arm's first wait is still to come (it is not counted).
    first: [bool; 2],
}

/// The longest wait an arm's cost counts, in ns, for a spin window of
/// `max`: 4 windows, at least 100 µs (a wait much longer than the window
/// says only that the peer was not about to answer). Below [`UNKNOWN`]
/// whatever the window (`Adaptive { spin }` takes any `Duration`).
fn cap_ns(max: Duration) -> u64 {
    let cap = max.saturating_mul(4).max(Duration::from_micros(100));
    u64::try_from(cap.as_nanos()).map_or(UNKNOWN - 1, |v| v.min(UNKNOWN - 1))
}

/// The two ways `Adaptive` can wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arm {
    /// Spin the whole window, then park.
    Spin = 0,
    /// Park at once.
    Park = 1,
}

/// Probe interval while the two arms cost within 2x of each other.
const PROBE_CLOSE: u32 = 128;
/// Probe interval while one arm costs more than twice the other.
const PROBE_FAR: u32 = 512;
/// The spin arm is chosen only if its average wait is below the park
/// arm's by 1/8 of it plus this much (ns).
const SPIN_MUST_SAVE: u64 = 500;
/// An arm's cost before its first wait.
const UNKNOWN: u64 = u64::MAX;

impl Default for SpinLearner {
    fn default() -> Self {
        SpinLearner {
            cost: [UNKNOWN; 2],
            waits: 0,
            arm: Arm::Spin,
            probe: false,
            pending: None,
            first: [true; 2],
        }
    }
}

impl SpinLearner {
    /// Whether the spin arm's waits end within [`HOT`]: the peer answers
    /// while we spin, so a wait need not read the clock at its start.
    fn hot(&self) -> bool {
        self.cost[Arm::Spin as usize] <= HOT
    }

    /// The arm that costs less, all told (spinning first while unknown).
    fn best(&self) -> Arm {
        let (spin, park) = (self.cost[0], self.cost[1]);
        if spin == UNKNOWN
            || park == UNKNOWN
            || spin.saturating_add(park / 8).saturating_add(SPIN_MUST_SAVE) < park
        {
            Arm::Spin
        } else {
            Arm::Park
        }
    }

    /// The spin window for the next wait, whose strategy allows at most
    /// `max`: all of it or none, by the arms' recent costs (and now and
    /// then the other, to probe it).
    pub(crate) fn window(&mut self, max: Duration) -> Duration {
        if let Some((waited, burnt)) = self.pending.take() {
            self.record(waited, max, burnt);
        }
        self.waits = self.waits.wrapping_add(1);
        let (spin, park) = (self.cost[0], self.cost[1]);
        self.probe = false;
        self.arm = if spin != UNKNOWN && park == UNKNOWN {
            // Not parked yet: try it now, so that a new half that should
            // not spin learns it in its second wait.
            Arm::Park
        } else {
            let best = self.best();
            let far = spin != UNKNOWN
                && park != UNKNOWN
                && spin.max(park) > spin.min(park).saturating_mul(2);
            let every = if far { PROBE_FAR } else { PROBE_CLOSE };
            // A far peer (parks wait half the cap or more: the event comes
            // well after the window) is not probed with a spin either: the
            // spin would run out, and it holds a core just when the peer
            // we answered last wakes, often queued on our CPU. If the peer
            // comes closer, the park arm's own waits show it.
            let far_peer = best == Arm::Park && park >= cap_ns(max) / 2;
            let probe = self.waits.is_multiple_of(every)
                && !(best == Arm::Spin && spin <= HOT)
                && !far_peer;
            self.probe = probe;
            match (best, probe) {
                (Arm::Spin, false) | (Arm::Park, true) => Arm::Spin,
                (Arm::Park, false) | (Arm::Spin, true) => Arm::Park,
            }
        };
        match self.arm {
            // A probe of the spin arm spins no longer than a park takes:
            // past that, spinning cannot beat parking, and a probe that
            // runs out costs a round trip (often past the p99) for nothing.
            Arm::Spin if self.probe && park != UNKNOWN => max.min(Duration::from_nanos(park)),
            Arm::Spin => max,
            Arm::Park => Duration::ZERO,
        }
    }

    /// Records what the wait just ended took, from its start to the event
    /// (`max` is the strategy's window, which sets the cap); `burnt`: the
    /// window the wait spun without the event before it parked (zero if
    /// the spin caught it, or for a park).
    pub(crate) fn record(&mut self, waited: Duration, max: Duration, burnt: Duration) {
        if std::mem::take(&mut self.first[self.arm as usize]) {
            // The arm's first wait: the peer's start (the half's first
            // wait), or a first park's first-time costs, not the peer.
            return;
        }
        // A spin that ran out is charged the window it burnt on top of the
        // wait: a core spent for nothing, which the peer (woken on our CPU)
        // or another process may have needed.
        let waited = if self.arm == Arm::Spin {
            waited.saturating_add(burnt)
        } else {
            waited
        };
        let v = u64::try_from(waited.as_nanos()).map_or(UNKNOWN - 1, |v| v.min(cap_ns(max)));
        let c = &mut self.cost[self.arm as usize];
        // Weight 1/8 for the new wait; an arm's first wait sets it, and so
        // does a probe that finds its arm cheaper than believed (a probe
        // that finds it dearer is one wait among others: one unlucky probe
        // must not decide the next hundreds of waits).
        *c = if *c == UNKNOWN || (self.probe && v < *c) {
            v
        } else {
            *c - *c / 8 + v / 8
        };
    }
}

/// The spinning half of one wait: decides, one iteration at a time, whether
/// to keep spinning (and when to look at the clock and the socket)
/// or to park.
///
/// An `Adaptive` wait for a hot peer (its spins end within [`HOT`]) reads
/// the clock for the first time after [`CLOCK_EVERY`] spins, not when it
/// begins: the peer's answer (a few hundred ns) then ends the wait before
/// any clock read, and the clock reads (32 ns each here) stay off the
/// round trip. Measured with `bench` (64 B round trip, pinned): reading it
/// at the start and at the first spin put `Adaptive` at 1.15-1.29x
/// `Spin`'s time. Any other spinning wait reads it at its start: a wait
/// timed from its first reading misses the time the thread spent
/// preempted before it, and a new half (the spaced rows, 4 clients and
/// one core busy: the server woken on our CPU runs first) then priced
/// spinning at 0 µs, took its peer for a hot one, and never tried a park.
pub(crate) struct Spinner {
    /// How this wait ends its spin.
    mode: Mode,
    /// When the wait began (`Adaptive` only). A hot peer's wait sets it at
    /// its first clock reading, [`CLOCK_EVERY`] spins in (its window counts
    /// from there; a wait that ends sooner is timed as zero: it ended at
    /// once).
    start: Option<Instant>,
    /// The last clock reading taken while spinning.
    last: Option<Instant>,
    /// This wait's spin window (the learner's choice).
    window: Duration,
    /// [`Step::Park`] was returned.
    parked: bool,
    /// A hot peer's wait: timed from its first clock reading to its last.
    lazy: bool,
    spins: u32,
}

/// How a [`Spinner`] ends its spin.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Never (`Spin`).
    Never,
    /// At its first step (`Block`, and `Adaptive`'s park arm).
    AtOnce,
    /// Once the window has passed, by the clock (`Adaptive`'s spin arm).
    Window,
}

/// Spins between two clock readings of a spinning `Adaptive` wait.
const CLOCK_EVERY: u32 = 16;

impl Spinner {
    /// Starts a wait of `wait`, sized by what `learner` has seen.
    pub(crate) fn new(wait: WaitStrategy, learner: &mut SpinLearner) -> Self {
        let (mode, start, window) = match wait {
            WaitStrategy::Spin => (Mode::Never, None, Duration::MAX),
            WaitStrategy::Block => (Mode::AtOnce, None, Duration::ZERO),
            WaitStrategy::Adaptive { spin } => match learner.window(spin) {
                w if w.is_zero() => (Mode::AtOnce, Some(Instant::now()), w),
                // A hot peer's wait is timed from the first clock reading
                // (`Spinner`); any other from its start: time spent
                // preempted before the first reading must count.
                w if learner.hot() => (Mode::Window, None, w),
                w => (Mode::Window, Some(Instant::now()), w),
            },
        };
        Spinner {
            mode,
            lazy: mode == Mode::Window && start.is_none(),
            start,
            last: None,
            window,
            parked: false,
            spins: 0,
        }
    }

    /// Whether this wait has told the caller to park.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> bool {
        self.parked
    }

    /// The wait ended with the event: tells `learner` what it took
    /// (`Adaptive` only). A hot peer's wait that never parked is timed by
    /// the last clock reading of the spin (none: it ended at once), which
    /// saves a clock read on the hot path; any other wait to now.
    pub(crate) fn finish(&self, learner: &mut SpinLearner) {
        let timed = match self.mode {
            Mode::Never => false,
            Mode::AtOnce => self.start.is_some(),
            Mode::Window => true,
        };
        if !timed {
            return;
        }
        let (took, burnt) = match (self.start, self.parked) {
            // Parked: timed to now; the whole window was spun for nothing.
            (Some(start), true) => (Instant::now().saturating_duration_since(start), self.window),
            // A hot peer's wait: to its last clock reading (none: at once).
            (Some(start), false) if self.lazy => (
                self.last.unwrap_or(start).saturating_duration_since(start),
                Duration::ZERO,
            ),
            (Some(start), false) => (
                Instant::now().saturating_duration_since(start),
                Duration::ZERO,
            ),
            (None, _) => (Duration::ZERO, Duration::ZERO),
        };
        learner.pending = Some((took, burnt));
    }

    /// The next step.
    pub(crate) fn step(&mut self) -> Step {
        self.spins = self.spins.wrapping_add(1);
        let park = match self.mode {
            Mode::Never => false,
            Mode::AtOnce => true,
            // The clock is read every CLOCK_EVERY spins only (a vDSO call,
            // but not free), the first time CLOCK_EVERY spins in.
            Mode::Window if self.spins.is_multiple_of(CLOCK_EVERY) => {
                let now = Instant::now();
                self.last = Some(now);
                let start = *self.start.get_or_insert(now);
                now.saturating_duration_since(start) >= self.window
            }
            Mode::Window => false,
        };
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
    /// Starts a park episode asking for a `kind` wake-up: snapshot the
    /// peer's wake word, mark the ring, then the parking side's fence (SYNC
    /// POINTs `wake-word`, `park-dekker`); the caller re-checks before it
    /// sleeps. Returns the snapshot (the futex value to sleep on).
    fn park(&mut self, kind: WakeKind) -> u32;
    /// The peer's wake word to sleep on with a futex, and our shutdown
    /// flag; `None`: this half sleeps on the socket (futex wake-ups off).
    fn futex(&self) -> Option<(&WakeWord, &ShutFlag)>;
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
    let mut futex_phase = true;
    loop {
        if ready(w)? {
            spinner.finish(w.learner());
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
        // A futex sleep first; once one slice has passed without a
        // wake-up, the socket (see `FUTEX_SLICE`).
        let futex = futex_phase && w.futex().is_some();
        // SYNC POINT `wake-word`: the snapshot is taken before the park
        // episode begins (a snapshot taken after it could already hold the
        // bump that pays this episode: `shmsock_shm::ring::WakeWord`).
        let parked_at = w.park(if futex {
            WakeKind::Futex
        } else {
            WakeKind::Socket
        });
        let snap = futex.then_some(parked_at);
        match ready(w) {
            Ok(false) => {}
            r => {
                w.unpark();
                if matches!(r, Ok(true)) {
                    spinner.finish(w.learner());
                }
                return r.map(drop);
            }
        }
        let woke = match snap {
            Some(snap) => sleep_futex(w, snap, deadline).map(|s| match s {
                FutexSleep::Deadline => false,
                FutexSleep::Woken => true,
                FutexSleep::SliceEnded => {
                    futex_phase = false;
                    true
                }
            }),
            None => sleep_once(w, deadline),
        };
        w.unpark();
        if !woke? {
            return Err(Error::Timeout);
        }
    }
}

/// Sleeps on the peer's wake word (whose value was `snap` before our
/// park) for one slice at most, or until the deadline
/// ([`FutexSleep::Deadline`] once it has passed); after a slice that timed
/// out (or a shutdown), reads the socket without blocking, so the hang-up
/// of a dead peer is noticed. A peer flooding `FUTEX_WAKE` only makes this
/// return early: the caller re-checks, and the deadline is checked here.
fn sleep_futex<W: Waiter>(w: &mut W, snap: u32, deadline: Option<Instant>) -> Result<FutexSleep> {
    let mut slice = FUTEX_SLICE;
    if let Some(d) = deadline {
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(FutexSleep::Deadline);
        }
        slice = slice.min(left);
    }
    let mut look = true;
    let mut ended = FutexSleep::Woken;
    if let Some((word, shut)) = w.futex() {
        let slept = word
            .sleep(snap, slice)
            .map_err(|e| Error::io("futex_wait", e))?;
        if slept == Slept::TimedOut {
            ended = FutexSleep::SliceEnded;
        }
        // Woken by the peer's bump (the word changed): no need for a
        // syscall on the socket. Its death wakes nobody, so the end of a
        // slice is when we look; a shutdown sets its word; a wake-up
        // without a bump (a flood, EINTR) looks too.
        look = slept == Slept::TimedOut || shut.is_set() || word.current() == snap;
    }
    if look {
        w.drain()?;
    }
    Ok(ended)
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

    /// Runs `n` waits where a wait that spins takes `spin` (and ran out,
    /// if longer than its window) and one that parks at once takes
    /// `short`; returns how many spun.
    fn drive(l: &mut SpinLearner, spin: Duration, short: Duration, n: u32) -> u32 {
        let mut whole = 0;
        for _ in 0..n {
            let w = l.window(MAX);
            let took = if w > Duration::ZERO {
                whole += 1;
                spin
            } else {
                short
            };
            let burnt = if w > Duration::ZERO && took > w {
                w
            } else {
                Duration::ZERO
            };
            l.record(took, MAX, burnt);
        }
        whole
    }

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn parks_when_spinning_does_not_pay_even_if_it_catches_the_reply() {
        // The paced client: spinning catches the reply in 28 µs, parking
        // gets it in 21 µs. After learning, only probes spin, and each
        // spins no longer than a park takes (21 µs): it runs out, which
        // moves spinning's price up until it is over twice a park's, and
        // probes then come every PROBE_FAR waits.
        let mut l = SpinLearner::default();
        assert_eq!(l.window(MAX), MAX, "a new half spins");
        l.record(28 * US, MAX, Duration::ZERO);
        drive(&mut l, 28 * US, 21 * US, 200);
        let whole = drive(&mut l, 28 * US, 21 * US, PROBE_FAR * 4);
        assert!(
            (4..=16).contains(&whole),
            "{whole}: between one probe every PROBE_FAR and every PROBE_CLOSE waits"
        );
        let whole = drive(&mut l, 28 * US, 21 * US, PROBE_FAR * 4);
        assert_eq!(whole, 4, "then one every PROBE_FAR waits");
    }

    #[test]
    fn a_probe_of_the_spin_arm_spins_no_longer_than_a_park_takes() {
        // Parking gets the reply in 17 µs; spinning runs out (the spaced
        // client with one core busy). A probe of the spin arm spins 17 µs,
        // not the whole 50 µs window (a probe that ran out cost the window
        // plus a park: 70 µs, past that cell's p99).
        let mut l = SpinLearner::default();
        drive(&mut l, 70 * US, 17 * US, 600);
        let mut probes = 0;
        for _ in 0..PROBE_FAR * 2 {
            let w = l.window(MAX);
            if w > Duration::ZERO {
                probes += 1;
                assert!(w <= 18 * US, "a probe spun {w:?}");
                l.record(w + 17 * US, MAX, w);
            } else {
                l.record(17 * US, MAX, Duration::ZERO);
            }
        }
        assert!(probes >= 1, "the spin arm is still probed");
        // A hot peer still gets the whole window once spinning wins.
        let mut l = SpinLearner::default();
        drive(&mut l, 8 * US, 40 * US, 600);
        assert_eq!(l.window(MAX), MAX);
    }

    #[test]
    fn spins_when_the_answer_comes_within_the_window() {
        // A peer that answers in 8 µs: parking costs a wake-up (40 µs).
        let mut l = SpinLearner::default();
        drive(&mut l, 8 * US, 40 * US, 600);
        let whole = drive(&mut l, 8 * US, 40 * US, PROBE_FAR * 4);
        assert_eq!(
            whole,
            PROBE_FAR * 4 - 4,
            "the park arm probed every PROBE_FAR"
        );
    }

    #[test]
    fn a_hot_peer_is_never_probed_with_a_park() {
        // Answers within HOT: the spin arm wins and a park is never tried
        // after the first two (each would cost a wake-up, 100 times the
        // wait).
        let mut l = SpinLearner::default();
        drive(&mut l, 400 * US / 1000, 30 * US, 4);
        let whole = drive(&mut l, 400 * US / 1000, 30 * US, PROBE_FAR * 4);
        assert_eq!(whole, PROBE_FAR * 4);
    }

    #[test]
    fn follows_the_peer_when_it_changes() {
        let mut l = SpinLearner::default();
        // Spinning pays...
        drive(&mut l, 8 * US, 40 * US, 600);
        assert_eq!(l.window(MAX), MAX);
        l.record(8 * US, MAX, Duration::ZERO);
        // ...then the peer starts sleeping: a spin now costs the window
        // and a wake-up, parking only the wake-up. Within a few waits the
        // learner parks.
        drive(&mut l, 80 * US, 30 * US, 40);
        let whole = drive(&mut l, 80 * US, 30 * US, PROBE_CLOSE * 2);
        assert!(whole <= 2, "{whole}");
        // And back: the probes find spinning cheap again.
        drive(&mut l, 8 * US, 40 * US, PROBE_FAR * 8);
        let whole = drive(&mut l, 8 * US, 40 * US, 100);
        assert!(whole >= 99, "{whole}");
    }

    #[test]
    fn the_first_wait_is_not_counted() {
        // The first wait of a connection took 348 µs (the peer was still
        // starting); afterwards spinning catches the reply in 10 µs and a
        // park takes 18 µs: the half spins from its start.
        let mut l = SpinLearner::default();
        assert_eq!(l.window(MAX), MAX);
        l.record(348 * US, MAX, Duration::ZERO);
        drive(&mut l, 10 * US, 18 * US, 3);
        let whole = drive(&mut l, 10 * US, 18 * US, 100);
        assert_eq!(whole, 100);
    }

    #[test]
    fn the_first_park_is_not_counted() {
        // `spaced_probe`, one client: the first spin took 35 µs, the first
        // park 67 µs (first-time costs), every later park 22 µs, and a
        // spin runs out (the server woken on our CPU waits for it) at
        // 80 µs. Priced by its first park, the half spun and ran out
        // several times; now it parks from its third wait on, and only
        // probes spin (no longer than a park takes).
        let mut l = SpinLearner::default();
        let mut spun = 0;
        // (The first probe comes at wait PROBE_CLOSE.)
        for i in 0..PROBE_CLOSE - 1 {
            let w = l.window(MAX);
            let (took, burnt) = match (w.is_zero(), i) {
                (false, 0 | 1) => (35 * US, Duration::ZERO),
                (false, _) => (80 * US, w),
                (true, 2) => (67 * US, Duration::ZERO),
                (true, _) => (22 * US, Duration::ZERO),
            };
            if !w.is_zero() && i >= 2 {
                spun += 1;
            }
            l.record(took, MAX, burnt);
        }
        assert_eq!(spun, 0, "waits spun after the first two");
    }

    #[test]
    fn one_slow_wait_is_forgotten_at_the_first_probe() {
        // A slow wait priced spinning at the cap (the first counted wait
        // sets an arm's cost); spinning catches the reply in 10 µs, a park
        // takes 18 µs. The first probe of the spin arm makes it the choice
        // again (it moved the average by 1/8 before: ~20 probes).
        let mut l = SpinLearner::default();
        drive(&mut l, 10 * US, 18 * US, 1);
        assert_eq!(l.window(MAX), MAX);
        l.record(348 * US, MAX, Duration::ZERO);
        drive(&mut l, 10 * US, 18 * US, PROBE_FAR + 2);
        let whole = drive(&mut l, 10 * US, 18 * US, 100);
        assert!(whole >= 99, "{whole} of 100 waits spun");
    }

    #[test]
    fn a_lucky_probe_costs_only_a_few_waits() {
        // Parking pays (spinning wastes the window: 200 µs against 30 µs);
        // one probe catches a reply in 1 µs by luck. The half spins a few
        // waits, each of which prices spinning back up, then parks again.
        let mut l = SpinLearner::default();
        drive(&mut l, 200 * US, 30 * US, 600);
        assert_eq!(l.window(MAX), Duration::ZERO);
        l.record(30 * US, MAX, Duration::ZERO);
        l.probe = true;
        l.arm = Arm::Spin;
        l.record(US, MAX, Duration::ZERO);
        let whole = drive(&mut l, 200 * US, 30 * US, 100);
        assert!(whole <= 3, "{whole} of 100 waits spun");
    }

    #[test]
    fn one_unlucky_probe_does_not_decide() {
        // The spaced client with one core busy (`examples/spaced_probe`,
        // session 8): parking gets the reply in 17 µs; a spin mostly runs
        // out (the server was woken on our CPU) and takes 70 µs. A lucky
        // spin probe (8 µs) makes spinning the choice; the next park probe
        // is a rare slow park (50 µs). That one probe set the park arm's
        // cost, and the half spun its failing spins until the next park
        // probe, 128 waits later. Now it parks again within two waits.
        let mut l = SpinLearner::default();
        drive(&mut l, 70 * US, 17 * US, 600);
        assert_eq!(l.window(MAX), Duration::ZERO);
        l.record(17 * US, MAX, Duration::ZERO);
        l.probe = true;
        l.arm = Arm::Spin;
        l.record(8 * US, MAX, Duration::ZERO);
        assert_eq!(l.best(), Arm::Spin);
        l.probe = true;
        l.arm = Arm::Park;
        l.record(50 * US, MAX, Duration::ZERO);
        let whole = drive(&mut l, 70 * US, 17 * US, 100);
        assert!(whole <= 2, "{whole} of 100 waits spun");
    }

    #[test]
    fn a_spin_that_runs_out_costs_its_window_too() {
        // A spin that ran out took 60 µs to the event, parking at once
        // 65 µs: by the wait alone spinning looks cheaper, but every spin
        // burnt its whole window (50 µs) of a core and caught nothing.
        let mut l = SpinLearner::default();
        drive(&mut l, 60 * US, 65 * US, 600);
        let whole = drive(&mut l, 60 * US, 65 * US, PROBE_CLOSE * 4);
        assert!(whole <= 4, "{whole} waits spun");
        // The charge is the window, on the spin arm only.
        // (Each arm's first wait is not counted.)
        let mut l = SpinLearner::default();
        for _ in 0..2 {
            l.window(MAX);
            l.record(60 * US, MAX, MAX);
        }
        assert_eq!(l.cost[Arm::Spin as usize], 110_000);
        for _ in 0..2 {
            l.window(MAX);
            l.record(60 * US, MAX, MAX);
        }
        assert_eq!(l.cost[Arm::Park as usize], 60_000);
    }

    #[test]
    fn any_window_works() {
        // A window of Duration::MAX (spin forever, as `Spin`) and waits of
        // any length neither overflow nor look like an unknown arm.
        let mut l = SpinLearner::default();
        for took in [Duration::ZERO, Duration::MAX, US, Duration::MAX] {
            let _ = l.window(Duration::MAX);
            l.record(took, Duration::MAX, Duration::ZERO);
        }
        assert!(l.cost.iter().all(|&c| c != UNKNOWN));
        let _ = l.window(Duration::MAX);
    }

    #[test]
    fn long_waits_are_capped_and_a_zero_window_stays_zero() {
        // A server waiting for requests milliseconds apart: both arms wait
        // the cap, so it does not spin, not even to probe: a spin would run
        // out, holding a core just when the client it answered wakes (the
        // spaced rows with one core busy: 0.8 % of its waits were such
        // probes, and the clients' p99 was the window plus a wake-up).
        let mut l = SpinLearner::default();
        drive(&mut l, 2000 * US, 2000 * US, 100);
        let whole = drive(&mut l, 2000 * US, 2000 * US, PROBE_FAR * 4);
        assert_eq!(whole, 0);
        // A window of 0 stays 0 (Block-like), never the floor.
        assert_eq!(l.window(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_far_peer_that_comes_closer_is_probed_again() {
        let mut l = SpinLearner::default();
        drive(&mut l, 2000 * US, 2000 * US, PROBE_FAR * 2);
        // The peer now answers in 8 µs; a park takes 40 µs. The park
        // arm's own waits bring its cost under half the cap, the probes
        // resume, and one finds spinning cheaper.
        drive(&mut l, 8 * US, 40 * US, PROBE_FAR * 2);
        let whole = drive(&mut l, 8 * US, 40 * US, 100);
        assert!(whole >= 99, "{whole} of 100 waits spun");
    }

    /// A learner past its first waits, with these costs (ns).
    fn learned(spin: u64, park: u64) -> SpinLearner {
        SpinLearner {
            cost: [spin, park],
            waits: 5,
            first: [false; 2],
            ..SpinLearner::default()
        }
    }

    #[test]
    fn a_hot_wait_reads_no_clock_before_clock_every_spins() {
        // A hot peer answers within a few spins: such a wait must not pay
        // for clock reads (they put `Adaptive` at 1.15-1.29x `Spin`'s
        // 64 B round trip when it read the clock at its start and first spin).
        let mut l = learned(400, 40_000);
        let mut s = Spinner::new(WaitStrategy::default(), &mut l);
        assert!(s.start.is_none(), "no clock read at the start");
        for _ in 1..CLOCK_EVERY {
            assert!(matches!(s.step(), Step::Spin));
        }
        assert!(s.start.is_none() && s.last.is_none(), "nor while spinning");
        s.finish(&mut l);
        assert_eq!(
            l.pending.map(|p| p.0),
            Some(Duration::ZERO),
            "ended at once"
        );
        let mut s = Spinner::new(WaitStrategy::default(), &mut l);
        for _ in 0..CLOCK_EVERY {
            s.step();
        }
        assert!(
            s.start.is_some() && s.last.is_some(),
            "then every CLOCK_EVERY"
        );
        s.finish(&mut l);
        assert!(l.pending.is_some(), "kept for the next wait's start");
        l.window(MAX);
        assert!(l.cost[Arm::Spin as usize] < 1_000_000);
        // Every other wait reads the clock at its start: a new half, a
        // peer that is not hot, a park.
        for mut l in [
            SpinLearner::default(),
            learned(10_000, 40_000),
            learned(40_000, 10_000),
        ] {
            let s = Spinner::new(WaitStrategy::default(), &mut l);
            assert!(s.start.is_some(), "{l:?}");
        }
    }

    #[test]
    fn a_wait_preempted_before_its_first_clock_reading_is_timed_from_its_start() {
        // The spaced rows, 4 clients and one core busy: the server woken
        // by our request runs on our CPU first, and our wait resumes with
        // the reply there. Timed from its first clock reading, such a wait
        // took 0 µs: a new half priced spinning at 0, took its peer for a
        // hot one (never probed with a park) and spun ~25 waits.
        for mut l in [SpinLearner::default(), learned(10_000, 40_000)] {
            let mut s = Spinner::new(WaitStrategy::default(), &mut l);
            std::thread::sleep(Duration::from_millis(2));
            for _ in 1..CLOCK_EVERY {
                s.step();
            }
            s.finish(&mut l);
            let took = l.pending.map_or(Duration::ZERO, |p| p.0);
            assert!(took >= Duration::from_millis(2), "{took:?}");
        }
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
