//! The fan-out scenario: one publisher, N subscriber processes (1, 4, 8),
//! 64 B and 1 MiB messages, shmsock publish/subscribe (`Block`; subscribers
//! copying each message out, or reading it in place) against a Unix stream
//! baseline (the publisher writes each message to every subscriber's
//! socket) and iceoryx2 publish-subscribe (busy-polling and event-driven
//! subscribers, [`super::fanout_iox`]). Nothing is pinned.
//!
//! Each row has two phases:
//! - **latency** (first, so that no subscriber has a backlog): the
//!   publisher publishes one message per interval (100 µs at 64 B, 2 ms at
//!   1 MiB), stamping each with the `CLOCK_MONOTONIC` instant it was due
//!   (its place in the schedule); each subscriber records `now - stamp`
//!   when its receive returns (subscribers sleep between messages: the
//!   "sleeping" mode). Reported: p50 and p99 over all subscribers' samples,
//!   and the worst subscriber's p99. The due instant, not the instant the
//!   publisher got to send, so that a transport whose publisher blocks
//!   (the unix stream: a 1 MiB message does not fit the socket buffer)
//!   does not hide a slow subscriber's backlog by stamping its next
//!   messages late, while the ring's publisher, which keeps to the
//!   schedule, is charged for it (coordinated omission). On an idle
//!   machine the two stamps differ by the spin loop's precision; under
//!   `--load` the difference was the whole gap between the stream and
//!   pubsub rows at 1 MiB (`docs/performance.md`).
//! - **throughput**: the publisher publishes back to back (zero-copy loan,
//!   the whole payload written) for a fixed time; reported as messages and
//!   bytes per second published (every subscriber receives all of them).
//!
//! Message layout: `[stamp: u64][phase: u64][body…]`; phase 0 =
//! throughput, 1 = latency, 2 = end (iceoryx2 rows only; the others end
//! with the publisher's close). The body is message `seq` of
//! [`pattern`] (`seq` counts from 0 over both phases): the publisher writes
//! every byte, every subscriber checks every byte and the order (a lost,
//! repeated or torn message fails the row). Copying subscribers check
//! their copy; in-place subscribers check the bytes in the ring.
//!
//! Every row has the same phase lengths (300 ms each, 100 ms with
//! `--quick`), so that the 30 rows take about as long as the 18 of the
//! previous version.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shmsock_services::pubsub::{
    Error as PsError, Publisher, PublisherOptions, Subscriber, SubscriberOptions,
};

use super::child::{fork_with, Child, Result};
use super::fanout_iox::{self, IoxFanPub, IoxFanWait};
use super::iox::Names;
use super::pattern;
use super::run::{Progress, RttStats};
use super::session::read_u64;
use super::watchdog::{is_hung, Hung, Watchdog, GRACE};

/// Subscriber counts measured.
pub const SUBSCRIBERS: [usize; 3] = [1, 4, 8];
/// Message sizes measured.
pub const SIZES: [usize; 2] = [64, 1 << 20];
/// Transports compared, the baseline first.
pub const TRANSPORTS: [FanTransport; 5] = [
    FanTransport::Stream,
    FanTransport::PubSub,
    FanTransport::PubSubInPlace,
    FanTransport::IoxPoll,
    FanTransport::IoxEvent,
];
/// Longest the setup or one phase of a row may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Header of every message: stamp and phase.
pub(crate) const HEAD: usize = 16;
/// Phase of the throughput phase's messages.
const PHASE_THROUGHPUT: u64 = 0;
/// Phase of the latency phase's messages (stamped).
const PHASE_LATENCY: u64 = 1;
/// Phase of the last message of an iceoryx2 row.
pub(crate) const PHASE_END: u64 = 2;

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
    /// checks its message in the ring.
    PubSubInPlace,
    /// iceoryx2 publish-subscribe, subscribers busy-polling (hot),
    /// checking each sample in place.
    IoxPoll,
    /// iceoryx2 publish-subscribe, subscribers sleeping on an event
    /// listener the publisher notifies after each send.
    IoxEvent,
}

