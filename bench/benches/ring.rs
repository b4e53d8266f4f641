//! Throughput of the shm crate's SPSC ring: a producer thread and a consumer
//! thread in one process, pinned to different cores, streaming records of
//! 64 B, 4 KiB and 64 KiB through one heap ring. The consumer copies every
//! record out with `ReadGuard::copy_to`. Single-thread `memcpy` of the same
//! sizes is measured in the same run as the reference.
//!
//! Groups:
//! - `ring_bytes`: `Throughput::Bytes` (payload bytes), ring modes and memcpy;
//! - `ring_records`: `Throughput::Elements` (records), ring modes only.
//!
//! Modes: `push` (`Producer::try_push`) and `zero_copy` (`try_reserve`, then
//! `fill_from` into the reserved slot, then `commit`). `try_push` is built
//! from those same three calls, so the two modes should agree; a gap between
//! them is noise or inlining. The memcpy reference copies between two
//! preallocated, cache-hot buffers on one core.
//!
//! Run: `cargo bench --bench ring`; smoke test: `cargo bench --bench ring -- --test`.
// A benchmark has no caller to hand an error to: a ring error must abort it
// loudly, so `expect` is the right tool here.
#![allow(clippy::expect_used)]

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use shmsock::shm::ring::heap_ring;
use shmsock::shm::{Consumer, Error, Producer};

/// Record sizes benchmarked.
const SIZES: [usize; 3] = [64, 4 << 10, 64 << 10];

/// Ring capacities per record size: 1 MiB for every size, and 8 MiB (128
/// records in flight) for 64 KiB records as well, because the capacity
/// decides whether the data area stays in the cores' private caches.
fn capacities_for(size: usize) -> &'static [u64] {
    if size >= 64 << 10 {
        &[1 << 20, 8 << 20]
    } else {
        &[1 << 20]
    }
}

/// Benchmark parameter: `<size>B/ring<capacity>MiB`.
fn case_name(size: usize, capacity: u64) -> String {
    format!("{size}B/ring{}MiB", capacity >> 20)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// `Producer::try_push`.
    Push,
    /// `try_reserve` + `fill_from` in place + `commit`.
    ZeroCopy,
    /// Zero copy with batched publication and release: the producer makes
    /// 32 records visible with one cursor store (`commit_deferred` +
    /// `publish`), the consumer hands 32 back with one (`release_deferred`
    /// + `flush_releases`); both flush early whenever they would wait.
    Batched,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::ZeroCopy => "zero_copy",
            Mode::Batched => "batched32",
        }
    }
}

/// Pins the calling thread to `core` if the machine has at least two cores.
/// Failure (e.g. a restricted cpuset) is ignored: the numbers are then just
/// less stable.
fn pin_to(core: usize) {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return;
    }
    let mut set = nix::sched::CpuSet::new();
    if set.set(core % cores).is_ok() {
        // pid 0: the calling thread.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Waits until both threads of a sample have arrived, spinning: a sleeping
/// barrier would start the clock before the consumer is awake.
fn spin_barrier(arrived: &AtomicUsize) {
    // Relaxed/Acquire suffice: the barrier only aligns start times, it
    // publishes no data (the ring's own cursors do that).
    arrived.fetch_add(1, Ordering::Relaxed);
    while arrived.load(Ordering::Acquire) < 2 {
        spin_loop();
    }
}

/// One sample's order: stream `iters` records, meeting at `start` first.
struct Job {
    iters: u64,
    start: Arc<AtomicUsize>,
}

/// A producer thread and a consumer thread over one ring, kept alive across
/// the samples of one benchmark.
struct Pair {
    to_producer: Option<mpsc::Sender<Job>>,
    to_consumer: Option<mpsc::Sender<Job>>,
    elapsed: mpsc::Receiver<Duration>,
    threads: Vec<JoinHandle<()>>,
}

impl Pair {
    fn new(size: usize, capacity: u64, mode: Mode) -> Pair {
        let (p, c) = heap_ring(capacity).expect("heap ring");
        let (ptx, prx) = mpsc::channel();
        let (ctx, crx) = mpsc::channel();
        let (etx, erx) = mpsc::channel();
        let producer = thread::spawn(move || producer_loop(p, size, mode, &prx));
        let consumer = thread::spawn(move || consumer_loop(c, size, mode, &crx, &etx));
        Pair {
            to_producer: Some(ptx),
            to_consumer: Some(ctx),
            elapsed: erx,
            threads: vec![producer, consumer],
        }
    }

    /// Streams `iters` records from the producer to the consumer; returns the
    /// consumer's time from the common start to the last record copied out.
    fn run(&self, iters: u64) -> Duration {
        let start = Arc::new(AtomicUsize::new(0));
        for tx in [&self.to_producer, &self.to_consumer].into_iter().flatten() {
            tx.send(Job {
                iters,
                start: start.clone(),
            })
            .expect("worker thread alive");
        }
        self.elapsed.recv().expect("consumer thread alive")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Closing the channels makes the producer close the ring; the
        // consumer drains and sees `Error::Closed`.
        self.to_producer = None;
        self.to_consumer = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() && !thread::panicking() {
                panic!("benchmark worker thread panicked");
            }
        }
    }
}

