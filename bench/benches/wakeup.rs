//! What a wake-up costs: round trips between two processes (pinned to two
//! cores when the machine has two) in which both sides block, so every
//! round trip is two wake-ups of a sleeping peer.
//!
//! - `raw/futex`: two futex words in a shared memfd; bump, `FUTEX_WAKE`;
//!   the peer `FUTEX_WAIT`s (what shmsock's futex wake-up does).
//! - `raw/futex-timed`, `raw/futex-waitv`: the same with a 200 ms timeout
//!   per sleep, and with `futex_waitv` on the word plus a private word and
//!   an absolute timeout (what shmsock's futex sleep does).
//! - `raw/eventfd`: two eventfds, `write`/blocking `read`.
//! - `raw/seqpacket`: a `SOCK_SEQPACKET` pair, 1-byte datagrams (what
//!   shmsock's socket wake-up costs, without the ring).
//! - `shmsock/<wake>-<fences>`: a 64 B round trip through shmsock, both
//!   sides parking at once (`Adaptive` with no spin: `Block` itself never
//!   uses membarrier),
//!   with futex or socket wake-ups, asymmetric (membarrier) or symmetric
//!   fences.
//! - `hot_path/<fences>`: what each message pays for the Dekker fences
//!   (one thread, no parking): SeqCst fences or compiler fences only.
//!
//! Run: `cargo bench -p shmsock-bench --bench wakeup`; smoke test:
//! `cargo bench -p shmsock-bench --bench wakeup -- --test`.
// A benchmark has no caller to hand an error to: a failed setup must abort
// it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use rustix::thread::futex;
use shmsock::shm::{Segment, SegmentOptions};
use shmsock::{Builder, WaitStrategy};
use shmsock_testkit::fork::fork_with;
use shmsock_testkit::pin;

const STOP: u32 = u32::MAX;

fn cores() -> Option<(usize, usize)> {
    pin::two_cores().expect("sched_getaffinity")
}

/// The futex word at `off` of `seg`.
fn word(seg: &Segment, off: usize) -> &AtomicU32 {
    assert!(off + 4 <= seg.len() && off.is_multiple_of(4));
    // SAFETY: in bounds and 4-aligned (checked above), in a mapping `seg`
    // keeps alive for the returned lifetime; only atomics touch it.
    unsafe { AtomicU32::from_ptr(seg.as_ptr().add(off).cast()) }
}

/// How a raw futex sleeper waits.
#[derive(Clone, Copy, Debug)]
enum Sleep {
    /// `FUTEX_WAIT`, no timeout.
    Plain,
    /// `FUTEX_WAIT` with a 200 ms timeout (a timer armed per sleep).
    Timed,
    /// `futex_waitv` on the word and a second, private word, absolute
    /// 200 ms timeout: what shmsock's futex sleep does.
    Waitv,
}

/// Waits until `w` differs from `seen`; returns the new value.
fn futex_wait_change(w: &AtomicU32, seen: u32, how: Sleep, other: &AtomicU32) -> u32 {
    let slice = futex::Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        // Acquire: pairs with the Release bump of the waker.
        let v = w.load(Ordering::Acquire);
        if v != seen {
            return v;
        }
        match how {
            Sleep::Plain => {
                let _ = futex::wait(w, futex::Flags::empty(), seen, None);
            }
            Sleep::Timed => {
                let _ = futex::wait(w, futex::Flags::empty(), seen, Some(&slice));
            }
            Sleep::Waitv => {
                let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
                let abs = futex::Timespec {
                    tv_sec: now.tv_sec + i64::from(now.tv_nsec >= 800_000_000),
                    tv_nsec: (now.tv_nsec + 200_000_000) % 1_000_000_000,
                };
                let mut ws = [futex::Wait::new(), futex::Wait::new()];
                ws[0].val = u64::from(seen);
                ws[0].uaddr = futex::WaitPtr::new(w.as_ptr().cast());
                ws[0].flags = futex::WaitFlags::SIZE_U32;
                ws[1].val = 0;
                ws[1].uaddr = futex::WaitPtr::new(other.as_ptr().cast());
                ws[1].flags = futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE;
                let _ = futex::waitv(
                    &ws,
                    futex::WaitvFlags::empty(),
                    Some(&abs),
                    futex::ClockId::Monotonic,
                );
            }
        }
    }
}

