//! The fan-out scenario: one publisher, N subscriber processes (1, 4, 8),
//! 64 B and 1 MiB messages, shmsock publish/subscribe (`Block`; subscribers
//! copying each message out, or reading it in place) against a Unix stream
//! baseline (the publisher writes each message to every subscriber's
//! socket). Nothing is pinned.
//!
//! Each row has two phases:
//! - **latency** (first, so that no subscriber has a backlog): the
//!   publisher publishes one message per interval (100 µs at 64 B, 2 ms at
//!   1 MiB), stamping `CLOCK_MONOTONIC` just before publishing; each
//!   subscriber records `now - stamp` when its receive returns
//!   (subscribers sleep between messages: the "sleeping" mode). Reported:
//!   p50 and p99 over all subscribers' samples, and the worst subscriber's
//!   p99.
//! - **throughput**: the publisher publishes back to back (zero-copy loan,
//!   the whole payload written) for a fixed time; reported as messages and
//!   bytes per second published (every subscriber receives all of them).
//!
//! Message layout: `[stamp: u64][phase: u64][payload…]`; phase 0 =
//! throughput, 1 = latency. Subscribers check each message's length and
//! phase.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shmsock_services::pubsub::{
    Error as PsError, Publisher, PublisherOptions, Subscriber, SubscriberOptions,
};

use super::child::{fork_with, Child, Result};
use super::run::{Progress, RttStats};
use super::session::read_u64;
use super::watchdog::Watchdog;

/// Subscriber counts measured.
pub const SUBSCRIBERS: [usize; 3] = [1, 4, 8];
/// Message sizes measured.
pub const SIZES: [usize; 2] = [64, 1 << 20];
/// Transports compared, the baseline first.
pub const TRANSPORTS: [FanTransport; 3] = [
    FanTransport::Stream,
    FanTransport::PubSub,
    FanTransport::PubSubInPlace,
];
/// Longest the setup or one phase of a row may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Header of every message: stamp and phase.
const HEAD: usize = 16;

/// The two transports of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanTransport {
    /// The baseline: one Unix stream per subscriber, the publisher writes
    /// every message to each.
    Stream,
    /// shmsock publish/subscribe, `Policy::Block`, subscribers copying
    /// each message out (`recv`).
    PubSub,
    /// The same, subscribers reading in place (`read_timeout`): each
    /// checks its message's length and copies out its 16-byte head only.
    PubSubInPlace,
}

impl FanTransport {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            FanTransport::Stream => "unix stream",
            FanTransport::PubSub => "shmsock pubsub",
            FanTransport::PubSubInPlace => "pubsub in place",
        }
    }
    /// Id in the JSON rows.
    pub fn id(self) -> &'static str {
        match self {
            FanTransport::Stream => "stream",
            FanTransport::PubSub => "pubsub-block",
            FanTransport::PubSubInPlace => "pubsub-block-in-place",
        }
    }
}

/// One measured (size, subscribers, transport).
#[derive(Debug, Clone)]
pub struct FanoutRow {
    /// Message size in bytes.
    pub size: usize,
    /// Subscriber processes.
    pub subscribers: usize,
    /// Transport.
    pub transport: FanTransport,
    /// Messages published per second (throughput phase).
    pub msgs_per_s: f64,
    /// Payload bytes published per second (each delivered to every
    /// subscriber).
    pub bytes_per_s: f64,
    /// One-way latency over all subscribers (latency phase).
    pub lat: RttStats,
    /// The worst subscriber's p99.
    pub worst_p99: u64,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    throughput: Duration,
    latency: Duration,
}

impl Timing {
    fn new(quick: bool) -> Timing {
        if quick {
            Timing {
                throughput: Duration::from_millis(150),
                latency: Duration::from_millis(150),
            }
        } else {
            Timing {
                throughput: Duration::from_millis(500),
                latency: Duration::from_millis(500),
            }
        }
    }
}

