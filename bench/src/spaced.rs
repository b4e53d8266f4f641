//! The spaced-request scenario of issue 10's target: clients that send
//! 64 B requests at 1,000 requests/s each, as an application with
//! something else to do between requests, **not pinned**; 1 client and 4
//! client processes against one server process, on an otherwise idle
//! machine and with one core busy (one busy process, [`super::load`],
//! not pinned, started for those rows only).
//!
//! The server serves each connection on **its own thread** (one thread per
//! connection, blocked in its receive with the connection's wait
//! strategy), for shmsock and for the Unix stream baseline alike: the shape
//! a threaded server has, and the one in which shmsock's wait strategies
//! act on both sides. Each client process sends request `i` at
//! `start + offset + i x 1 ms` (an absolute schedule: 1,000/s exactly, not
//! 1 ms of sleep plus the round trip), sleeping until then; client `k` of
//! `N` is offset by `k x 1 ms / N`, so that the clients' requests are
//! spread over the millisecond rather than arriving together. Every
//! request and reply is written in full and checked byte by byte.
//!
//! Reported per transport: the round trip (p50/p99/p99.9, all clients'
//! samples together, after 10 unrecorded requests per client), and the CPU
//! time per request of the server (its connection threads,
//! `CLOCK_THREAD_CPUTIME_ID`) and of the clients (`CLOCK_PROCESS_CPUTIME_ID`
//! over their loops; sleeps cost nothing), so that a strategy that spins
//! between requests shows. Rounds are interleaved: each round measures
//! every transport once, in rotated order.
//!
//! A row whose transfer hangs has its processes killed by the watchdog
//! ([`Watchdog::arm_killing`]), is reported as hung and measured no
//! further; the run goes on.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};
use nix::time::ClockId;
use shmsock::{Builder, Connection, Listener, WaitStrategy};

use super::child::{fork_with, Child, Result};
use super::fanin::mono_ns;
use super::link::{Framed, Link, ShmCopy};
use super::load::Load;
use super::run::{Progress, RttStats};
use super::session::{read_u64, ring_capacity, socket_name, test_hook, Api, Transport, Wait};
use super::watchdog::{is_hung, Hung, Watchdog, GRACE};

/// Client processes per row.
pub const CLIENTS: [usize; 2] = [1, 4];
/// Busy processes this scenario adds (besides `--load`): none, then one.
pub const LOADS: [usize; 2] = [0, 1];
/// Requests per second of each client.
pub const RATE: u32 = 1_000;
/// Message size.
pub const SIZE: usize = 64;
/// Interleaved rounds of the default run.
pub const ROUNDS: usize = 5;
/// Unrecorded requests at the start of each client's loop.
const WARMUP: u64 = 10;
/// Longest the set-up of a row (fork, connect, accept) may take.
const SETUP: Duration = Duration::from_secs(30);
/// How long the busy process runs before the loaded rows start.
const LOAD_SETTLE: Duration = Duration::from_millis(50);

/// Transports compared, the baseline first, then the default.
///
/// `Spin` is not among them: between requests 1 ms apart it spins a core
/// away per thread (the think-time rows of [`super::paced`] show it: 8-10
/// ms of CPU per request), and with 4 clients its 8 spinning threads on
/// this 2-core machine fell seconds behind the schedule (a row planned at
/// 0.17 s took 1.3-5.7 s, p99 24-72 ms; session 7), which alone would
/// have more than doubled the scenario's time.
pub const TRANSPORTS: [Transport; 3] = [
    Transport::Stream,
    Transport::Shm(Wait::Adaptive, Api::Copy),
    Transport::Shm(Wait::Block, Api::Copy),
];

/// The time between two requests of one client.
pub fn interval() -> Duration {
    Duration::from_secs(1) / RATE
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// `--quick`: one round of fewer requests.
    pub quick: bool,
    /// How long a row may take beyond its planned time before it is
    /// declared hung.
    pub timeout: Duration,
    /// Busy processes the whole run already has (`--load N`).
    pub base_load: usize,
}

impl Plan {
    /// Recorded requests per client per round.
    pub fn requests(&self) -> u64 {
        // 5 rounds x 600: 3,000 samples per 1-client row, 12,000 with 4
        // clients, so that a p99 rests on 30 and 120 samples. With 350 x 3
        // (session 7) the p99 of every transport moved 2-4x between runs,
        // and a verdict on it was a coin toss (session 8, docs/performance.md).
        // A row lasts about 0.62 s, the scenario about 45 s.
        if self.quick {
            150
        } else {
            600
        }
    }

