//! The `bench` subcommand's plan: which rows, how long each runs, and the
//! statistics kept of each.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::child::{BoxError, Result};
use super::floor::{self, SpinStyle};
use super::session::{Api, Options, Session, Transport};
use super::watchdog::is_hung;

/// Message sizes measured by default.
pub const DEFAULT_SIZES: [usize; 6] = [64, 1 << 10, 16 << 10, 64 << 10, 1 << 20, 16 << 20];
/// Buffer size of the `memcpy` floor: far above every cache.
pub const MEMCPY_LEN: usize = 64 << 20;
/// Buffer size of the cache-resident `memcpy` reference.
pub const MEMCPY_HOT_LEN: usize = 1 << 20;

/// Time given to each measurement.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Warm-up (and calibration) time of each scenario of each row.
    pub warm: Duration,
    /// Measurement time of each scenario of each row.
    pub measure: Duration,
    /// Fewest round trips / messages measured, however slow.
    pub min_iters: u64,
    /// Most round trips recorded (bounds the sample memory).
    pub max_rtt_samples: u64,
}

impl Budget {
    /// The default run (under a minute on two cores).
    pub const DEFAULT: Budget = Budget {
        warm: Duration::from_millis(40),
        measure: Duration::from_millis(200),
        min_iters: 8,
        max_rtt_samples: 4_000_000,
    };
    /// `--quick` (under 20 s).
    pub const QUICK: Budget = Budget {
        warm: Duration::from_millis(10),
        measure: Duration::from_millis(40),
        min_iters: 4,
        max_rtt_samples: 1_000_000,
    };
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Message sizes, in order.
    pub sizes: Vec<usize>,
    /// Time budget.
    pub budget: Budget,
    /// Cores of the parent and the child, if pinned.
    pub cores: Option<(usize, usize)>,
    /// Only transports whose display name contains this (case-insensitive).
    pub filter: Option<String>,
    /// The sizes (among `sizes`) at which iceoryx2 is measured too; empty:
    /// not measured.
    pub iceoryx2_sizes: Vec<usize>,
    /// Longest a single transfer (a batch of round trips, a stream) may
    /// take before the watchdog declares it hung and skips its row.
    pub timeout: Duration,
}

/// The iceoryx2 sizes of `--quick` (each iceoryx2 row costs about as much
/// as a shmsock row; four rows per size).
pub const ICEORYX2_QUICK_SIZES: [usize; 2] = [64, 1 << 20];

/// Round-trip latency statistics, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct RttStats {
    /// Round trips recorded.
    pub samples: usize,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl RttStats {
    /// Percentiles (nearest rank) of `samples`, which it sorts.
    pub fn from_samples(samples: &mut [u64]) -> Option<RttStats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Some(RttStats {
            samples: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        })
    }
}

/// One-way throughput.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Messages measured.
    pub messages: u64,
    /// Payload bytes per second.
    pub bytes_per_s: f64,
    /// Messages per second.
    pub msgs_per_s: f64,
}

/// One measured (size, transport).
#[derive(Debug, Clone)]
pub struct Row {
    /// Message size in bytes.
    pub size: usize,
    /// Transport and mode.
    pub transport: Transport,
    /// Round trip.
    pub rtt: RttStats,
    /// One-way stream.
    pub thr: Throughput,
}

/// A (size, transport) that was not measured, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// Message size in bytes.
    pub size: usize,
    /// Transport.
    pub transport: Transport,
    /// Why.
    pub reason: String,
    /// Whether it was skipped because a transfer hung (the watchdog killed
    /// its peer; see [`super::watchdog`]): a bug of the transport or of its
    /// harness, unlike the planned skips.
    pub hung: bool,
}

impl Skipped {
    /// Whether this is a hang of a row that is ours to fix (any but
    /// iceoryx2's): the run then ends with a non-zero exit status.
    pub fn fails_run(&self) -> bool {
        self.hung && !matches!(self.transport, Transport::Iceoryx2(..))
    }
}

/// The machine's floor.
#[derive(Debug, Clone)]
pub struct Floors {
    /// Cache-line round trip, tight spinning, over the whole run.
    pub cacheline: RttStats,
    /// Cache-line round trip, spinning with `PAUSE`.
    pub cacheline_pause: RttStats,
    /// Single-thread memcpy bandwidth over [`MEMCPY_LEN`] bytes, bytes/s.
    pub memcpy: f64,
    /// The same over [`MEMCPY_HOT_LEN`] bytes (source and destination stay
    /// in the caches, as a ring does), bytes/s.
    pub memcpy_hot: f64,
    /// The cache-line round trip (tight, PAUSE) measured in each size's
    /// rounds, next to that size's transports.
    pub by_size: Vec<(usize, RttStats, RttStats)>,
}

