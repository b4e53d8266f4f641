//! Cross-process transport benchmarks: shmsock (Spin, Adaptive, Block;
//! copying `send`, zero-copy `reserve`/`commit`, and at 64 B
//! `send_batch`/`recv_batch` in batches of 32) against a Unix
//! `SOCK_STREAM` socket, a `SOCK_SEQPACKET` socket and a pipe (64 B), with
//! this machine's floor (cache-line round trip, `memcpy`) in the same run.
//!
//! The peer of every measurement is a forked process, pinned to another
//! core than this one when the machine has two; both sides write and
//! checksum every payload byte (see `bench/src/pattern.rs`). The code
//! is shared with `shmsock bench` (`cargo run --release -- bench`), which
//! prints percentiles and ratios in one table.
//!
//! Groups: `floor`; `rtt/<size>` (one message each way, time per round
//! trip); `throughput/<size>` (one way, `Throughput::Bytes`, the clock
//! stops when the peer has verified the last message).
//!
//! Run: `cargo bench --bench transport` (a few minutes);
//! smoke test: `cargo bench --bench transport -- --test`.
// A benchmark has no caller to hand an error to: a failed setup or a failed
// verification must abort it loudly, so `expect` is the right tool here.
#![allow(clippy::expect_used)]

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};

use shmsock_bench::{floor, pin, session};

use floor::{PingPong, SpinStyle};
use session::{Options, Session, Transport};

/// Message sizes benchmarked.
const SIZES: [usize; 6] = [64, 1 << 10, 16 << 10, 64 << 10, 1 << 20, 16 << 20];

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    RoundTrip,
    OneWay,
}

/// One transport at one size: the peer is forked the first time criterion
/// runs the routine (not at all if the benchmark is filtered out) and kept
/// for all samples, then told to exit and checked.
fn bench_one(
    group: &mut BenchmarkGroup<'_, WallTime>,
    t: Transport,
    size: usize,
    scenario: Scenario,
    opts: &Options,
) {
    let mut session: Option<Session> = None;
    group.bench_function(BenchmarkId::from_parameter(t.id()), |b| {
        let s = session.get_or_insert_with(|| {
            Session::start(t, size, opts).expect("start the peer and connect")
        });
        b.iter_custom(|iters| {
            match scenario {
                Scenario::RoundTrip => s.round_trips(iters, None),
                Scenario::OneWay => s.stream(iters),
            }
            .expect("transfer and verify")
        });
    });
    if let Some(s) = session {
        s.finish().expect("peer exits cleanly");
    }
}

fn floor_benches(c: &mut Criterion, opts: &Options) {
    let mut g = c.benchmark_group("floor");
    for (name, style) in [
        ("cacheline_rtt", SpinStyle::Tight),
        ("cacheline_rtt_pause", SpinStyle::Pause),
    ] {
        let mut pp: Option<PingPong> = None;
        g.bench_function(name, |b| {
            let p = pp.get_or_insert_with(|| {
                PingPong::start(opts.cores, style, opts.timeout).expect("fork the ping-pong peer")
            });
            b.iter_custom(|iters| p.round_trips(iters, None).expect("ping-pong"));
        });
        if let Some(p) = pp {
            p.finish().expect("ping-pong peer exits cleanly");
        }
    }
    let len = 64 << 20;
    let src = vec![1u8; len];
    let mut dst = vec![0u8; len];
    g.throughput(Throughput::Bytes(len as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("memcpy_64MiB", |b| {
        b.iter(|| dst.copy_from_slice(std::hint::black_box(&src)));
    });
    g.finish();
}

fn transport_benches(c: &mut Criterion, opts: &Options) {
    for (scenario, prefix) in [
        (Scenario::RoundTrip, "rtt"),
        (Scenario::OneWay, "throughput"),
    ] {
        for size in SIZES {
            let mut g = c.benchmark_group(format!("{prefix}/{}", size_label(size)));
            if size >= 1 << 20 {
                // Milliseconds per iteration: equal-sized samples keep the
                // run short.
                g.sampling_mode(SamplingMode::Flat);
            }
            if let Scenario::OneWay = scenario {
                g.throughput(Throughput::Bytes(size as u64));
            }
            for t in Transport::all() {
                if t.skip_reason(size).expect("query socket limits").is_none() {
                    bench_one(&mut g, t, size, scenario, opts);
                }
            }
            g.finish();
        }
    }
}

fn main() {
    let cores = pin::two_cores().expect("sched_getaffinity");
    if let Some((parent, _)) = cores {
        // Before any fork: each peer then moves itself to the other core.
        pin::pin_to(parent).expect("pin the measuring process");
    }
    let opts = Options {
        cores,
        ..Options::default()
    };
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(800))
        .configure_from_args();
    floor_benches(&mut c, &opts);
    transport_benches(&mut c, &opts);
    c.final_summary();
}