    /// Interleaved rounds.
    pub fn rounds(&self) -> usize {
        if self.quick {
            1
        } else {
            ROUNDS
        }
    }
}

/// One measured (clients, load, transport).
#[derive(Debug, Clone)]
pub struct SpacedRow {
    /// Client processes.
    pub clients: usize,
    /// Busy processes running meanwhile (this scenario's and `--load`'s).
    pub load: usize,
    /// Transport.
    pub transport: Transport,
    /// Round trip of each recorded request, all clients.
    pub rtt: RttStats,
    /// CPU time of the server's connection threads and of the clients per
    /// request (warm-up requests included in both), nanoseconds.
    pub cpu_per_req_ns: f64,
    /// The server's part of it.
    pub server_cpu_per_req_ns: f64,
    /// The clients' context switches per request, voluntary and
    /// involuntary ([`Measured::clients_csw`]).
    pub client_csw_per_req: [f64; 2],
}

/// A spaced row that hung: the watchdog killed its processes; the
/// transport is measured no further in that (clients, load).
#[derive(Debug, Clone)]
pub struct SpacedHung {
    /// Client processes.
    pub clients: usize,
    /// Busy processes running meanwhile.
    pub load: usize,
    /// Transport.
    pub transport: Transport,
    /// What the watchdog said.
    pub reason: String,
}

/// What one row connects: the Unix stream, or shmsock with each side's wait
/// strategy (the same one in `bench`; `examples/spaced_probe.rs` mixes
/// them to find which side's wait a result comes from).
#[derive(Debug, Clone, Copy)]
pub enum Pair {
    /// The Unix stream baseline.
    Stream,
    /// shmsock, `send`/`recv_into`.
    Shm {
        /// The server's connections' wait strategy.
        server: WaitStrategy,
        /// The clients' wait strategy.
        client: WaitStrategy,
    },
}

impl Pair {
    /// The pair a `bench` transport runs.
    pub fn of(t: Transport) -> Pair {
        match t {
            Transport::Shm(w, _) => Pair::Shm {
                server: w.strategy(),
                client: w.strategy(),
            },
            _ => Pair::Stream,
        }
    }
}

/// What the server builds its connections from.
enum ServerEnd {
    Shm(Listener),
    Stream(Vec<UnixStream>),
}

/// What a client builds its end from.
enum ClientEnd {
    Shm { name: String, builder: Builder },
    Stream(UnixStream),
}

/// CPU time of `clock` in nanoseconds.
fn cpu_ns(clock: ClockId) -> Result<u64> {
    let t = nix::time::clock_gettime(clock).map_err(|e| format!("clock_gettime: {e}"))?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// Accepts `n` shmsock clients, giving up after [`SETUP`].
fn accept_n(listener: &Listener, n: usize) -> Result<Vec<Connection>> {
    let deadline = Instant::now() + SETUP;
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, 20u16) {
            Ok(r) if r > 0 => conns.push(listener.accept().map_err(|e| format!("accept: {e}"))?),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}").into()),
        }
        if conns.len() < n && Instant::now() >= deadline {
            return Err(format!("{} of {n} clients connected in {SETUP:?}", conns.len()).into());
        }
    }
    Ok(conns)
}

/// The server process: one thread per connection, each answering
/// `per_conn` requests; then the threads' CPU time in all on `ctl`.
/// `hang`: the test hook, the threads stop at the first request.
fn server_main(
    end: ServerEnd,
    clients: usize,
    per_conn: u64,
    hang: bool,
    mut ctl: UnixStream,
) -> Result<()> {
    let cpu = match end {
        ServerEnd::Shm(listener) => {
            let conns = accept_n(&listener, clients)?;
            drop(listener);
            serve_threads(
                conns.into_iter().map(|c| ShmCopy::new(c, SIZE)).collect(),
                per_conn,
                hang,
            )?
        }
        ServerEnd::Stream(socks) => serve_threads(
            socks
                .into_iter()
                .map(|s| Ok(Framed::new(s.try_clone()?, s, SIZE)))
                .collect::<std::io::Result<Vec<_>>>()?,
            per_conn,
            hang,
        )?,
    };
    ctl.write_all(&cpu.to_le_bytes())?;
    Ok(())
}