/// Records per cursor store in [`Mode::Batched`].
const BATCH: u32 = 32;

fn producer_loop(mut p: Producer, size: usize, mode: Mode, jobs: &mpsc::Receiver<Job>) {
    pin_to(0);
    let mut staged = 0u32;
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    while let Ok(job) = jobs.recv() {
        spin_barrier(&job.start);
        for _ in 0..job.iters {
            match mode {
                Mode::Push => {
                    while !p.try_push(black_box(&src)).expect("try_push") {
                        spin_loop();
                    }
                }
                Mode::ZeroCopy => loop {
                    if let Some(mut grant) = p.try_reserve(size).expect("try_reserve") {
                        grant.fill_from(black_box(&src));
                        grant.commit();
                        break;
                    }
                    spin_loop();
                },
                Mode::Batched => {
                    loop {
                        if let Some(mut grant) = p.try_reserve(size).expect("try_reserve") {
                            grant.fill_from(black_box(&src));
                            grant.commit_deferred();
                            break;
                        }
                        // Full: publish what is staged before waiting.
                        p.publish();
                        spin_loop();
                    }
                    staged += 1;
                    if staged == BATCH {
                        p.publish();
                        staged = 0;
                    }
                }
            }
        }
        p.publish();
        staged = 0;
    }
    p.close();
}

fn consumer_loop(
    mut c: Consumer,
    size: usize,
    mode: Mode,
    jobs: &mpsc::Receiver<Job>,
    elapsed: &mpsc::Sender<Duration>,
) {
    pin_to(1);
    let mut dst = vec![0u8; size];
    while let Ok(job) = jobs.recv() {
        spin_barrier(&job.start);
        let t0 = Instant::now();
        let mut left = job.iters;
        let mut deferred = 0u32;
        while left > 0 {
            let got = match c.try_read().expect("try_read") {
                Some(rec) => {
                    let n = rec.copy_to(&mut dst);
                    assert_eq!(n, size, "record of unexpected length");
                    black_box(&mut dst);
                    left -= 1;
                    if mode == Mode::Batched {
                        rec.release_deferred();
                        deferred += 1;
                    }
                    true
                }
                None => false,
            };
            // Hand space back every BATCH records, and before waiting.
            if deferred == BATCH || (!got && deferred > 0) {
                c.flush_releases();
                deferred = 0;
            }
            if !got {
                spin_loop();
            }
        }
        c.flush_releases();
        let dt = t0.elapsed();
        elapsed.send(dt).expect("bench thread alive");
    }
    // Drain until the producer's close is seen (nothing is left in flight:
    // every sample consumed exactly what was produced).
    loop {
        match c.try_read() {
            Err(Error::Closed) => break,
            Ok(Some(_)) => panic!("record left over after the last sample"),
            Ok(None) => thread::yield_now(),
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn ring_bytes(c: &mut Criterion) {
    let mut g = configure(c, "ring_bytes");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        for &capacity in capacities_for(size) {
            for mode in [Mode::Push, Mode::ZeroCopy, Mode::Batched] {
                let pair = Pair::new(size, capacity, mode);
                let id = BenchmarkId::new(mode.name(), case_name(size, capacity));
                g.bench_function(id, |b| b.iter_custom(|iters| pair.run(iters)));
            }
        }
        let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut dst = vec![0u8; size];
        g.bench_function(BenchmarkId::new("memcpy", format!("{size}B")), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            });
        });
    }
    g.finish();
}

fn ring_records(c: &mut Criterion) {
    let mut g = configure(c, "ring_records");
    for size in SIZES {
        g.throughput(Throughput::Elements(1));
        for &capacity in capacities_for(size) {
            for mode in [Mode::Push, Mode::ZeroCopy, Mode::Batched] {
                let pair = Pair::new(size, capacity, mode);
                let id = BenchmarkId::new(mode.name(), case_name(size, capacity));
                g.bench_function(id, |b| b.iter_custom(|iters| pair.run(iters)));
            }
        }
    }
    g.finish();
}

/// Kept in a private module: `criterion_group!` expands to an undocumented
/// `pub fn`, which `missing_docs` would flag at the crate root.
mod group {
    use criterion::Criterion;

    /// 10k bootstrap resamples instead of 100k: the confidence intervals
    /// are just as readable and the 19 analyses finish ~10 s sooner.
    fn config() -> Criterion {
        Criterion::default().nresamples(10_000)
    }

    criterion::criterion_group! {
        name = benches;
        config = config();
        targets = super::ring_bytes, super::ring_records
    }
}
criterion_main!(group::benches);