fn futex_bump(w: &AtomicU32) {
    // Release: the peer's Acquire load sees everything before the bump.
    w.fetch_add(1, Ordering::Release);
    let _ = futex::wake(w, futex::Flags::empty(), 1);
}

fn bench_futex(c: &mut Criterion) {
    for how in [Sleep::Plain, Sleep::Timed, Sleep::Waitv] {
        bench_futex_with(c, how);
    }
}

fn bench_futex_with(c: &mut Criterion, how: Sleep) {
    let seg = std::sync::Arc::new(
        Segment::create(c"wakeup-bench", 4096, SegmentOptions::default()).unwrap(),
    );
    let (ping, pong) = (0, 128);
    let core = cores().map(|(_, b)| b);
    let quiet = AtomicU32::new(0);
    // The child keeps its own handle on the (inherited, shared) mapping.
    let (child, seg) = fork_with(seg.clone(), seg, core, move |s| {
        let quiet = AtomicU32::new(0);
        let mut seen = 0;
        loop {
            seen = futex_wait_change(word(&s, ping), seen, how, &quiet);
            if seen == STOP {
                return Ok(());
            }
            futex_bump(word(&s, pong));
        }
    })
    .unwrap();
    let mut g = c.benchmark_group("raw");
    g.sampling_mode(SamplingMode::Flat);
    let mut seen = 0;
    let name = match how {
        Sleep::Plain => "futex",
        Sleep::Timed => "futex-timed",
        Sleep::Waitv => "futex-waitv",
    };
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                futex_bump(word(&seg, ping));
                seen = futex_wait_change(word(&seg, pong), seen, how, &quiet);
            }
            t.elapsed()
        })
    });
    g.finish();
    word(&seg, ping).store(STOP, Ordering::Release);
    let _ = futex::wake(word(&seg, ping), futex::Flags::empty(), 1);
    child.wait(Duration::from_secs(10)).unwrap();
}

fn bench_eventfd(c: &mut Criterion) {
    let ev = || rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let (a, b) = (ev(), ev());
    let core = cores().map(|(_, b)| b);
    let (child, (a, b)) = fork_with(
        (a.try_clone().unwrap(), b.try_clone().unwrap()),
        (a, b),
        core,
        |(a, b): (OwnedFd, OwnedFd)| {
            let mut buf = [0u8; 8];
            loop {
                rustix::io::read(&a, &mut buf).unwrap();
                if u64::from_ne_bytes(buf) >= 1 << 32 {
                    return Ok(());
                }
                rustix::io::write(&b, &1u64.to_ne_bytes()).unwrap();
            }
        },
    )
    .unwrap();
    let mut g = c.benchmark_group("raw");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("eventfd", |bch| {
        bch.iter_custom(|iters| {
            let mut buf = [0u8; 8];
            let t = Instant::now();
            for _ in 0..iters {
                rustix::io::write(&a, &1u64.to_ne_bytes()).unwrap();
                rustix::io::read(&b, &mut buf).unwrap();
            }
            t.elapsed()
        })
    });
    g.finish();
    rustix::io::write(&a, &(1u64 << 32).to_ne_bytes()).unwrap();
    child.wait(Duration::from_secs(10)).unwrap();
}