/// Serves each link on its own thread; returns the threads' CPU time.
fn serve_threads<L: Link + Send>(links: Vec<L>, n: u64, hang: bool) -> Result<u64> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = links
            .into_iter()
            .map(|mut link| {
                scope.spawn(move || -> Result<u64> {
                    let cpu0 = cpu_ns(ClockId::CLOCK_THREAD_CPUTIME_ID)?;
                    if hang {
                        super::fanout::hang_forever();
                    }
                    for i in 0..n {
                        link.recv(2 * i, SIZE)?;
                        link.send(2 * i + 1, SIZE)?;
                    }
                    Ok(cpu_ns(ClockId::CLOCK_THREAD_CPUTIME_ID)?.saturating_sub(cpu0))
                })
            })
            .collect();
        let mut total = 0u64;
        for h in handles {
            total += h.join().map_err(|_| "a server thread panicked")??;
        }
        Ok(total)
    })
}

/// A client process: connects, says so on `ctl`, reads the start time,
/// sends its requests on schedule, then reports on `ctl` its samples and
/// its CPU time.
fn client_main(end: ClientEnd, n: u64, offset: Duration, mut ctl: UnixStream) -> Result<()> {
    match end {
        ClientEnd::Shm { name, builder } => {
            let conn = builder
                .connect(&name)
                .map_err(|e| format!("connect {name}: {e}"))?;
            client_loop(ShmCopy::new(conn, SIZE), n, offset, &mut ctl)
        }
        ClientEnd::Stream(s) => {
            client_loop(Framed::new(s.try_clone()?, s, SIZE), n, offset, &mut ctl)
        }
    }
}

fn client_loop<L: Link>(mut link: L, n: u64, offset: Duration, ctl: &mut UnixStream) -> Result<()> {
    ctl.write_all(&[1])?;
    let start = read_u64(ctl).map_err(|e| format!("control channel (read): {e}"))?
        + offset.as_nanos() as u64;
    let every = interval().as_nanos() as u64;
    let mut samples = Vec::with_capacity(n as usize);
    let cpu0 = cpu_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID)?;
    let csw0 = csw()?;
    for i in 0..n {
        let at = start + i * every;
        let now = mono_ns()?;
        if at > now {
            std::thread::sleep(Duration::from_nanos(at - now));
        }
        let t0 = mono_ns()?;
        link.send(2 * i, SIZE)?;
        link.recv(2 * i + 1, SIZE)?;
        let t1 = mono_ns()?;
        if i >= WARMUP {
            samples.push(t1 - t0);
        }
    }
    let cpu = cpu_ns(ClockId::CLOCK_PROCESS_CPUTIME_ID)?.saturating_sub(cpu0);
    let csw1 = csw()?;
    let mut out = Vec::with_capacity(8 * (samples.len() + 4));
    out.extend_from_slice(&(samples.len() as u64).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.extend_from_slice(&cpu.to_le_bytes());
    for k in 0..2 {
        out.extend_from_slice(&csw1[k].saturating_sub(csw0[k]).to_le_bytes());
    }
    ctl.write_all(&out)?;
    Ok(())
}

/// What one row of one round gathered.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Round trip of each recorded request, all clients, ns.
    pub samples: Vec<u64>,
    /// CPU time of the server's connection threads, ns.
    pub server_cpu_ns: u64,
    /// CPU time of the clients' loops, ns.
    pub clients_cpu_ns: u64,
    /// Requests done in all (warm-up included).
    pub requests: u64,
    /// The clients' context switches over their loops: voluntary (each
    /// sleep until the next request, each park), involuntary (preempted).
    pub clients_csw: [u64; 2],
}

impl Measured {
    /// Adds another round of the same row.
    pub fn add(&mut self, m: Measured) {
        self.samples.extend(m.samples);
        self.server_cpu_ns += m.server_cpu_ns;
        self.clients_cpu_ns += m.clients_cpu_ns;
        self.requests += m.requests;
        self.clients_csw[0] += m.clients_csw[0];
        self.clients_csw[1] += m.clients_csw[1];
    }
}

