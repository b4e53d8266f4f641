//! This machine's floor, measured in the same run as the transports:
//!
//! - the cross-process round trip of one cache line: two processes pinned
//!   like the transports' ping-pong a counter in a shared mapping (a memfd
//!   mapped `MAP_SHARED`, created before the fork), spinning;
//! - single-thread `memcpy` bandwidth over buffers far larger than the
//!   caches.
//!
//! The one shared word is only ever accessed through `AtomicU64`.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmsock::shm::{Segment, SegmentOptions};

use super::child::{fork_with, Child, Result};

/// Value that tells the child to exit.
const STOP: u64 = u64::MAX;
/// A child that sees no new value for this long gives up.
const STALL: Duration = Duration::from_secs(10);

/// Spin style of the floor measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinStyle {
    /// Reload the word in a tight loop: the hardware floor.
    Tight,
    /// Execute `PAUSE` (`std::hint::spin_loop`) between loads, as shmsock's
    /// spinning waits do.
    Pause,
}

/// Spins between two looks at the clock while waiting.
const CLOCK_EVERY: u32 = 1 << 16;

/// Waits until `word` holds `want` or `STOP`, and returns what it holds;
/// `Err` if nothing changes for `stall`.
#[inline]
fn wait_for(word: &AtomicU64, want: u64, style: SpinStyle, stall: Duration) -> Result<u64> {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        // SYNC POINT `floor-turn`: Acquire pairs with the peer's Release
        // store of its turn, as a real transport needs for its payload.
        let v = word.load(Ordering::Acquire);
        if v == want || v == STOP {
            return Ok(v);
        }
        if style == SpinStyle::Pause {
            spin_loop();
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(CLOCK_EVERY) {
            let t0 = *since.get_or_insert_with(Instant::now);
            if t0.elapsed() > stall {
                return Err(
                    format!("cache-line ping-pong stalled at {v} (waiting for {want})").into(),
                );
            }
        }
    }
}

/// The child's side: answer every odd value `v` with `v + 1` until `STOP`.
fn pong(word: &AtomicU64, style: SpinStyle) -> Result<()> {
    let mut want = 1u64;
    loop {
        if wait_for(word, want, style, STALL)? == STOP {
            return Ok(());
        }
        // SYNC POINT `floor-turn` (Release side).
        word.store(want + 1, Ordering::Release);
        want += 2;
    }
}

/// A shared page holding the ping-pong word.
struct SharedWord {
    seg: Segment,
}

impl SharedWord {
    fn new() -> Result<Self> {
        let seg = Segment::create(
            c"shmsock-bench-floor",
            4096,
            SegmentOptions {
                populate: true,
                ..SegmentOptions::default()
            },
        )?;
        Ok(SharedWord { seg })
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned (so 8-aligned), 4096 bytes,
        // and lives as long as `self.seg`, which the returned borrow cannot
        // outlive; both processes access the word only through atomics.
        unsafe { AtomicU64::from_ptr(self.seg.as_ptr().cast::<u64>()) }
    }
}

/// The cross-process cache-line ping-pong: a forked peer answering every
/// odd value of the shared word with the next even one.
pub struct PingPong {
    shared: SharedWord,
    child: Child,
    next: u64,
    style: SpinStyle,
    timeout: Duration,
}

impl PingPong {
    /// Forks the peer (pinned to the second core of `cores`).
    ///
    /// # Errors
    /// If the shared page cannot be made or the fork fails.
    pub fn start(
        cores: Option<(usize, usize)>,
        style: SpinStyle,
        timeout: Duration,
    ) -> Result<PingPong> {
        let shared = SharedWord::new()?;
        // The child inherits the MAP_SHARED mapping: `shared` names the same
        // memfd page in both processes.
        let (child, ()) = fork_with((), (), cores.map(|(_, c)| c), |()| {
            pong(shared.word(), style)
        })?;
        Ok(PingPong {
            shared,
            child,
            next: 1,
            style,
            timeout,
        })
    }

    /// `n` round trips; pushes each one's duration in nanoseconds to
    /// `samples` if given. Returns the total time.
    ///
    /// # Errors
    /// If the peer stops answering for the timeout.
    pub fn round_trips(&mut self, n: u64, mut samples: Option<&mut Vec<u64>>) -> Result<Duration> {
        let word = self.shared.word();
        let start = Instant::now();
        let mut prev = start;
        for _ in 0..n {
            // SYNC POINT `floor-turn` (Release side).
            word.store(self.next, Ordering::Release);
            if wait_for(word, self.next + 1, self.style, self.timeout)? == STOP {
                return Err("cache-line ping-pong: unexpected stop value".into());
            }
            self.next += 2;
            if let Some(v) = samples.as_deref_mut() {
                let now = Instant::now();
                v.push((now - prev).as_nanos() as u64);
                prev = now;
            }
        }
        Ok(start.elapsed())
    }

    /// Stops the peer and checks that it exited cleanly.
    ///
    /// # Errors
    /// If it did not exit with status 0 in time.
    pub fn finish(self) -> Result<()> {
        // SYNC POINT `floor-turn` (Release side; the peer only compares).
        self.shared.word().store(STOP, Ordering::Release);
        let PingPong { child, timeout, .. } = self;
        child.wait(timeout)
    }
}

/// Single-thread `memcpy` bandwidth in bytes per second, copying `len`
/// bytes at a time for at least `measure` (and at least three copies).
pub fn memcpy_bandwidth(len: usize, measure: Duration) -> f64 {
    let mut src = vec![0u8; len];
    super::pattern::fill(&mut src, 1);
    let mut dst = vec![0u8; len];
    // Fault the destination in and warm the TLB.
    dst.copy_from_slice(&src);
    let start = Instant::now();
    let mut copies = 0u64;
    while copies < 3 || start.elapsed() < measure {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        copies += 1;
    }
    (copies as f64 * len as f64) / start.elapsed().as_secs_f64()
}