impl FanTransport {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            FanTransport::Stream => "unix stream",
            FanTransport::PubSub => "shmsock pubsub",
            FanTransport::PubSubInPlace => "pubsub in place",
            FanTransport::IoxPoll => "iceoryx2 poll",
            FanTransport::IoxEvent => "iceoryx2 event",
        }
    }
    /// Id in the JSON rows.
    pub fn id(self) -> &'static str {
        match self {
            FanTransport::Stream => "stream",
            FanTransport::PubSub => "pubsub-block",
            FanTransport::PubSubInPlace => "pubsub-block-in-place",
            FanTransport::IoxPoll => "iceoryx2-poll",
            FanTransport::IoxEvent => "iceoryx2-event",
        }
    }
    /// Whether this is an iceoryx2 row.
    pub fn is_iceoryx2(self) -> bool {
        matches!(self, FanTransport::IoxPoll | FanTransport::IoxEvent)
    }
}

/// Which rows [`run`] measures.
#[derive(Debug, Clone, Default)]
pub struct FanoutPlan {
    /// Shorter phases.
    pub quick: bool,
    /// Skip the iceoryx2 rows.
    pub no_iceoryx2: bool,
    /// Only transports whose name contains this (case-insensitive); the
    /// unix stream, the baseline, is always kept.
    pub filter: Option<String>,
    /// Only these of [`SIZES`] (`None`: all).
    pub sizes: Option<Vec<usize>>,
    /// A row's watchdog: this beyond the row's planned time (`None`: 3
    /// minutes in all); a row that takes longer is killed and reported as
    /// hung.
    pub timeout: Option<Duration>,
}

impl FanoutPlan {
    /// The sizes this plan measures.
    pub fn sizes(&self) -> Vec<usize> {
        SIZES
            .into_iter()
            .filter(|s| self.sizes.as_ref().is_none_or(|l| l.contains(s)))
            .collect()
    }

    /// The transports this plan measures, the baseline first.
    pub fn transports(&self) -> Vec<FanTransport> {
        let filter = self.filter.as_ref().map(|f| f.to_lowercase());
        TRANSPORTS
            .into_iter()
            .filter(|t| !(self.no_iceoryx2 && t.is_iceoryx2()))
            .filter(|t| {
                *t == FanTransport::Stream
                    || filter
                        .as_ref()
                        .is_none_or(|f| t.name().to_lowercase().contains(f.as_str()))
            })
            .collect()
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
    /// The publisher's CPU time per message published (throughput phase).
    pub pub_cpu_ns: f64,
    /// The publisher's sleeps (voluntary context switches) per 1000
    /// messages published.
    pub pub_sleeps_per_k: f64,
    /// A subscriber's CPU time per message received (throughput phase),
    /// averaged over the subscribers.
    pub sub_cpu_ns: f64,
    /// A subscriber's sleeps per 1000 messages, averaged.
    pub sub_sleeps_per_k: f64,
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
                throughput: Duration::from_millis(100),
                latency: Duration::from_millis(100),
            }
        } else {
            Timing {
                throughput: Duration::from_millis(300),
                latency: Duration::from_millis(300),
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

/// Latency messages' due instants as `CLOCK_MONOTONIC` nanoseconds (the
/// clock the subscribers read), from the publisher's `Instant` schedule.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    mono0: u64,
    inst0: Instant,
}

impl Schedule {
    fn now() -> Schedule {
        Schedule {
            mono0: mono_ns(),
            inst0: Instant::now(),
        }
    }

    /// The stamp of a message due at `due`.
    fn stamp(&self, due: Instant) -> u64 {
        let since = due.saturating_duration_since(self.inst0).as_nanos();
        self.mono0
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process.
pub(crate) fn mono_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Checks message `seq` (length, phase, every byte of the body) and
/// records its one-way latency if it is a latency message; returns its
/// phase. The clock is read (latency messages only) before the body is
/// checked.
///
/// # Errors
/// A wrong length, phase or body.
pub(crate) fn check_message(
    msg: &[u8],
    size: usize,
    seq: u64,
    samples: &mut Vec<u64>,
) -> Result<u64> {
    if msg.len() != size || size < HEAD {
        return Err(format!("message {seq}: {} bytes, expected {size}", msg.len()).into());
    }
    let phase = word(msg, 8);
    match phase {
        PHASE_THROUGHPUT | PHASE_END => {}
        PHASE_LATENCY => samples.push(mono_ns().saturating_sub(word(msg, 0))),
        p => return Err(format!("message {seq}: bad phase {p}").into()),
    }
    pattern::verify(&msg[HEAD..], seq, size - HEAD)?;
    Ok(phase)
}

/// This process's CPU time (user + system) and voluntary context switches
/// (sleeps) so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    ns: u64,
    sleeps: u64,
}

impl Cpu {
    /// Now (zero if `getrusage` fails, which it does not for `RUSAGE_SELF`).
    pub(crate) fn now() -> Cpu {
        use nix::sys::resource::{getrusage, UsageWho};
        use nix::sys::time::TimeValLike;
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(u) => Cpu {
                ns: (u.user_time().num_nanoseconds() + u.system_time().num_nanoseconds()).max(0)
                    as u64,
                sleeps: u.voluntary_context_switches().max(0) as u64,
            },
            Err(_) => Cpu::default(),
        }
    }
}

/// A subscriber's cost over the throughput phase: CPU time and sleeps from
/// its first throughput message to its end, and the messages in between.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    start: Option<Cpu>,
    msgs: u64,
}