/// Measures `pair` once: forks the server and `clients` clients, each
/// doing `n` recorded requests after 10 unrecorded ones.
///
/// # Errors
/// Set-up, transport or verification failures; a hang (the watchdog
/// killed the row's processes after `timeout` beyond the planned time).
pub fn run_row(pair: Pair, clients: usize, n: u64, timeout: Duration) -> Result<Measured> {
    let per_conn = WARMUP + n;
    let (server_ctl, server_child_ctl) =
        UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let (server_end, mut client_ends) = match pair {
        Pair::Shm { server, client } => {
            let name = socket_name();
            let builder = Builder::new().ring_capacity(ring_capacity(SIZE));
            let l = builder
                .clone()
                .wait(server)
                .bind(&name)
                .map_err(|e| format!("bind {name}: {e}"))?;
            let ends = (0..clients)
                .map(|_| ClientEnd::Shm {
                    name: name.clone(),
                    builder: builder.clone().wait(client),
                })
                .collect::<Vec<_>>();
            (ServerEnd::Shm(l), ends)
        }
        Pair::Stream => {
            let mut server = Vec::with_capacity(clients);
            let mut ends = Vec::with_capacity(clients);
            for _ in 0..clients {
                let (a, b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
                server.push(a);
                ends.push(ClientEnd::Stream(b));
            }
            (ServerEnd::Stream(server), ends)
        }
    };
    let hang = test_hook(&format!("spaced:{}", pair_id(pair)));
    // The server gets its ends only; the client ends stay here.
    let (server, (ends, server_ctl)) = fork_with(
        (std::mem::take(&mut client_ends), server_ctl),
        (server_end, server_child_ctl),
        None,
        move |(end, ctl)| server_main(end, clients, per_conn, hang, ctl),
    )?;
    client_ends = ends;
    // Forked one by one; each client gets the ends of those not yet forked
    // as `parent_side` and drops them, so it holds no fd but its own.
    let mut children: Vec<Child> = vec![server];
    let mut parent = (client_ends, server_ctl, Vec::with_capacity(clients));
    for k in 0..clients {
        let (ctl, child_ctl) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let end = parent.0.pop().ok_or("internal error: no client end left")?;
        let offset = interval() * k as u32 / clients as u32;
        let (child, mut p) = fork_with(parent, (end, child_ctl), None, move |(end, ctl)| {
            client_main(end, per_conn, offset, ctl)
        })?;
        p.2.push(ctl);
        parent = p;
        children.push(child);
    }
    let (_, mut server_ctl, mut ctls) = parent;
    let pids: Vec<_> = children.iter().map(Child::pid).collect();
    let what = format!("spaced {clients} clients, {}", pair_id(pair));
    // The planned time (requests, the last client's offset, the 5 ms
    // start in `gather`) plus `timeout`.
    let limit = timeout + interval() * (per_conn as u32 + 1) + Duration::from_millis(5);
    let watchdog = Watchdog::arm_killing(limit, &what, &pids)?;
    let r = gather(&mut server_ctl, &mut ctls, limit + GRACE);
    if watchdog.fired() {
        for c in &mut children {
            c.kill();
        }
        return Err(Hung { what }.into());
    }
    drop(watchdog);
    let g = r?;
    for c in children {
        c.wait(SETUP)?;
    }
    Ok(Measured {
        samples: g.samples,
        server_cpu_ns: g.server_cpu,
        clients_cpu_ns: g.clients_cpu,
        requests: per_conn * clients as u64,
        clients_csw: g.csw,
    })
}

/// What [`gather`] collects.
struct Gathered {
    samples: Vec<u64>,
    server_cpu: u64,
    clients_cpu: u64,
    csw: [u64; 2],
}

/// A row's name in messages and test hooks: the transport's id, or both
/// sides' strategies where they differ.
fn pair_id(pair: Pair) -> String {
    match pair {
        Pair::Stream => Transport::Stream.id().to_string(),
        Pair::Shm { server, client } => {
            let id = |w: WaitStrategy| match w {
                WaitStrategy::Spin => "spin",
                WaitStrategy::Block => "block",
                _ => "adaptive",
            };
            if id(server) == id(client) {
                format!("shmsock_{}_send", id(server))
            } else {
                format!("shmsock_server_{}_client_{}_send", id(server), id(client))
            }
        }
    }
}

/// This process's context switches so far: voluntary, involuntary.
fn csw() -> Result<[u64; 2]> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).map_err(|e| format!("getrusage: {e}"))?;
    Ok([
        u.voluntary_context_switches() as u64,
        u.involuntary_context_switches() as u64,
    ])
}

