//! Where a `Block` stream of mid-size messages loses its time (issue 10,
//! "Block one-way ≥ 1.5x the unix stream at every size", "1 MiB round trip
//! ≥ 1.5x"): one-way throughput or round trips of one message size between
//! two threads pinned to two cores, for a list of ring capacities (and
//! fragment sizes), next to a Unix stream, all interleaved per round, with
//! what each side paid per message: context switches (voluntary =
//! sleeps), CPU time, from `getrusage(RUSAGE_THREAD)`.
//!
//! ```text
//! cargo run --release -p shmsock-bench --example block_probe -- \
//!     [--op oneway|rtt|par] [--size 16K] [--rings 64K,256K,1M] [--frags 0]
//!     [--modes stream,send,zc] [--wait block|adaptive|spin] [--futex 0|1]
//!     [--pipe 0,off,256K] [--rounds 3] [--secs 0.3]
//! ```
//!
//! Modes as in `bulk_sweep`: `stream` (the bench's framed Unix stream),
//! `send` (`send` / `recv_into`, every byte filled and checksummed), `zc`
//! (`reserve` or `write_message` / `recv`, checked in place). `--pipe`:
//! `Builder::pipeline_threshold` values (0: the default, `off`: never
//! split a message that fits one record). `--op par`: `memcpy` of
//! `--size` bytes on each core alone, then on both at once (what
//! overlapping the sender's and the receiver's copies can gain at most).
//! `--op phases`: round trips (modes `stream` and `send`) timed phase by
//! phase on one clock: each side's fill, its transmit call (`send` /
//! `write_all`), how long after the sender's call returned the receiver's
//! receive call returned (the tail: the wake-up not hidden behind the
//! copy, and the copy of what was still in flight), and the checksum;
//! medians per phase, to see where a round trip loses time to the stream.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use shmsock::{Builder, WaitStrategy};
use shmsock_bench::child::Result;
use shmsock_bench::link::{Framed, Link, ShmCopy, ShmZeroCopy};
use shmsock_bench::{pattern, pin};

fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    Ok(num.parse::<usize>()? * mul)
}

fn list(s: &str) -> Result<Vec<usize>> {
    s.split(',').map(parse_size).collect()
}

fn name(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{}K", n >> 10)
    } else {
        n.to_string()
    }
}

/// Context switches and CPU time of the calling thread.
#[derive(Clone, Copy, Default, Debug)]
struct Usage {
    vcsw: i64,
    icsw: i64,
    cpu_ns: i64,
}