impl Meter {
    /// Counts a message of `phase` (starting the meter at the first
    /// throughput message).
    pub(crate) fn on(&mut self, phase: u64) {
        if phase == PHASE_LATENCY {
            return;
        }
        if self.start.is_none() {
            self.start = Some(Cpu::now());
        } else {
            self.msgs += 1;
        }
    }
}

/// Sends a subscriber's report to the publisher: its CPU time, sleeps and
/// messages over the throughput phase, then its latency samples.
pub(crate) fn send_report(ctl: &mut UnixStream, meter: &Meter, samples: &[u64]) -> Result<()> {
    let end = Cpu::now();
    let start = meter.start.unwrap_or(end);
    let mut out = Vec::with_capacity(8 * (samples.len() + 4));
    for w in [
        end.ns.saturating_sub(start.ns),
        end.sleeps.saturating_sub(start.sleeps),
        meter.msgs,
        samples.len() as u64,
    ] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    ctl.write_all(&out)?;
    Ok(())
}

/// Whether the test hook [`super::session::TEST_HANG_ENV`] names `transport` (its
/// [`FanTransport::id`]): its subscribers then stop once subscribed and
/// sleep until killed.
fn test_hang(transport: FanTransport) -> bool {
    super::session::test_hook(transport.id())
}

/// The test hook's hang: sleeps until the watchdog kills this process.
pub(crate) fn hang_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A pubsub subscriber: subscribes (retrying until the path exists),
/// receives until the publisher closes (copying each message out, or
/// reading it in place), sends its samples on `ctl`.
fn pubsub_subscriber(
    path: PathBuf,
    size: usize,
    in_place: bool,
    mut ctl: UnixStream,
    hang: bool,
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
    if hang {
        hang_forever();
    }
    let mut buf = Vec::with_capacity(size);
    let mut samples = Vec::with_capacity(1 << 16);
    let mut meter = Meter::default();
    let mut seq = 0u64;
    loop {
        if in_place {
            match sub.read_timeout(TIMEOUT) {
                Ok(sample) => {
                    // SAFETY: the bench's publisher is honest and this
                    // subscriber is never evicted (`max_lag` = the row's
                    // timeout, Block): nobody writes the record while the
                    // sample holds it. `is_intact` is checked after the
                    // read all the same.
                    let bytes = unsafe { sample.as_slice_unchecked() };
                    meter.on(check_message(bytes, size, seq, &mut samples)?);
                    if !sample.is_intact() {
                        return Err(format!("message {seq} overwritten while read").into());
                    }
                }
                Err(PsError::Closed) => break,
                Err(e) => return Err(format!("read: {e}").into()),
            }
        } else {
            match sub.recv_timeout(&mut buf, TIMEOUT) {
                Ok(_) => meter.on(check_message(&buf, size, seq, &mut samples)?),
                Err(PsError::Closed) => break,
                Err(e) => return Err(format!("recv: {e}").into()),
            }
        }
        seq += 1;
    }
    send_report(&mut ctl, &meter, &samples)
}