impl Floors {
    /// The tight-spin cache-line floor measured alongside `size` (the
    /// whole run's if that size was not measured).
    pub fn cacheline_at(&self, size: usize) -> RttStats {
        self.by_size
            .iter()
            .find(|(s, _, _)| *s == size)
            .map_or(self.cacheline, |&(_, t, _)| t)
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Measured rows, by size then transport.
    pub rows: Vec<Row>,
    /// Rows not measured.
    pub skipped: Vec<Skipped>,
    /// The floor.
    pub floors: Floors,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// Progress display on stderr: one updating line on a terminal, one line
/// per step otherwise.
pub struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    start: Instant,
}

impl Progress {
    /// A display for a run of `total` steps.
    pub fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    /// Counts one step, named `what`, as done.
    pub fn step(&mut self, what: &str) {
        self.done += 1;
        let line = format!(
            "[{:>3}/{}] {:>5.1} s  {what}",
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the run.
        let _ = if self.tty {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    /// Ends the display with the run's total time.
    pub fn finish(&self) {
        let mut err = std::io::stderr().lock();
        let secs = self.start.elapsed().as_secs_f64();
        let _ = if self.tty {
            writeln!(err, "\r\x1b[Kbench: {} steps in {secs:.1} s", self.total)
        } else {
            writeln!(err, "bench: {} steps in {secs:.1} s", self.total)
        };
    }
}

/// Human-readable byte size: `64 B`, `16 KiB`, `1 MiB`, `1000 B`.
pub fn size_name(size: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if size >= unit && size.is_multiple_of(unit) {
            return format!("{} {name}", size / unit);
        }
    }
    format!("{size} B")
}

/// Runs `f(n)` with doubling `n` until `warm` has passed; returns the
/// time per iteration of the last call.
fn calibrate(warm: Duration, mut f: impl FnMut(u64) -> Result<Duration>) -> Result<f64> {
    let start = Instant::now();
    let mut n = 1u64;
    loop {
        let t = f(n)?;
        if start.elapsed() >= warm || n >= 1 << 24 {
            return Ok(t.as_secs_f64() / n as f64);
        }
        n *= 2;
    }
}

/// Iterations that fill `measure` at `per_iter` seconds each.
fn iterations(budget: &Budget, per_iter: f64, max: u64) -> u64 {
    let n = budget.measure.as_secs_f64() / per_iter.max(1e-9);
    (n as u64).clamp(budget.min_iters, max.max(budget.min_iters))
}

/// Rounds each size is measured in. Every live session (and the cache-line
/// floor) takes a turn in every round, in rotated order, so that a change
/// of host phase (this VM's cross-core speed changes every few seconds)
/// hits all rows of a size alike and the ratios between them hold.
pub const ROUNDS: u64 = 5;

/// A session being measured, with what it has gathered so far.
struct Live {
    transport: Transport,
    session: Session,
    rtt_per_round: u64,
    thr_per_round: u64,
    samples: Vec<u64>,
    messages: u64,
    secs: f64,
    /// A transfer hung and the peer was killed: measured no further.
    hung: bool,
}

/// The skip record of a row whose transfer hung (`e`, a [`Hung`]).
fn hung(size: usize, transport: Transport, e: &BoxError) -> Skipped {
    eprintln!(
        "bench: {} {transport}: {e}; row skipped{}",
        size_name(size),
        if matches!(transport, Transport::Iceoryx2(..)) {
            " (iceoryx2: reported, does not fail the run)"
        } else {
            " (the run will exit with status 3)"
        }
    );
    Skipped {
        size,
        transport,
        reason: e.to_string(),
        hung: true,
    }
}

/// Cache-line floor samples, per spin style.
#[derive(Default)]
struct FloorSamples {
    tight: Vec<u64>,
    pause: Vec<u64>,
    /// Statistics of each size's own rounds.
    by_size: Vec<(usize, RttStats, RttStats)>,
}

/// Round trips of the floor per round (from a calibration at the start).
#[derive(Clone, Copy)]
struct FloorPlan {
    tight: u64,
    pause: u64,
}

/// Forks a fresh ping-pong peer (one that spins all the time must not stay
/// alive while the transports are measured) and records `n` round trips.
fn floor_round(
    cores: Option<(usize, usize)>,
    style: SpinStyle,
    n: u64,
    opts: &Options,
    out: &mut Vec<u64>,
) -> Result<()> {
    let mut p = floor::PingPong::start(cores, style, opts.timeout)?;
    // A few unrecorded round trips bring both cache lines' owners up.
    p.round_trips(64, None)?;
    p.round_trips(n, Some(out))?;
    p.finish()
}

/// Calibrates the floor: round trips per round for each style.
fn plan_floor(cores: Option<(usize, usize)>, budget: &Budget, opts: &Options) -> Result<FloorPlan> {
    let per_round = budget.measure / (2 * ROUNDS as u32);
    let mut n = [0u64; 2];
    for (i, style) in [SpinStyle::Tight, SpinStyle::Pause].into_iter().enumerate() {
        let mut p = floor::PingPong::start(cores, style, opts.timeout)?;
        let per = calibrate(budget.warm / 2, |n| p.round_trips(n, None))?;
        p.finish()?;
        n[i] = ((per_round.as_secs_f64() / per.max(1e-9)) as u64).clamp(100, 1_000_000);
    }
    Ok(FloorPlan {
        tight: n[0],
        pause: n[1],
    })
}

/// Measures every transport at one size, interleaved over [`ROUNDS`]
/// rounds; the floor takes a turn in each round too.
fn measure_size(
    size: usize,
    transports: &[Transport],
    plan: &Plan,
    fplan: FloorPlan,
    opts: &Options,
    floors: &mut FloorSamples,
    progress: &mut Progress,
) -> Result<(Vec<Row>, Vec<Skipped>)> {
    let b = &plan.budget;
    let name = size_name(size);
    progress.step(&format!(
        "{name}: connecting and calibrating {} transports",
        transports.len()
    ));
    let per_round = |per_iter: f64, max: u64| {
        let n = iterations(b, per_iter, max);
        n.div_ceil(ROUNDS).max(b.min_iters.div_ceil(ROUNDS)).max(1)
    };
    let mut live = Vec::with_capacity(transports.len());
    let mut skipped = Vec::new();
    for &t in transports {
        let ctx = |e: BoxError| -> BoxError { format!("{name} {t}: {e}").into() };
        let mut session = match Session::start(t, size, opts) {
            Ok(s) => s,
            // iceoryx2 needs /dev/shm and /tmp/iceoryx2: where it cannot
            // run, say why in the report and measure the rest.
            Err(e) if matches!(t, Transport::Iceoryx2(..)) => {
                eprintln!("bench: {name} {t}: not measured: {e}");
                skipped.push(Skipped {
                    size,
                    transport: t,
                    reason: format!("{t} could not be set up: {e}"),
                    hung: false,
                });
                continue;
            }
            Err(e) => return Err(ctx(e)),
        };
        let cal = calibrate(b.warm, |n| session.round_trips(n, None))
            .and_then(|rtt| Ok((rtt, calibrate(b.warm, |n| session.stream(n))?)));
        let (rtt, thr) = match cal {
            Ok(v) => v,
            Err(e) if is_hung(&e) => {
                skipped.push(hung(size, t, &e));
                continue;
            }
            Err(e) => return Err(ctx(e)),
        };
        live.push(Live {
            transport: t,
            session,
            rtt_per_round: per_round(rtt, b.max_rtt_samples),
            thr_per_round: per_round(thr, u64::MAX),
            samples: Vec::new(),
            messages: 0,
            secs: 0.0,
            hung: false,
        });
    }
    let mut own_floor = FloorSamples::default();
    for round in 0..ROUNDS {
        progress.step(&format!("{name}: round {}/{ROUNDS}", round + 1));
        floor_round(
            plan.cores,
            SpinStyle::Tight,
            fplan.tight,
            opts,
            &mut own_floor.tight,
        )?;
        floor_round(
            plan.cores,
            SpinStyle::Pause,
            fplan.pause,
            opts,
            &mut own_floor.pause,
        )?;
        let n = live.len();
        for k in 0..n {
            let l = &mut live[(k + round as usize) % n];
            if l.hung {
                continue;
            }
            let t = l.transport;
            let r = l
                .session
                .round_trips(l.rtt_per_round, Some(&mut l.samples))
                .and_then(|_| l.session.stream(l.thr_per_round));
            match r {
                Ok(d) => {
                    l.secs += d.as_secs_f64();
                    l.messages += l.thr_per_round;
                }
                // Its peer was killed: the row is skipped, the others go on.
                Err(e) if is_hung(&e) => {
                    l.hung = true;
                    skipped.push(hung(size, t, &e));
                }
                Err(e) => return Err(format!("{name} {t}: {e}").into()),
            }
        }
    }
    let mut rows = Vec::with_capacity(live.len());
    // A hung row's session is dropped: its peer, already killed, is reaped.
    for mut l in live.into_iter().filter(|l| !l.hung) {
        let t = l.transport;
        l.session.finish().map_err(|e| format!("{name} {t}: {e}"))?;
        let rtt = RttStats::from_samples(&mut l.samples).ok_or("no round trips measured")?;
        rows.push(Row {
            size,
            transport: t,
            rtt,
            thr: Throughput {
                messages: l.messages,
                bytes_per_s: (l.messages as f64 * size as f64) / l.secs,
                msgs_per_s: l.messages as f64 / l.secs,
            },
        });
    }
    let tight = RttStats::from_samples(&mut own_floor.tight).ok_or("no floor samples")?;
    let pause = RttStats::from_samples(&mut own_floor.pause).ok_or("no floor samples")?;
    floors.tight.append(&mut own_floor.tight);
    floors.pause.append(&mut own_floor.pause);
    floors.by_size.push((size, tight, pause));
    Ok((rows, skipped))
}

/// Runs the plan.
///
/// # Errors
/// The first failure (setup, transport, verification, child exit), with
/// the row it happened in.
pub fn run(plan: &Plan) -> Result<Results> {
    let started = Instant::now();
    let opts = Options {
        cores: plan.cores,
        timeout: plan.timeout,
    };
    let filter = plan.filter.as_ref().map(|f| f.to_lowercase());
    let mut todo = Vec::new();
    let mut skipped = Vec::new();
    for &size in &plan.sizes {
        let mut ts = Transport::all();
        ts.extend(Transport::iceoryx2());
        for t in ts {
            if filter
                .as_ref()
                .is_some_and(|f| !t.to_string().to_lowercase().contains(f.as_str()))
                && t != Transport::Stream
            {
                continue;
            }
            if matches!(t, Transport::Iceoryx2(..)) && !plan.iceoryx2_sizes.contains(&size) {
                continue;
            }
            match t.skip_reason(size)? {
                None => todo.push((size, t)),
                // The pipe, the batches (64 B only) and streamed reading
                // (fragmented messages only): not worth a line per size.
                Some(_)
                    if matches!(
                        t,
                        Transport::Pipe | Transport::Shm(_, Api::Batch | Api::Streamed)
                    ) => {}
                Some(reason) => skipped.push(Skipped {
                    size,
                    transport: t,
                    reason,
                    hung: false,
                }),
            }
        }
    }
    let mut progress = Progress::new(1 + plan.sizes.len() * (1 + ROUNDS as usize));
    let b = &plan.budget;

    progress.step("floor: memcpy; calibrating the cache-line ping-pong");
    let memcpy = floor::memcpy_bandwidth(MEMCPY_LEN, b.measure);
    let memcpy_hot = floor::memcpy_bandwidth(MEMCPY_HOT_LEN, b.measure);
    let fplan = plan_floor(plan.cores, b, &opts)?;

    let mut rows = Vec::new();
    let mut floors = FloorSamples::default();
    for &size in &plan.sizes {
        let ts: Vec<Transport> = todo
            .iter()
            .filter(|(s, _)| *s == size)
            .map(|&(_, t)| t)
            .collect();
        let (r, s) = measure_size(size, &ts, plan, fplan, &opts, &mut floors, &mut progress)?;
        rows.extend(r);
        skipped.extend(s);
    }
    let cacheline = RttStats::from_samples(&mut floors.tight).ok_or("no floor samples")?;
    let cacheline_pause = RttStats::from_samples(&mut floors.pause).ok_or("no floor samples")?;
    progress.finish();
    Ok(Results {
        rows,
        skipped,
        floors: Floors {
            cacheline,
            cacheline_pause,
            memcpy,
            memcpy_hot,
            by_size: floors.by_size,
        },
        elapsed: started.elapsed(),
    })
}
