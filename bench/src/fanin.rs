//! The fan-in scenario: one server thread serves N client processes, as an
//! event loop does. The server waits in `poll(2)` over every client's fd;
//! for shmsock it drains each readable connection with `try_recv` until it
//! returns `Ok(None)` (which arms the wake-up, see `examples/echo_server.rs`),
//! for the Unix stream baseline it reads each non-blocking socket until
//! `EAGAIN`. Each client does 64 B round trips back to back for a fixed
//! time. Nothing is pinned. Every request and reply is written in full and
//! checksummed (the server checks requests, the clients replies).
//!
//! Reported: aggregate round trips per second (all clients, inside the
//! measured window), the round-trip percentiles over all clients, and what
//! a round trip costs the machine: CPU time (user + system, `getrusage`) of
//! the server thread and of all clients, and context switches, per round
//! trip over the whole run (warm-up included). With more runnable processes
//! than cores the rate is bounded by `cores / CPU per round trip`: the `cap`
//! column, which says whether a transport is CPU-bound and by what.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use shmsock::{Builder, Connection, Listener};

use super::child::{fork_with, Child, Result};
use super::link::{Framed, Link, ShmCopy};
use super::pattern;
use super::run::{Progress, RttStats};
use super::session::{read_u64, ring_capacity, socket_name, test_hook, Api, Transport, Wait};
use super::watchdog::{is_hung, Hung, Watchdog, GRACE};

/// Client counts measured.
pub const CLIENTS: [usize; 3] = [1, 8, 32];
/// Message size.
pub const SIZE: usize = 64;
/// Transports compared, the baseline first.
pub const TRANSPORTS: [Transport; 3] = [
    Transport::Stream,
    Transport::Shm(Wait::Adaptive, Api::Copy),
    Transport::Shm(Wait::Block, Api::Copy),
];
/// Longest the setup or the serving loop of one row may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Most round trips a client records.
const MAX_SAMPLES: usize = 4 << 20;
/// Stream framing: an 8-byte length, then the payload.
const FRAME: usize = 8 + SIZE;

/// One measured (client count, transport).
#[derive(Debug, Clone)]
pub struct FaninRow {
    /// Client processes.
    pub clients: usize,
    /// Transport.
    pub transport: Transport,
    /// Round trips completed inside the measured window, all clients.
    pub round_trips: u64,
    /// Round trips per second, all clients.
    pub per_s: f64,
    /// Round trip of each request, all clients.
    pub rtt: RttStats,
    /// What the run cost, per round trip (warm-up included).
    pub cost: Cost,
}

/// CPU time and context switches per round trip, over a whole row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Server thread CPU time (user + system) per round trip, ns.
    pub server_cpu_ns: f64,
    /// All clients' CPU time per round trip, ns.
    pub clients_cpu_ns: f64,
    /// Context switches (voluntary + involuntary) of the server thread and
    /// every client, per round trip.
    pub switches: f64,
}

impl Cost {
    /// Round trips per second the machine's cores could sustain at this
    /// CPU cost (all processes runnable, none idle).
    pub fn cap_per_s(&self, cores: usize) -> f64 {
        cores as f64 * 1e9 / (self.server_cpu_ns + self.clients_cpu_ns).max(1e-9)
    }
}

/// CPU time (ns) and context switches of this thread or process so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub(crate) cpu_ns: u64,
    pub(crate) switches: u64,
}

impl Usage {
    pub(crate) fn now(who: nix::sys::resource::UsageWho) -> Result<Usage> {
        use nix::sys::time::TimeValLike;
        let u = nix::sys::resource::getrusage(who).map_err(|e| format!("getrusage: {e}"))?;
        let cpu = u.user_time().num_nanoseconds() + u.system_time().num_nanoseconds();
        let sw = u.voluntary_context_switches() + u.involuntary_context_switches();
        Ok(Usage {
            cpu_ns: cpu.max(0) as u64,
            switches: sw.max(0) as u64,
        })
    }
    pub(crate) fn since(self, earlier: Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            switches: self.switches.saturating_sub(earlier.switches),
        }
    }
}

/// How long each row runs: warm-up, then the measured window.
#[derive(Debug, Clone, Copy)]
struct Timing {
    warm: Duration,
    measure: Duration,
}