fn interval(size: usize) -> Duration {
    if size <= 4096 {
        Duration::from_micros(100)
    } else {
        Duration::from_millis(2)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process.
fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// What a subscriber records for one message; `Err` if it is malformed.
fn on_message(msg: &[u8], size: usize, samples: &mut Vec<u64>) -> Result<()> {
    if msg.len() != size {
        return Err(format!("message of {} bytes, expected {size}", msg.len()).into());
    }
    let now = mono_ns();
    match word(msg, 8) {
        0 => {}
        1 => samples.push(now.saturating_sub(word(msg, 0))),
        p => return Err(format!("bad phase {p}").into()),
    }
    Ok(())
}

fn send_samples(ctl: &mut UnixStream, samples: &[u64]) -> Result<()> {
    let mut out = Vec::with_capacity(8 * (samples.len() + 1));
    out.extend_from_slice(&(samples.len() as u64).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    ctl.write_all(&out)?;
    Ok(())
}

/// A pubsub subscriber: subscribes (retrying until the path exists),
/// receives until the publisher closes (copying each message out, or
/// reading it in place), sends its samples on `ctl`.
fn pubsub_subscriber(
    path: PathBuf,
    size: usize,
    in_place: bool,
    mut ctl: UnixStream,
) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    let mut sub = loop {
        match Subscriber::subscribe(&path, SubscriberOptions::new()) {
            Ok(s) => break s,
            Err(PsError::Io { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => return Err(format!("subscribe: {e}").into()),
        }
    };
    let mut buf = Vec::with_capacity(size);
    let mut samples = Vec::with_capacity(1 << 16);
    loop {
        if in_place {
            match sub.read_timeout(TIMEOUT) {
                Ok(sample) => {
                    if sample.len() != size {
                        return Err(format!("message of {} bytes", sample.len()).into());
                    }
                    let mut head = [0u8; HEAD];
                    sample.copy_to(&mut head)?;
                    let now = mono_ns();
                    match word(&head, 8) {
                        0 => {}
                        1 => samples.push(now.saturating_sub(word(&head, 0))),
                        p => return Err(format!("bad phase {p}").into()),
                    }
                }
                Err(PsError::Closed) => break,
                Err(e) => return Err(format!("read: {e}").into()),
            }
            continue;
        }
        match sub.recv_timeout(&mut buf, TIMEOUT) {
            Ok(_) => on_message(&buf, size, &mut samples)?,
            Err(PsError::Closed) => break,
            Err(e) => return Err(format!("recv: {e}").into()),
        }
    }
    send_samples(&mut ctl, &samples)
}

/// A stream subscriber: reads framed messages until end of stream.
fn stream_subscriber(mut s: UnixStream, size: usize, mut ctl: UnixStream) -> Result<()> {
    let mut buf = vec![0u8; size];
    let mut samples = Vec::with_capacity(1 << 16);
    loop {
        let mut len = [0u8; 8];
        match s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("read: {e}").into()),
        }
        if u64::from_le_bytes(len) != size as u64 {
            return Err("stream framing: bad length".into());
        }
        s.read_exact(&mut buf)?;
        on_message(&buf, size, &mut samples)?;
    }
    send_samples(&mut ctl, &samples)
}

/// The publisher's end of the row.
enum Pub {
    PubSub(Box<Publisher>),
    Stream(Vec<UnixStream>),
}

impl Pub {
    /// Publishes one message of `size` bytes: head, then the payload
    /// written in full.
    fn publish(&mut self, size: usize, phase: u64, fill: u8, scratch: &mut [u8]) -> Result<()> {
        match self {
            Pub::PubSub(p) => {
                let mut loan = p.loan_timeout(size, TIMEOUT)?;
                loan[HEAD..].fill(fill);
                loan[8..HEAD].copy_from_slice(&phase.to_le_bytes());
                loan[..8].copy_from_slice(&mono_ns().to_le_bytes());
                loan.publish();
            }
            Pub::Stream(socks) => {
                scratch[8 + HEAD..].fill(fill);
                scratch[..8].copy_from_slice(&(size as u64).to_le_bytes());
                scratch[16..24].copy_from_slice(&phase.to_le_bytes());
                scratch[8..16].copy_from_slice(&mono_ns().to_le_bytes());
                for s in socks {
                    s.write_all(scratch)?;
                }
            }
        }
        Ok(())
    }
}

fn temp_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "shmsock-bench-fanout-{}-{}",
        std::process::id(),
        mono_ns()
    ))
}

fn capacity(size: usize) -> u64 {
    // At least 4 messages in flight (a record is at most half the ring),
    // and 1 MiB for small ones.
    ((size as u64 + 16) * 4).next_power_of_two().max(1 << 20)
}