impl Usage {
    fn now() -> Usage {
        match getrusage(UsageWho::RUSAGE_THREAD) {
            Ok(u) => {
                let t =
                    |tv: nix::sys::time::TimeVal| tv.tv_sec() * 1_000_000_000 + tv.tv_usec() * 1000;
                Usage {
                    vcsw: u.voluntary_context_switches(),
                    icsw: u.involuntary_context_switches(),
                    cpu_ns: t(u.user_time()) + t(u.system_time()),
                }
            }
            Err(_) => Usage::default(),
        }
    }
    fn since(self, t0: Usage) -> Usage {
        Usage {
            vcsw: self.vcsw - t0.vcsw,
            icsw: self.icsw - t0.icsw,
            cpu_ns: self.cpu_ns - t0.cpu_ns,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Stream,
    Send,
    Zc,
}

fn mode(s: &str) -> Result<Mode> {
    Ok(match s {
        "stream" => Mode::Stream,
        "send" => Mode::Send,
        "zc" => Mode::Zc,
        _ => return Err(format!("unknown mode {s}").into()),
    })
}

type Pair = (Box<dyn Link + Send>, Box<dyn Link + Send>);

struct Cfg {
    mode: Mode,
    ring: usize,
    frag: usize,
    wait: WaitStrategy,
    futex: bool,
    /// `Builder::pipeline_threshold` (0: the default).
    pipe: usize,
}

fn make(c: &Cfg, size: usize) -> Result<Pair> {
    if c.mode == Mode::Stream {
        let (a, b) = UnixStream::pair()?;
        let a2 = a.try_clone()?;
        let b2 = b.try_clone()?;
        return Ok((
            Box::new(Framed::new(a, a2, size)),
            Box::new(Framed::new(b, b2, size)),
        ));
    }
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut builder = Builder::new()
        .ring_capacity(c.ring as u64)
        .wait(c.wait)
        .futex_wakeups(c.futex);
    if c.frag != 0 {
        builder = builder.fragment_size(c.frag);
    }
    if c.pipe != 0 {
        builder = builder.pipeline_threshold(c.pipe);
    }
    let b2 = builder.clone();
    let h = thread::spawn(move || b2.accept_socket(b));
    let ca = builder.connect_socket(a)?;
    let cb = h.join().map_err(|_| "accept panicked")??;
    Ok(match c.mode {
        Mode::Send => (
            Box::new(ShmCopy::new(ca, size)),
            Box::new(ShmCopy::new(cb, size)),
        ),
        _ => (
            Box::new(ShmZeroCopy::new(ca, size)),
            Box::new(ShmZeroCopy::new(cb, size)),
        ),
    })
}

/// One measurement: GB/s (one way) or the p50 round trip in µs, and what
/// the two sides paid per message.
struct Sample {
    value: f64,
    tx: Usage,
    rx: Usage,
    n: u64,
}

fn one_way(pair: Pair, size: usize, n: u64, cores: (usize, usize)) -> Result<Sample> {
    let (mut tx, mut rx) = pair;
    let h = thread::spawn(move || -> std::result::Result<Usage, String> {
        pin::pin_to(cores.1).map_err(|e| e.to_string())?;
        rx.recv(0, size).map_err(|e| e.to_string())?;
        let u0 = Usage::now();
        rx.recv_stream(1, n, size).map_err(|e| e.to_string())?;
        Ok(Usage::now().since(u0))
    });
    pin::pin_to(cores.0)?;
    tx.send(0, size)?;
    let u0 = Usage::now();
    let t = Instant::now();
    tx.send_stream(1, n, size)?;
    let txu = Usage::now().since(u0);
    let rxu = h.join().map_err(|_| "receiver panicked")??;
    let dt = t.elapsed();
    Ok(Sample {
        value: (n as f64 * size as f64) / dt.as_secs_f64() / 1e9,
        tx: txu,
        rx: rxu,
        n,
    })
}

fn rtt(pair: Pair, size: usize, n: u64, cores: (usize, usize)) -> Result<Sample> {
    let (mut a, mut b) = pair;
    let h = thread::spawn(move || -> std::result::Result<Usage, String> {
        pin::pin_to(cores.1).map_err(|e| e.to_string())?;
        let u0 = Usage::now();
        for i in 0..=n {
            b.recv(i, size).map_err(|e| e.to_string())?;
            b.send(i, size).map_err(|e| e.to_string())?;
        }
        Ok(Usage::now().since(u0))
    });
    pin::pin_to(cores.0)?;
    a.send(0, size)?;
    a.recv(0, size)?;
    let u0 = Usage::now();
    let mut times = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let t = Instant::now();
        a.send(i, size)?;
        a.recv(i, size)?;
        times.push(t.elapsed().as_nanos() as u64);
    }
    let au = Usage::now().since(u0);
    let bu = h.join().map_err(|_| "echo panicked")??;
    times.sort_unstable();
    Ok(Sample {
        value: times[times.len() / 2] as f64 / 1e3,
        tx: au,
        rx: bu,
        n,
    })
}

/// GB/s of `memcpy` of `size` bytes between two private buffers for
/// `secs`, on `core`.
fn copy_rate(core: usize, size: usize, secs: f64) -> std::result::Result<f64, String> {
    pin::pin_to(core).map_err(|e| e.to_string())?;
    let a = vec![1u8; size];
    let mut b = vec![2u8; size];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        b.copy_from_slice(std::hint::black_box(&a));
        std::hint::black_box(&mut b);
        n += 1;
    }
    Ok(n as f64 * size as f64 / t.elapsed().as_secs_f64() / 1e9)
}

/// `--op par`: does a copy on one core slow down a copy on the other?
/// What pipelining a message (the sender copying in while the receiver
/// copies out) can gain at most. Each core alone, then both at once.
fn par(size: usize, secs: f64, rounds: usize, cores: (usize, usize)) -> Result<()> {
    println!(
        "memcpy of {} on each core, GB/s: alone (core A, core B) | both at once",
        name(size)
    );
    for _ in 0..rounds {
        let a = thread::spawn(move || copy_rate(cores.0, size, secs))
            .join()
            .map_err(|_| "panicked")??;
        let b = thread::spawn(move || copy_rate(cores.1, size, secs))
            .join()
            .map_err(|_| "panicked")??;
        let ha = thread::spawn(move || copy_rate(cores.0, size, secs));
        let hb = thread::spawn(move || copy_rate(cores.1, size, secs));
        let ta = ha.join().map_err(|_| "panicked")??;
        let tb = hb.join().map_err(|_| "panicked")??;
        println!(
            "  {a:6.2} {b:6.2} | {ta:6.2} {tb:6.2}  (both: {:.2}x one alone)",
            (ta + tb) / a.max(b)
        );
    }
    Ok(())
}

