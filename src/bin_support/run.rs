//! The `bench` subcommand's plan: which rows, how long each runs, and the
//! statistics kept of each.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::child::Result;
use super::floor::{self, SpinStyle};
use super::session::{Options, Session, Transport};

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
}

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
}

/// The machine's floor.
#[derive(Debug, Clone, Copy)]
pub struct Floors {
    /// Cache-line round trip, tight spinning.
    pub cacheline: RttStats,
    /// Cache-line round trip, spinning with `PAUSE`.
    pub cacheline_pause: RttStats,
    /// Single-thread memcpy bandwidth over [`MEMCPY_LEN`] bytes, bytes/s.
    pub memcpy: f64,
    /// The same over [`MEMCPY_HOT_LEN`] bytes (source and destination stay
    /// in the caches, as a ring does), bytes/s.
    pub memcpy_hot: f64,
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
    fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    fn step(&mut self, what: &str) {
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

    fn finish(&self) {
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
        if size >= unit && size % unit == 0 {
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

/// Measures one (size, transport): both scenarios over one session.
fn measure_row(transport: Transport, size: usize, budget: &Budget, opts: &Options) -> Result<Row> {
    let mut s = Session::start(transport, size, opts)?;
    let per = calibrate(budget.warm, |n| s.round_trips(n, None))?;
    let n = iterations(budget, per, budget.max_rtt_samples);
    let mut samples = Vec::with_capacity(n as usize);
    s.round_trips(n, Some(&mut samples))?;
    let rtt = RttStats::from_samples(&mut samples).ok_or("no round trips measured")?;
    drop(samples);

    let per = calibrate(budget.warm, |n| s.stream(n))?;
    let n = iterations(budget, per, u64::MAX);
    let t = s.stream(n)?.as_secs_f64();
    s.finish()?;
    Ok(Row {
        size,
        transport,
        rtt,
        thr: Throughput {
            messages: n,
            bytes_per_s: (n as f64 * size as f64) / t,
            msgs_per_s: n as f64 / t,
        },
    })
}

/// Measures one cache-line floor.
fn measure_floor(
    cores: Option<(usize, usize)>,
    style: SpinStyle,
    budget: &Budget,
    opts: &Options,
) -> Result<RttStats> {
    let mut p = floor::PingPong::start(cores, style, opts.timeout)?;
    let per = calibrate(budget.warm, |n| p.round_trips(n, None))?;
    let n = iterations(budget, per, budget.max_rtt_samples);
    let mut samples = Vec::with_capacity(n as usize);
    p.round_trips(n, Some(&mut samples))?;
    p.finish()?;
    RttStats::from_samples(&mut samples).ok_or_else(|| "no floor samples".into())
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
        ..Options::default()
    };
    let filter = plan.filter.as_ref().map(|f| f.to_lowercase());
    let mut todo = Vec::new();
    let mut skipped = Vec::new();
    for &size in &plan.sizes {
        for t in Transport::all() {
            if filter
                .as_ref()
                .is_some_and(|f| !t.to_string().to_lowercase().contains(f.as_str()))
                && t != Transport::Stream
            {
                continue;
            }
            match t.skip_reason(size)? {
                None => todo.push((size, t)),
                // The pipe is a 64 B reference only: not worth a line per size.
                Some(_) if t == Transport::Pipe => {}
                Some(reason) => skipped.push(Skipped {
                    size,
                    transport: t,
                    reason,
                }),
            }
        }
    }
    let mut progress = Progress::new(todo.len() + 3);
    let b = &plan.budget;

    progress.step("floor: cache-line round trip (tight spin)");
    let cacheline = measure_floor(plan.cores, SpinStyle::Tight, b, &opts)?;
    progress.step("floor: cache-line round trip (PAUSE spin)");
    let cacheline_pause = measure_floor(plan.cores, SpinStyle::Pause, b, &opts)?;
    progress.step("floor: memcpy");
    let memcpy = floor::memcpy_bandwidth(MEMCPY_LEN, b.measure);
    let memcpy_hot = floor::memcpy_bandwidth(MEMCPY_HOT_LEN, b.measure);

    let mut rows = Vec::new();
    for (size, t) in todo {
        progress.step(&format!("{} {t}", size_name(size)));
        let row =
            measure_row(t, size, b, &opts).map_err(|e| format!("{} {t}: {e}", size_name(size)))?;
        rows.push(row);
    }
    progress.finish();
    Ok(Results {
        rows,
        skipped,
        floors: Floors {
            cacheline,
            cacheline_pause,
            memcpy,
            memcpy_hot,
        },
        elapsed: started.elapsed(),
    })
}