/// The parent's part of a row, once every process is forked: starts the
/// clients together, collects their samples and CPU times and the
/// server's.
fn gather(
    server_ctl: &mut UnixStream,
    ctls: &mut [UnixStream],
    read_timeout: Duration,
) -> Result<Gathered> {
    // Past the watchdog's limit: a hang is the watchdog's to report.
    server_ctl.set_read_timeout(Some(read_timeout))?;
    for c in ctls.iter_mut() {
        c.set_read_timeout(Some(read_timeout))?;
        c.set_write_timeout(Some(read_timeout))?;
        let mut ready = [0u8; 1];
        c.read_exact(&mut ready)
            .map_err(|e| format!("control channel (ready): {e}"))?;
    }
    let start = mono_ns()? + 5_000_000;
    for c in ctls.iter_mut() {
        c.write_all(&start.to_le_bytes())
            .map_err(|e| format!("control channel (write): {e}"))?;
    }
    let mut samples = Vec::new();
    let mut clients_cpu = 0u64;
    let mut csw = [0u64; 2];
    for c in ctls.iter_mut() {
        let k = read_u64(c).map_err(|e| format!("control channel (read): {e}"))?;
        let mut b = vec![0u8; 8 * k as usize];
        c.read_exact(&mut b)
            .map_err(|e| format!("control channel (read): {e}"))?;
        samples.extend(b.chunks_exact(8).map(|w| {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        }));
        clients_cpu += read_u64(c)?;
        csw[0] += read_u64(c)?;
        csw[1] += read_u64(c)?;
    }
    let server_cpu = read_u64(server_ctl).map_err(|e| format!("server (read): {e}"))?;
    Ok(Gathered {
        samples,
        server_cpu,
        clients_cpu,
        csw,
    })
}

/// Runs the scenario: for each load (idle, then one busy process) and
/// client count, `plan.rounds()` rounds, each measuring every transport
/// once in rotated order. A transport whose row hangs is skipped and
/// returned in the second list.
///
/// # Errors
/// The first failure other than a hang (setup, transport, verification,
/// a process's exit).
pub fn run(plan: &Plan, progress: &mut Progress) -> Result<(Vec<SpacedRow>, Vec<SpacedHung>)> {
    let n = plan.requests();
    let rounds = plan.rounds();
    let mut rows = Vec::new();
    let mut hung = Vec::new();
    for extra in LOADS {
        let load = plan.base_load + extra;
        // During these rows only; killed when dropped.
        let _busy = if extra > 0 {
            let l = Load::start(extra)?;
            std::thread::sleep(LOAD_SETTLE);
            Some(l)
        } else {
            None
        };
        for clients in CLIENTS {
            let mut acc: Vec<Option<Measured>> = (0..TRANSPORTS.len()).map(|_| None).collect();
            let mut hung_here: Vec<Option<String>> = vec![None; TRANSPORTS.len()];
            for round in 0..rounds {
                progress.step(&format!(
                    "spaced 64 B at {RATE}/s: {clients} client(s), {load} busy: round {}/{rounds}",
                    round + 1
                ));
                for k in 0..TRANSPORTS.len() {
                    let i = (k + round) % TRANSPORTS.len();
                    if hung_here[i].is_some() {
                        continue;
                    }
                    let t = TRANSPORTS[i];
                    match run_row(Pair::of(t), clients, n, plan.timeout) {
                        Ok(m) => match &mut acc[i] {
                            Some(a) => a.add(m),
                            None => acc[i] = Some(m),
                        },
                        Err(e) if is_hung(&e) => {
                            eprintln!(
                                "bench: spaced, {clients} clients, {load} busy, {t}: {e}; row \
                                 skipped (the run will exit with status 3)"
                            );
                            hung_here[i] = Some(e.to_string());
                        }
                        Err(e) => {
                            return Err(
                                format!("spaced, {clients} clients, {load} busy, {t}: {e}").into()
                            )
                        }
                    }
                }
            }
            for (i, t) in TRANSPORTS.into_iter().enumerate() {
                if let Some(reason) = hung_here[i].take() {
                    hung.push(SpacedHung {
                        clients,
                        load,
                        transport: t,
                        reason,
                    });
                    continue;
                }
                let Some(mut m) = acc[i].take() else {
                    continue;
                };
                let rtt = RttStats::from_samples(&mut m.samples).ok_or("no spaced samples")?;
                let per = |v: u64| v as f64 / m.requests.max(1) as f64;
                rows.push(SpacedRow {
                    clients,
                    load,
                    transport: t,
                    rtt,
                    cpu_per_req_ns: per(m.server_cpu_ns + m.clients_cpu_ns),
                    server_cpu_per_req_ns: per(m.server_cpu_ns),
                    client_csw_per_req: [per(m.clients_csw[0]), per(m.clients_csw[1])],
                });
            }
        }
    }
    Ok((rows, hung))
}

/// Steps [`run`] reports to the progress display.
pub fn steps(plan: &Plan) -> usize {
    LOADS.len() * CLIENTS.len() * plan.rounds()
}