impl Timing {
    fn new(quick: bool) -> Timing {
        // 9 rows, each also waiting 20 ms for the start and forking its
        // clients: about 8 s by default, 2.3 s with --quick.
        if quick {
            Timing {
                warm: Duration::from_millis(20),
                measure: Duration::from_millis(200),
            }
        } else {
            Timing {
                warm: Duration::from_millis(60),
                measure: Duration::from_millis(700),
            }
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process.
pub(crate) fn mono_ns() -> Result<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| format!("clock_gettime(CLOCK_MONOTONIC): {e}"))?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// What a client builds its end from.
enum ClientEnd {
    Shm { name: String, builder: Builder },
    Stream(UnixStream),
}

/// The server's side of one client.
struct Peer<C> {
    conn: C,
    /// Sequence number of the next request.
    next: u64,
    /// Request bytes read (stream: partial frames).
    buf: Vec<u8>,
    have: usize,
}

impl<C> Peer<C> {
    fn new(conn: C) -> Self {
        Peer {
            conn,
            next: 0,
            buf: vec![0u8; 4096],
            have: 0,
        }
    }
}

/// Answers every request ready on a shmsock connection; `Ok(false)` once
/// the client has left.
fn serve_shm(p: &mut Peer<Connection>) -> Result<bool> {
    loop {
        let n = match p.conn.try_recv() {
            Ok(Some(m)) => {
                if m.len() != SIZE {
                    return Err(format!("request of {} bytes, expected {SIZE}", m.len()).into());
                }
                m.copy_to(&mut p.buf[..SIZE])
            }
            Ok(None) => return Ok(true),
            Err(shmsock::Error::Disconnected) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        pattern::verify(&p.buf[..n], p.next, SIZE)?;
        pattern::fill(&mut p.buf[..SIZE], p.next + 1);
        match p.conn.send(&p.buf[..SIZE]) {
            Ok(()) => {}
            Err(shmsock::Error::Disconnected) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        p.next += 2;
    }
}

/// Answers every request ready on a non-blocking stream socket; `Ok(false)`
/// once the client has left.
fn serve_stream(p: &mut Peer<UnixStream>) -> Result<bool> {
    loop {
        let n = match p.conn.read(&mut p.buf[p.have..]) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}").into()),
        };
        p.have += n;
        let mut at = 0;
        while p.have - at >= FRAME {
            let frame = &mut p.buf[at..at + FRAME];
            let mut len = [0u8; 8];
            len.copy_from_slice(&frame[..8]);
            if u64::from_le_bytes(len) != SIZE as u64 {
                return Err("stream framing: bad request length".into());
            }
            pattern::verify(&frame[8..], p.next, SIZE)?;
            pattern::fill(&mut frame[8..], p.next + 1);
            // One request in flight per client: the socket buffer has room.
            p.conn.write_all(frame).map_err(|e| format!("write: {e}"))?;
            p.next += 2;
            at += FRAME;
        }
        p.buf.copy_within(at..p.have, 0);
        p.have -= at;
    }
}

/// Serves until every client has left: drain each, then `poll`.
fn serve_all<C: AsFd>(
    mut peers: Vec<Peer<C>>,
    serve: impl Fn(&mut Peer<C>) -> Result<bool>,
) -> Result<()> {
    loop {
        let mut i = 0;
        while i < peers.len() {
            if serve(&mut peers[i])? {
                i += 1;
            } else {
                peers.swap_remove(i);
            }
        }
        if peers.is_empty() {
            return Ok(());
        }
        let mut fds: Vec<PollFd<'_>> = peers
            .iter()
            .map(|p| PollFd::new(p.conn.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, 1000u16) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}").into()),
        }
    }
}

/// A client: connects, waits for the start time, does round trips until
/// the end time, hangs up, then sends on `ctl` its samples, then the round
/// trips it did in all and its CPU time and context switches over them.
/// `hang`: the test hook; the client stops once connected and sleeps until
/// killed.
fn client_main(end: ClientEnd, mut ctl: UnixStream, hang: bool) -> Result<()> {
    let (samples, total, usage) = match end {
        ClientEnd::Shm { name, builder } => {
            let conn = builder
                .connect(&name)
                .map_err(|e| format!("connect {name}: {e}"))?;
            hang_if(hang);
            round_trips(ShmCopy::new(conn, SIZE), &mut ctl)?
        }
        ClientEnd::Stream(s) => {
            hang_if(hang);
            round_trips(Framed::new(s.try_clone()?, s, SIZE), &mut ctl)?
        }
    };
    let mut out = Vec::with_capacity(8 * (samples.len() + 4));
    out.extend_from_slice(&(samples.len() as u64).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    for v in [total, usage.cpu_ns, usage.switches] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    ctl.write_all(&out)?;
    Ok(())
}

/// The test hook's hang: sleeps until the watchdog kills this process.
fn hang_if(hang: bool) {
    if hang {
        super::fanout::hang_forever();
    }
}

/// The client's measured loop: the samples inside the window, the round
/// trips done in all, and the CPU and context switches they cost. The link
/// is dropped (the client hangs up) before it returns.
fn round_trips<L: Link>(mut link: L, ctl: &mut UnixStream) -> Result<(Vec<u64>, u64, Usage)> {
    let start = read_u64(ctl)?;
    let warm_end = read_u64(ctl)?;
    let end = read_u64(ctl)?;
    let now = mono_ns()?;
    if start > now {
        std::thread::sleep(Duration::from_nanos(start - now));
    }
    let mut samples = Vec::with_capacity(1 << 16);
    let mut seq = 0u64;
    let usage0 = Usage::now(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    loop {
        let t0 = mono_ns()?;
        link.send(seq, SIZE)?;
        link.recv(seq + 1, SIZE)?;
        let t1 = mono_ns()?;
        seq += 2;
        if t0 >= warm_end && t1 <= end && samples.len() < MAX_SAMPLES {
            samples.push(t1 - t0);
        }
        if t1 >= end {
            let usage = Usage::now(nix::sys::resource::UsageWho::RUSAGE_SELF)?.since(usage0);
            return Ok((samples, seq / 2, usage));
        }
    }
}

/// Accepts `n` shmsock clients, giving up after [`TIMEOUT`].
fn accept_all(listener: &Listener, n: usize) -> Result<Vec<Peer<Connection>>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut peers = Vec::with_capacity(n);
    while peers.len() < n {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, 20u16).map_err(|e| format!("poll: {e}"))? > 0 {
            let conn = listener.accept().map_err(|e| format!("accept: {e}"))?;
            peers.push(Peer::new(conn));
        } else if Instant::now() >= deadline {
            return Err(format!("{} of {n} clients connected in {TIMEOUT:?}", peers.len()).into());
        }
    }
    Ok(peers)
}

/// Measures one row. Once the clients are forked, a watchdog guards the
/// row: if it does not finish within `timeout` beyond its planned time,
/// the clients are killed and the row fails with [`Hung`].
fn run_row(
    transport: Transport,
    clients: usize,
    timing: Timing,
    timeout: Duration,
) -> Result<FaninRow> {
    let hang = test_hook(&format!("fanin:{}", transport.id()));
    // Forked one by one; each child gets the parent's side of the earlier
    // clients as `parent_side` and drops it, so it holds no fd but its own.
    let mut children: Vec<Child> = Vec::with_capacity(clients);
    let listener = match transport {
        Transport::Shm(wait, _) => {
            let name = socket_name();
            let builder = Builder::new()
                .ring_capacity(ring_capacity(SIZE))
                .wait(wait.strategy());
            let l = builder
                .bind(&name)
                .map_err(|e| format!("bind {name}: {e}"))?;
            Some((l, name, builder))
        }
        _ => None,
    };
    let mut parent = (
        listener,
        Vec::<UnixStream>::with_capacity(clients),
        Vec::<UnixStream>::new(),
    );
    for _ in 0..clients {
        let (ctl, child_ctl) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let end = match &parent.0 {
            Some((_, name, builder)) => ClientEnd::Shm {
                name: name.clone(),
                builder: builder.clone(),
            },
            None => {
                let (a, b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
                parent.2.push(a);
                ClientEnd::Stream(b)
            }
        };
        let (child, mut p) = fork_with(parent, (end, child_ctl), None, move |(end, ctl)| {
            client_main(end, ctl, hang)
        })?;
        p.1.push(ctl);
        parent = p;
        children.push(child);
    }
    let (listener, mut ctls, socks) = parent;
    let pids: Vec<_> = children.iter().map(Child::pid).collect();
    let what = format!("fan-in {clients} clients, {transport}");
    // Its planned time (with the 20 ms start below) plus `timeout`.
    let limit = timeout + timing.warm + timing.measure + Duration::from_millis(20);
    let watchdog = Watchdog::arm_killing(limit, &what, &pids)?;
    // Past the watchdog's limit: a hang is the watchdog's to report.
    let r = measure_row(
        transport,
        clients,
        timing,
        listener.as_ref().map(|l| &l.0),
        &mut ctls,
        socks,
        limit + GRACE,
    );
    drop(listener);
    if watchdog.fired() {
        for c in &mut children {
            c.kill();
        }
        return Err(Hung { what }.into());
    }
    drop(watchdog);
    let row = r?;
    for c in children {
        c.wait(TIMEOUT)?;
    }
    Ok(row)
}

/// The measured part of [`run_row`], once the clients are forked.
fn measure_row(
    transport: Transport,
    clients: usize,
    timing: Timing,
    listener: Option<&Listener>,
    ctls: &mut [UnixStream],
    socks: Vec<UnixStream>,
    ctl_timeout: Duration,
) -> Result<FaninRow> {
    for c in ctls.iter() {
        c.set_read_timeout(Some(ctl_timeout))?;
        c.set_write_timeout(Some(ctl_timeout))?;
    }
    let shm_peers = match listener {
        Some(l) => Some(accept_all(l, clients)?),
        None => None,
    };
    // Every client is connected: start together, shortly.
    let start = mono_ns()? + 20_000_000;
    let warm_end = start + timing.warm.as_nanos() as u64;
    let end = warm_end + timing.measure.as_nanos() as u64;
    for c in ctls.iter_mut() {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&start.to_le_bytes());
        b[8..16].copy_from_slice(&warm_end.to_le_bytes());
        b[16..].copy_from_slice(&end.to_le_bytes());
        c.write_all(&b)
            .map_err(|e| format!("control channel (write): {e}"))?;
    }
    let server0 = Usage::now(nix::sys::resource::UsageWho::RUSAGE_THREAD)?;
    match shm_peers {
        Some(peers) => serve_all(peers, serve_shm)?,
        None => {
            let peers = socks
                .into_iter()
                .map(|s| {
                    s.set_nonblocking(true)?;
                    Ok(Peer::new(s))
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            serve_all(peers, serve_stream)?;
        }
    }
    let server = Usage::now(nix::sys::resource::UsageWho::RUSAGE_THREAD)?.since(server0);
    let mut samples = Vec::new();
    let (mut total, mut clients_usage) = (0u64, Usage::default());
    for c in ctls.iter_mut() {
        let n = read_u64(c).map_err(|e| format!("control channel (read): {e}"))?;
        let mut b = vec![0u8; 8 * n as usize];
        c.read_exact(&mut b)?;
        samples.extend(b.chunks_exact(8).map(|w| {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        }));
        total += read_u64(c)?;
        clients_usage.cpu_ns += read_u64(c)?;
        clients_usage.switches += read_u64(c)?;
    }
    let round_trips = samples.len() as u64;
    let rtt = RttStats::from_samples(&mut samples).ok_or("no round trips measured")?;
    let per_rt = |v: u64| v as f64 / total.max(1) as f64;
    Ok(FaninRow {
        clients,
        transport,
        round_trips,
        per_s: round_trips as f64 / timing.measure.as_secs_f64(),
        rtt,
        cost: Cost {
            server_cpu_ns: per_rt(server.cpu_ns),
            clients_cpu_ns: per_rt(clients_usage.cpu_ns),
            switches: per_rt(server.switches + clients_usage.switches),
        },
    })
}

/// A fan-in row that hung: the watchdog killed its clients.
#[derive(Debug, Clone)]
pub struct FaninHung {
    /// Client processes.
    pub clients: usize,
    /// Transport.
    pub transport: Transport,
    /// What the watchdog said.
    pub reason: String,
}

/// Runs the scenario: every client count, every transport (in rotated
/// order from one count to the next). `timeout`: how long a row may take
/// beyond its planned time before it is declared hung; a hung row is
/// skipped (its clients killed) and returned in the second list.
///
/// # Errors
/// The first failure other than a hang (setup, transport, verification, a
/// client's exit).
pub fn run(
    quick: bool,
    timeout: Duration,
    progress: &mut Progress,
) -> Result<(Vec<FaninRow>, Vec<FaninHung>)> {
    let timing = Timing::new(quick);
    let mut rows = Vec::new();
    let mut hung = Vec::new();
    for (k, &n) in CLIENTS.iter().enumerate() {
        let mut these = Vec::with_capacity(TRANSPORTS.len());
        for j in 0..TRANSPORTS.len() {
            let t = TRANSPORTS[(j + k) % TRANSPORTS.len()];
            progress.step(&format!("fan-in 64 B: {n} clients, {t}"));
            match run_row(t, n, timing, timeout) {
                Ok(row) => these.push(row),
                Err(e) if is_hung(&e) => {
                    eprintln!(
                        "bench: fan-in {n} clients, {t}: {e}; row skipped (the run will exit \
                         with status 3)"
                    );
                    hung.push(FaninHung {
                        clients: n,
                        transport: t,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(format!("fan-in {n} clients {t}: {e}").into()),
            }
        }
        these.sort_by_key(|r| TRANSPORTS.iter().position(|&t| t == r.transport));
        rows.extend(these);
    }
    Ok((rows, hung))
}

/// Steps [`run`] reports to the progress display.
pub fn steps() -> usize {
    CLIENTS.len() * TRANSPORTS.len()
}

/// Seconds each row measures (for the report).
pub fn measured(quick: bool) -> Duration {
    Timing::new(quick).measure
}