/// One direction of a round trip, split from the fill and the checksum:
/// the transmit call and the receive call alone.
trait Xfer: Send {
    /// The message buffer to fill (the stream's carries its length word
    /// in front, as `Framed` does).
    fn tx_buf(&mut self) -> &mut [u8];
    fn tx(&mut self) -> Result<()>;
    fn rx(&mut self) -> Result<&[u8]>;
}

struct ShmX {
    conn: shmsock::Connection,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl Xfer for ShmX {
    fn tx_buf(&mut self) -> &mut [u8] {
        &mut self.tx
    }
    fn tx(&mut self) -> Result<()> {
        self.conn.send(&self.tx)?;
        Ok(())
    }
    fn rx(&mut self) -> Result<&[u8]> {
        let n = self.conn.recv_into(&mut self.rx)?;
        Ok(&self.rx[..n])
    }
}

struct StreamX {
    r: BufReader<UnixStream>,
    w: UnixStream,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl Xfer for StreamX {
    fn tx_buf(&mut self) -> &mut [u8] {
        &mut self.tx[8..]
    }
    fn tx(&mut self) -> Result<()> {
        let len = (self.tx.len() - 8) as u64;
        self.tx[..8].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&self.tx)?;
        Ok(())
    }
    fn rx(&mut self) -> Result<&[u8]> {
        let mut hdr = [0u8; 8];
        self.r.read_exact(&mut hdr)?;
        let n = u64::from_le_bytes(hdr) as usize;
        self.r.read_exact(&mut self.rx[..n])?;
        Ok(&self.rx[..n])
    }
}

fn make_x(c: &Cfg, size: usize) -> Result<(Box<dyn Xfer>, Box<dyn Xfer>)> {
    if c.mode == Mode::Stream {
        let (a, b) = UnixStream::pair()?;
        let x = |s: UnixStream| -> Result<Box<dyn Xfer>> {
            Ok(Box::new(StreamX {
                r: BufReader::with_capacity(64 << 10, s.try_clone()?),
                w: s,
                tx: vec![0; size + 8],
                rx: vec![0; size],
            }))
        };
        return Ok((x(a)?, x(b)?));
    }
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut builder = Builder::new()
        .ring_capacity(c.ring as u64)
        .wait(c.wait)
        .futex_wakeups(c.futex);
    if c.frag != 0 {
        builder = builder.fragment_size(c.frag);
    }
    if c.pipe != 0 {
        builder = builder.pipeline_threshold(c.pipe);
    }
    let b2 = builder.clone();
    let h = thread::spawn(move || b2.accept_socket(b));
    let ca = builder.connect_socket(a)?;
    let cb = h.join().map_err(|_| "accept panicked")??;
    let x = |conn| -> Box<dyn Xfer> {
        Box::new(ShmX {
            conn,
            tx: vec![0; size],
            rx: vec![0; size],
        })
    };
    Ok((x(ca), x(cb)))
}

/// Phase names of `--op phases`, in the order of a round trip.
const PHASES: [&str; 9] = [
    "A fill",
    "A send",
    "A->B tail",
    "B check",
    "B fill",
    "B send",
    "B->A tail",
    "A check",
    "round trip",
];

/// `n` timed round trips; per round trip the duration of each of
/// [`PHASES`] in ns.
fn phases(
    pair: (Box<dyn Xfer>, Box<dyn Xfer>),
    n: usize,
    cores: (usize, usize),
) -> Result<Vec<[u64; 9]>> {
    let (mut a, mut b) = pair;
    let epoch = Arc::new(Instant::now());
    let e2 = Arc::clone(&epoch);
    let ns = move |e: &Instant| e.elapsed().as_nanos() as u64;
    // B: per round trip, received (whole), checked, filled, sent.
    let h = thread::spawn(move || -> std::result::Result<Vec<[u64; 4]>, String> {
        pin::pin_to(cores.1).map_err(|e| e.to_string())?;
        let mut t = Vec::with_capacity(n + 1);
        for i in 0..=n {
            let m = b.rx().map_err(|e| e.to_string())?;
            let r = ns(&e2);
            pattern::verify(m, i as u64, m.len()).map_err(|e| e.to_string())?;
            t.push([r, ns(&e2), 0, 0]);
            pattern::fill(b.tx_buf(), i as u64 + 1_000_000);
            let f = ns(&e2);
            b.tx().map_err(|e| e.to_string())?;
            let last = t.len() - 1;
            t[last][2] = f;
            t[last][3] = ns(&e2);
        }
        Ok(t)
    });
    pin::pin_to(cores.0)?;
    let mut ta = Vec::with_capacity(n + 1);
    for i in 0..=n {
        let t0 = ns(&epoch);
        pattern::fill(a.tx_buf(), i as u64);
        let t1 = ns(&epoch);
        a.tx()?;
        let t2 = ns(&epoch);
        let m = a.rx()?;
        let t3 = ns(&epoch);
        pattern::verify(m, i as u64 + 1_000_000, m.len())?;
        let t4 = ns(&epoch);
        ta.push([t0, t1, t2, t3, t4]);
    }
    let tb = h.join().map_err(|_| "echo panicked")??;
    // Round trip 0 warms up.
    Ok(ta
        .iter()
        .zip(tb.iter())
        .skip(1)
        .map(|(a, b)| {
            let d = |x: u64, y: u64| x.saturating_sub(y);
            [
                d(a[1], a[0]),
                d(a[2], a[1]),
                d(b[0], a[2]),
                d(b[1], b[0]),
                d(b[2], b[1]),
                d(b[3], b[2]),
                d(a[3], b[3]),
                d(a[4], a[3]),
                d(a[4], a[0]),
            ]
        })
        .collect())
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let mut size = 16 << 10;
    let mut rings = vec![64 << 10, 256 << 10, 1 << 20];
    let mut frags = vec![0];
    let mut modes = vec![Mode::Stream, Mode::Send];
    let mut rounds = 3;
    let mut secs = 0.3f64;
    let mut wait = WaitStrategy::Block;
    let mut futex = false;
    let mut op_rtt = false;
    let mut op_par = false;
    let mut op_phases = false;
    let mut pipes = vec![0];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or("missing value")?;
        match a.as_str() {
            "--size" => size = parse_size(&v)?,
            "--rings" => rings = list(&v)?,
            "--frags" => frags = list(&v)?,
            "--modes" => modes = v.split(',').map(mode).collect::<Result<_>>()?,
            "--rounds" => rounds = v.parse()?,
            "--secs" => secs = v.parse()?,
            "--futex" => futex = v == "1",
            "--pipe" => {
                pipes = v
                    .split(',')
                    .map(|p| {
                        if p == "off" {
                            Ok(usize::MAX)
                        } else {
                            parse_size(p)
                        }
                    })
                    .collect::<Result<_>>()?
            }
            "--op" => {
                op_rtt = v == "rtt";
                op_par = v == "par";
                op_phases = v == "phases";
            }
            "--wait" => {
                wait = match v.as_str() {
                    "spin" => WaitStrategy::Spin,
                    "adaptive" => WaitStrategy::default(),
                    _ => WaitStrategy::Block,
                }
            }
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let cores = pin::two_cores()?.ok_or("needs two cores")?;
    if op_par {
        return par(size, secs, rounds, cores);
    }
    let restore = pin::current()?;
    let mut cfgs = Vec::new();
    for &m in &modes {
        if m == Mode::Stream {
            cfgs.push((
                "stream".to_string(),
                Cfg {
                    mode: m,
                    ring: 0,
                    frag: 0,
                    wait,
                    futex,
                    pipe: 0,
                },
            ));
            continue;
        }
        for &r in &rings {
            for &f in &frags {
                for &p in &pipes {
                    let fl = if f == 0 { "q".into() } else { name(f) };
                    let pl = match p {
                        0 => String::new(),
                        usize::MAX => " pipe off".into(),
                        p => format!(" pipe {}", name(p)),
                    };
                    cfgs.push((
                        format!("{m:?} ring {} frag {fl}{pl}", name(r)),
                        Cfg {
                            mode: m,
                            ring: r,
                            frag: f,
                            wait,
                            futex,
                            pipe: p,
                        },
                    ));
                }
            }
        }
    }
    // Messages (or round trips) per measurement: about `secs` at 2 GB/s
    // one way, or at 20 µs + 1 ns/B a round trip.
    let n = if op_rtt {
        (secs / (20e-6 + size as f64 * 1e-9)).ceil().max(8.0) as u64
    } else {
        ((secs * 2e9) / size as f64).ceil().max(8.0) as u64
    };
    if op_phases {
        if modes.contains(&Mode::Zc) {
            return Err("--op phases times the copying modes only (stream, send)".into());
        }
        let n = (secs / (20e-6 + size as f64 * 1e-9)).ceil().max(8.0) as usize;
        // Per configuration, per round: the median of each phase.
        let mut med: Vec<Vec<[u64; 9]>> = (0..cfgs.len()).map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (i, (_, c)) in cfgs.iter().enumerate() {
                let t = phases(make_x(c, size)?, n, cores)?;
                let mut m = [0u64; 9];
                for (k, slot) in m.iter_mut().enumerate() {
                    *slot = median(t.iter().map(|r| r[k]).collect());
                }
                med[i].push(m);
                pin::restore(&restore)?;
            }
        }
        println!(
            "phases of a {} round trip, µs: median over rounds of each round's median \
             ({n} round trips x {rounds} rounds); then the stream's round trip p50 over \
             this one's, median (range) of the rounds",
            name(size)
        );
        print!("  {:<28}", "");
        for p in PHASES {
            print!(" {p:>10}");
        }
        println!();
        let stream = cfgs.iter().position(|c| c.1.mode == Mode::Stream);
        for ((label, _), m) in cfgs.iter().zip(med.iter()) {
            print!("  {label:<28}");
            for k in 0..9 {
                print!(
                    " {:>10.1}",
                    median(m.iter().map(|r| r[k]).collect()) as f64 / 1e3
                );
            }
            if let Some(si) = stream {
                // Per round, the stream's p50 over this one's.
                let mut r: Vec<f64> = med[si]
                    .iter()
                    .zip(m.iter())
                    .map(|(st, x)| st[8] as f64 / x[8] as f64)
                    .collect();
                r.sort_by(|a, b| a.total_cmp(b));
                print!(
                    "  {:.2}x ({:.2}-{:.2})",
                    r[r.len() / 2],
                    r[0],
                    r[r.len() - 1]
                );
            }
            println!();
        }
        return Ok(());
    }
    let mut res: Vec<Vec<Sample>> = (0..cfgs.len()).map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, c)) in cfgs.iter().enumerate() {
            let pair = make(c, size)?;
            let s = if op_rtt {
                rtt(pair, size, n, cores)?
            } else {
                one_way(pair, size, n, cores)?
            };
            res[i].push(s);
            pin::restore(&restore)?;
        }
    }
    let unit = if op_rtt { "p50 µs" } else { "GB/s" };
    println!(
        "{} {} ({n} per measurement x {rounds} rounds; median {unit} (range); per message: \
         voluntary / involuntary context switches and CPU µs, sender | receiver{})",
        if op_rtt { "round trip" } else { "one way" },
        name(size),
        if op_rtt { " (A = measuring side)" } else { "" },
    );
    let stream = cfgs.iter().position(|c| c.1.mode == Mode::Stream).map(|i| {
        let mut v: Vec<f64> = res[i].iter().map(|s| s.value).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    });
    for ((label, _), v) in cfgs.iter().zip(res.iter_mut()) {
        v.sort_by(|a, b| a.value.total_cmp(&b.value));
        let m = &v[v.len() / 2];
        let lo = v[0].value;
        let hi = v[v.len() - 1].value;
        let x = stream
            .map(|s| {
                let r = if op_rtt { s / m.value } else { m.value / s };
                format!("{r:5.2}x stream")
            })
            .unwrap_or_default();
        let per = |u: Usage| {
            format!(
                "{:5.2} {:5.2} {:6.2}",
                u.vcsw as f64 / m.n as f64,
                u.icsw as f64 / m.n as f64,
                u.cpu_ns as f64 / m.n as f64 / 1e3
            )
        };
        println!(
            "  {label:<28} {:8.2} ({lo:7.2}-{hi:7.2}) {x}   {} | {}",
            m.value,
            per(m.tx),
            per(m.rx)
        );
    }
    let _ = Duration::ZERO;
    Ok(())
}