/// A stream subscriber: reads framed messages until end of stream.
fn stream_subscriber(mut s: UnixStream, size: usize, mut ctl: UnixStream) -> Result<()> {
    let mut buf = vec![0u8; size];
    let mut samples = Vec::with_capacity(1 << 16);
    let mut meter = Meter::default();
    let mut seq = 0u64;
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
        meter.on(check_message(&buf, size, seq, &mut samples)?);
        seq += 1;
    }
    send_report(&mut ctl, &meter, &samples)
}

/// The publisher's end of the row.
enum Source {
    PubSub(Box<Publisher>),
    Stream(Vec<UnixStream>),
    Iox(IoxFanPub),
}

impl Source {
    /// Publishes message `seq` of `size` bytes: the body written in full,
    /// then the head (the stamp last; 0 outside the latency phase: the
    /// throughput phase reads no clock per message).
    fn publish(
        &mut self,
        size: usize,
        phase: u64,
        seq: u64,
        stamp: u64,
        scratch: &mut [u8],
    ) -> Result<()> {
        match self {
            Source::PubSub(p) => {
                let mut loan = p.loan_timeout(size, TIMEOUT)?;
                pattern::fill(&mut loan[HEAD..], seq);
                loan[8..HEAD].copy_from_slice(&phase.to_le_bytes());
                loan[..8].copy_from_slice(&stamp.to_le_bytes());
                loan.publish();
            }
            Source::Stream(socks) => {
                pattern::fill(&mut scratch[8 + HEAD..], seq);
                scratch[..8].copy_from_slice(&(size as u64).to_le_bytes());
                scratch[16..24].copy_from_slice(&phase.to_le_bytes());
                scratch[8..16].copy_from_slice(&stamp.to_le_bytes());
                for s in socks {
                    s.write_all(scratch)?;
                }
            }
            Source::Iox(p) => p.publish(size, phase, seq, stamp)?,
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

fn iox_wait(t: FanTransport) -> IoxFanWait {
    if t == FanTransport::IoxEvent {
        IoxFanWait::Event
    } else {
        IoxFanWait::Poll
    }
}

fn run_row(
    transport: FanTransport,
    size: usize,
    n: usize,
    timing: Timing,
    timeout: Option<Duration>,
) -> Result<FanoutRow> {
    let hang = test_hang(transport);
    let path = temp_path();
    let names = Names::fresh();
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut parent: (Vec<UnixStream>, Vec<UnixStream>) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (ctl, child_ctl) = UnixStream::pair()?;
        let (child, mut p) = match transport {
            FanTransport::PubSub | FanTransport::PubSubInPlace => {
                let path = path.clone();
                let in_place = transport == FanTransport::PubSubInPlace;
                fork_with(parent, child_ctl, None, move |ctl| {
                    pubsub_subscriber(path, size, in_place, ctl, hang)
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
            FanTransport::IoxPoll | FanTransport::IoxEvent => {
                let names = names.clone();
                let wait = iox_wait(transport);
                fork_with(parent, child_ctl, None, move |ctl| {
                    fanout_iox::subscriber(names, size, n, wait, TIMEOUT, ctl, hang)
                })?
            }
        };
        p.0.push(ctl);
        parent = p;
        children.push(child);
    }
    let (ctls, socks) = parent;
    // Armed once every subscriber is forked: a hang kills them, and the
    // row is reported as hung ([`Hung`]) instead of ending the run.
    let pids: Vec<_> = children.iter().map(Child::pid).collect();
    let what = format!("fan-out {size} B, {n} subscribers, {}", transport.name());
    // The row's planned time (phases, set-up) plus `--timeout`, else 3 min.
    let limit = timeout.map_or(TIMEOUT * 3, |t| {
        timing.latency + timing.throughput * 6 / 5 + Duration::from_secs(1) + t
    });
    let watchdog = Watchdog::arm_killing(limit, &what, &pids)?;
    let r = measure_row(transport, size, n, timing, (&path, &names), ctls, socks);
    let _ = std::fs::remove_file(&path);
    if watchdog.fired() {
        for c in &mut children {
            c.kill();
        }
        return Err(Hung { what }.into());
    }
    drop(watchdog);
    let (row, pending_iox) = r?;
    for c in children {
        c.wait(TIMEOUT)?;
    }
    drop(pending_iox);
    Ok(row)
}

/// The measured part of [`run_row`], once the subscribers are forked;
/// returns the row, and the iceoryx2 publisher (to be dropped once the
/// subscribers are done with its samples).
fn measure_row(
    transport: FanTransport,
    size: usize,
    n: usize,
    timing: Timing,
    (path, names): (&PathBuf, &Names),
    mut ctls: Vec<UnixStream>,
    socks: Vec<UnixStream>,
) -> Result<(FanoutRow, Option<IoxFanPub>)> {
    let mut pending_iox: Option<IoxFanPub> = None;
    for c in &ctls {
        // Past the watchdog's timeout: a hang is the watchdog's to report.
        c.set_read_timeout(Some(TIMEOUT * 3 + GRACE))?;
    }
    let mut publ = match transport {
        FanTransport::PubSub | FanTransport::PubSubInPlace => {
            let mut p = Publisher::create(
                path,
                PublisherOptions::new()
                    .capacity(capacity(size))
                    .max_lag(TIMEOUT),
            )?;
            p.wait_for_subscribers(n, TIMEOUT)?;
            Source::PubSub(Box::new(p))
        }
        FanTransport::Stream => Source::Stream(socks),
        FanTransport::IoxPoll | FanTransport::IoxEvent => Source::Iox(IoxFanPub::create(
            names,
            size,
            n,
            iox_wait(transport),
            TIMEOUT,
        )?),
    };
    let mut scratch = vec![0u8; 8 + size];
    let mut seq = 0u64;
    // Latency first, while nobody has a backlog: one message per interval.
    let every = interval(size);
    let end = Instant::now() + timing.latency;
    let schedule = Schedule::now();
    let mut next = Instant::now();
    while next < end {
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        publ.publish(size, PHASE_LATENCY, seq, schedule.stamp(next), &mut scratch)?;
        seq += 1;
        next += every;
    }
    // Throughput: back to back; a short warm-up, then the window.
    let warm = Instant::now() + timing.throughput / 5;
    while Instant::now() < warm {
        publ.publish(size, PHASE_THROUGHPUT, seq, 0, &mut scratch)?;
        seq += 1;
    }
    let cpu0 = Cpu::now();
    // The clock is read once per `check` messages (about 5 µs of work).
    let check = (4096 / size).max(1) as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    while !sent.is_multiple_of(check) || start.elapsed() < timing.throughput {
        publ.publish(size, PHASE_THROUGHPUT, seq, 0, &mut scratch)?;
        seq += 1;
        sent += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu1 = Cpu::now();
    match publ {
        Source::PubSub(p) => p.close(),
        Source::Stream(socks) => drop(socks),
        Source::Iox(mut p) => {
            p.publish(size, PHASE_END, seq, 0)?;
            // Dropped after the samples are collected: the subscribers
            // still read the end message from its segment.
            pending_iox = Some(p);
        }
    }
    let _ = std::fs::remove_file(path);
    let mut all = Vec::new();
    let mut worst_p99 = 0;
    let (mut sub_ns, mut sub_sleeps, mut sub_msgs) = (0u64, 0u64, 0u64);
    for c in &mut ctls {
        let mut head = [0u64; 4];
        for w in &mut head {
            *w = read_u64(c).map_err(|e| format!("control channel: {e}"))?;
        }
        let [ns, sleeps, msgs, k] = head;
        sub_ns += ns;
        sub_sleeps += sleeps;
        sub_msgs += msgs;
        let mut b = vec![0u8; 8 * k as usize];
        c.read_exact(&mut b)?;
        let mut mine: Vec<u64> = b.chunks_exact(8).map(|w| word(w, 0)).collect();
        all.extend_from_slice(&mine);
        if let Some(s) = RttStats::from_samples(&mut mine) {
            worst_p99 = worst_p99.max(s.p99);
        }
    }
    let lat = RttStats::from_samples(&mut all).ok_or("no latency samples")?;
    let row = FanoutRow {
        size,
        subscribers: n,
        transport,
        msgs_per_s: sent as f64 / secs,
        bytes_per_s: sent as f64 * size as f64 / secs,
        lat,
        worst_p99,
        pub_cpu_ns: cpu1.ns.saturating_sub(cpu0.ns) as f64 / sent.max(1) as f64,
        pub_sleeps_per_k: cpu1.sleeps.saturating_sub(cpu0.sleeps) as f64 * 1e3 / sent.max(1) as f64,
        sub_cpu_ns: sub_ns as f64 / sub_msgs.max(1) as f64,
        sub_sleeps_per_k: sub_sleeps as f64 * 1e3 / sub_msgs.max(1) as f64,
    };
    Ok((row, pending_iox))
}

/// A fan-out row that hung: the watchdog killed its subscribers.
#[derive(Debug, Clone)]
pub struct FanoutHung {
    /// Message size in bytes.
    pub size: usize,
    /// Subscriber processes.
    pub subscribers: usize,
    /// Transport.
    pub transport: FanTransport,
    /// What the watchdog said.
    pub reason: String,
}

impl FanoutHung {
    /// Whether this hang is ours to fix (any but iceoryx2's): the run then
    /// ends with a non-zero exit status.
    pub fn fails_run(&self) -> bool {
        !self.transport.is_iceoryx2()
    }
}

/// Runs the scenario: every size, subscriber count and transport of
/// `plan`. A row that hangs is skipped and returned in the second list.
///
/// # Errors
/// The first failure (setup, a malformed message, a subscriber's exit).
pub fn run(
    plan: &FanoutPlan,
    progress: &mut Progress,
) -> Result<(Vec<FanoutRow>, Vec<FanoutHung>)> {
    let timing = Timing::new(plan.quick);
    let mut rows = Vec::new();
    let mut hung = Vec::new();
    for size in plan.sizes() {
        for &n in &SUBSCRIBERS {
            for t in plan.transports() {
                progress.step(&format!("fan-out {size} B: {n} subscribers, {}", t.name()));
                match run_row(t, size, n, timing, plan.timeout) {
                    Ok(r) => rows.push(r),
                    Err(e) if is_hung(&e) => {
                        eprintln!(
                            "bench: fan-out {size} B, {n} subscribers, {}: {e}; row skipped{}",
                            t.name(),
                            if t.is_iceoryx2() {
                                " (iceoryx2: reported, does not fail the run)"
                            } else {
                                " (the run will exit with status 3)"
                            }
                        );
                        hung.push(FanoutHung {
                            size,
                            subscribers: n,
                            transport: t,
                            reason: e.to_string(),
                        });
                    }
                    Err(e) => {
                        return Err(
                            format!("fan-out {size} B, {n} subscribers, {}: {e}", t.name()).into(),
                        )
                    }
                }
            }
        }
    }
    Ok((rows, hung))
}

/// Steps [`run`] reports to the progress display.
pub fn steps(plan: &FanoutPlan) -> usize {
    plan.sizes().len() * SUBSCRIBERS.len() * plan.transports().len()
}