fn bench_seqpacket(c: &mut Criterion) {
    use rustix::net::{socketpair, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    let (x, y) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let core = cores().map(|(_, b)| b);
    let (child, x) = fork_with(x, y, core, |y| {
        let mut b = [0u8; 1];
        loop {
            let (n, _) = rustix::net::recv(&y, &mut b, RecvFlags::empty()).unwrap();
            if n == 0 || b[0] == 0xff {
                return Ok(());
            }
            rustix::net::send(&y, &b, SendFlags::NOSIGNAL).unwrap();
        }
    })
    .unwrap();
    let mut g = c.benchmark_group("raw");
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("seqpacket", |bch| {
        bch.iter_custom(|iters| {
            let mut b = [1u8; 1];
            let t = Instant::now();
            for _ in 0..iters {
                rustix::net::send(&x, &b, SendFlags::NOSIGNAL).unwrap();
                rustix::net::recv(&x, &mut b, RecvFlags::empty()).unwrap();
            }
            t.elapsed()
        })
    });
    g.finish();
    rustix::net::send(&x, &[0xff], SendFlags::NOSIGNAL).unwrap();
    child.wait(Duration::from_secs(10)).unwrap();
}

fn bench_shmsock(c: &mut Criterion) {
    let mut g = c.benchmark_group("shmsock");
    g.sampling_mode(SamplingMode::Flat);
    for (futex, asym) in [(true, true), (true, false), (false, true), (false, false)] {
        let opts = Builder::new()
            // Parks at once, like Block, which never uses membarrier: this
            // measures what a membarrier per park would cost it.
            .wait(WaitStrategy::Adaptive {
                spin: Duration::ZERO,
            })
            .futex_wakeups(futex)
            .asymmetric_fences(asym)
            .ring_capacity(1 << 16);
        let path = format!(
            "@shmsock-wakeup-bench-{}-{futex}-{asym}",
            std::process::id()
        );
        let l = opts.bind(&path).unwrap();
        let core = cores().map(|(_, b)| b);
        let copts = opts.clone();
        let cpath = path.clone();
        let (child, l) = fork_with(l, (), core, move |()| {
            let mut conn = copts.connect(&cpath)?;
            let mut buf = [0u8; 64];
            loop {
                let n = match conn.recv() {
                    Ok(m) => m.copy_to(&mut buf),
                    Err(shmsock::Error::Disconnected) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                conn.send(&buf[..n])?;
            }
        })
        .unwrap();
        let mut conn = l.accept().unwrap();
        let name = format!(
            "{}-{}",
            if futex { "futex" } else { "socket" },
            if conn.asymmetric_fences() {
                "membarrier"
            } else {
                "fences"
            }
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let msg = [7u8; 64];
                let mut back = [0u8; 64];
                let t = Instant::now();
                for _ in 0..iters {
                    conn.send(&msg).unwrap();
                    let m = conn.recv().unwrap();
                    assert_eq!(m.copy_to(&mut back), 64);
                }
                t.elapsed()
            })
        });
        drop(conn);
        child.wait(Duration::from_secs(10)).unwrap();
    }
    g.finish();
}

/// The hot path's fence: one 8-byte record pushed, read and released in
/// one thread (two `park-dekker` fences per record: publish and release),
/// with symmetric fences (two SeqCst fences) and asymmetric ones (compiler
/// fences only). No parking: what every message pays.
fn bench_fences(c: &mut Criterion) {
    use shmsock::shm::ring::{heap_ring, Fences};
    let mut g = c.benchmark_group("hot_path");
    for fences in [Fences::Symmetric, Fences::Asymmetric] {
        let (mut p, mut r) = heap_ring(1 << 16).unwrap();
        p.set_fences(fences);
        r.set_fences(fences);
        g.bench_function(format!("{fences:?}"), |b| {
            b.iter(|| {
                let w = p.try_push(&[1u8; 8]).unwrap().unwrap();
                w.redeem(|| Ok::<(), ()>(())).unwrap();
                let guard = r.try_read().unwrap().unwrap();
                std::hint::black_box(guard.len());
                guard.release().redeem(|| Ok::<(), ()>(())).unwrap();
            })
        });
    }
    g.finish();
}

fn main() {
    if let Some((a, _)) = cores() {
        pin::pin_to(a).expect("pin the parent");
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    bench_fences(&mut c);
    bench_futex(&mut c);
    bench_eventfd(&mut c);
    bench_seqpacket(&mut c);
    bench_shmsock(&mut c);
    c.final_summary();
}