fn run_row(transport: FanTransport, size: usize, n: usize, timing: Timing) -> Result<FanoutRow> {
    let _watchdog = Watchdog::arm(TIMEOUT * 3)?;
    let path = temp_path();
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut parent: (Vec<UnixStream>, Vec<UnixStream>) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (ctl, child_ctl) = UnixStream::pair()?;
        let (child, mut p) = match transport {
            FanTransport::PubSub | FanTransport::PubSubInPlace => {
                let path = path.clone();
                let in_place = transport == FanTransport::PubSubInPlace;
                fork_with(parent, child_ctl, None, move |ctl| {
                    pubsub_subscriber(path, size, in_place, ctl)
                })?
            }
            FanTransport::Stream => {
                let (a, b) = UnixStream::pair()?;
                // Into the parent's side before the fork, so that the child
                // drops the publisher's end (else it never sees the end of
                // its stream).
                parent.1.push(a);
                fork_with(parent, (b, child_ctl), None, move |(b, ctl)| {
                    stream_subscriber(b, size, ctl)
                })?
            }
        };
        p.0.push(ctl);
        parent = p;
        children.push(child);
    }
    let (mut ctls, socks) = parent;
    for c in &ctls {
        c.set_read_timeout(Some(TIMEOUT))?;
    }
    let mut publ = match transport {
        FanTransport::PubSub | FanTransport::PubSubInPlace => {
            let mut p = Publisher::create(
                &path,
                PublisherOptions::new()
                    .capacity(capacity(size))
                    .max_lag(TIMEOUT),
            )?;
            p.wait_for_subscribers(n, TIMEOUT)?;
            Pub::PubSub(Box::new(p))
        }
        FanTransport::Stream => Pub::Stream(socks),
    };
    let mut scratch = vec![0u8; 8 + size];
    // Latency first, while nobody has a backlog: one message per interval.
    let every = interval(size);
    let end = Instant::now() + timing.latency;
    let mut next = Instant::now();
    while next < end {
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        publ.publish(size, 1, 2, &mut scratch)?;
        next += every;
    }
    // Throughput: back to back; a short warm-up, then the window.
    let warm = Instant::now() + timing.throughput / 5;
    while Instant::now() < warm {
        publ.publish(size, 0, 1, &mut scratch)?;
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < timing.throughput {
        publ.publish(size, 0, sent as u8, &mut scratch)?;
        sent += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    match publ {
        Pub::PubSub(p) => p.close(),
        Pub::Stream(socks) => drop(socks),
    }
    let _ = std::fs::remove_file(&path);
    let mut all = Vec::new();
    let mut worst_p99 = 0;
    for c in &mut ctls {
        let k = read_u64(c).map_err(|e| format!("control channel: {e}"))?;
        let mut b = vec![0u8; 8 * k as usize];
        c.read_exact(&mut b)?;
        let mut mine: Vec<u64> = b.chunks_exact(8).map(|w| word(w, 0)).collect();
        all.extend_from_slice(&mine);
        if let Some(s) = RttStats::from_samples(&mut mine) {
            worst_p99 = worst_p99.max(s.p99);
        }
    }
    for c in children {
        c.wait(TIMEOUT)?;
    }
    let lat = RttStats::from_samples(&mut all).ok_or("no latency samples")?;
    Ok(FanoutRow {
        size,
        subscribers: n,
        transport,
        msgs_per_s: sent as f64 / secs,
        bytes_per_s: sent as f64 * size as f64 / secs,
        lat,
        worst_p99,
    })
}

/// Runs the scenario: every size, subscriber count and transport.
///
/// # Errors
/// The first failure (setup, a malformed message, a subscriber's exit).
pub fn run(quick: bool, progress: &mut Progress) -> Result<Vec<FanoutRow>> {
    let timing = Timing::new(quick);
    let mut rows = Vec::new();
    for &size in &SIZES {
        for &n in &SUBSCRIBERS {
            for t in TRANSPORTS {
                progress.step(&format!("fan-out {size} B: {n} subscribers, {}", t.name()));
                rows.push(run_row(t, size, n, timing).map_err(|e| {
                    format!("fan-out {size} B, {n} subscribers, {}: {e}", t.name())
                })?);
            }
        }
    }
    Ok(rows)
}

/// Steps [`run`] reports to the progress display.
pub fn steps() -> usize {
    SIZES.len() * SUBSCRIBERS.len() * TRANSPORTS.len()
}
