//! Where a paced round trip's time goes (issue 10: "Adaptive in the
//! sleeping-peer scenario: round trip p50 ≤ 0.6x the unix stream's"): a
//! client thread sleeps `think` before each 64 B request, a server thread
//! answers it; neither is pinned. Each variant gives the client and the
//! server their own wait strategy, so that "the client spins for its reply
//! while the server sleeps" (one wake-up per round trip) can be told apart
//! from "both sleep" (two). Variants are interleaved per round; every byte
//! is written and checked.
//!
//! ```text
//! cargo run --release -p shmsock-bench --example paced_probe -- \
//!     [--think-us 200] [--n 2000] [--rounds 3] [--variants stream,aa,bb,sb,ab]
//!     [--ring BYTES]
//! ```
//!
//! Variants (client/server): `stream` (the bench's framed Unix stream), `aa`
//! Adaptive/Adaptive (the default), `bb` Block/Block, `sb` Spin/Block, `ab`
//! Adaptive/Block, `sa` Spin/Adaptive; and the floor of a futex wake-up, no
//! payload, no shmsock: `ff` (both sleep on a futex word), `sf` (the client
//! spins for the reply, the server sleeps), with `m` the words in a shared
//! memfd mapping (as shmsock's are) instead of the heap, with `t` every
//! sleep has a 20 ms timeout (as shmsock's futex slice has): `ffmt`, `sfmt`.
//!
//! Prints p50/p99, the CPU both threads spent per request
//! (`getrusage(RUSAGE_THREAD)`), the medians of when, counted from the start
//! of the client's send, the send returned, the server had the request, its
//! reply's send returned and the client had the reply, and how often the
//! server answered on the CPU the client had sent from (Linux woke it there).

use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use shmsock::{Builder, WaitStrategy};
use shmsock_bench::child::Result;
use shmsock_bench::link::{Framed, Link, ShmCopy};

const SIZE: usize = 64;

/// `--ring BYTES` (0: the default capacity).
static RING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Nanoseconds since the probe started (one clock for both threads).
fn now_ns() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Per request: client before send, after send, after recv; server after
/// recv, after send.
/// The last entry: 1 if the server answered on the client's CPU.
type Phases = Vec<[u64; 6]>;

fn on_cpu() -> u64 {
    // SAFETY: no preconditions.
    unsafe { libc::sched_getcpu() as u64 }
}

fn merge(c: Vec<[u64; 4]>, s: Vec<[u64; 3]>) -> Phases {
    c.into_iter()
        .zip(s)
        .map(|(c, s)| [c[0], c[1], s[0], s[1], c[2], u64::from(c[3] == s[2])])
        .collect()
}

fn cpu_ns() -> i64 {
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() * 1_000_000_000 + tv.tv_usec() * 1000;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => 0,
    }
}

fn wait(c: char) -> Result<WaitStrategy> {
    Ok(match c {
        'a' => WaitStrategy::default(),
        'b' => WaitStrategy::Block,
        's' => WaitStrategy::Spin,
        _ => return Err(format!("unknown wait {c}").into()),
    })
}

type Pair = (Box<dyn Link + Send>, Box<dyn Link + Send>);

fn make(v: &str) -> Result<Pair> {
    if v == "stream" {
        let (a, b) = UnixStream::pair()?;
        let a2 = a.try_clone()?;
        let b2 = b.try_clone()?;
        return Ok((
            Box::new(Framed::new(a, a2, SIZE)),
            Box::new(Framed::new(b, b2, SIZE)),
        ));
    }
    let mut cs = v.chars();
    let (c, s) = match (cs.next(), cs.next(), cs.next()) {
        (Some(c), Some(s), None) => (wait(c)?, wait(s)?),
        _ => return Err(format!("unknown variant {v}").into()),
    };
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let ring = RING.load(std::sync::atomic::Ordering::Relaxed);
    let builder = |w| {
        let b = Builder::new().wait(w);
        if ring == 0 {
            b
        } else {
            b.ring_capacity(ring)
        }
    };
    let sb = builder(s);
    let h = thread::spawn(move || sb.accept_socket(b));
    let ca = builder(c).connect_socket(a)?;
    let cb = h.join().map_err(|_| "accept panicked")??;
    Ok((
        Box::new(ShmCopy::new(ca, SIZE)),
        Box::new(ShmCopy::new(cb, SIZE)),
    ))
}

/// The floor of a wake-up: two futex words, no payload. `sf`: the client
/// spins for the reply while the server sleeps (one wake-up per round
/// trip); `ff`: both sleep (two).
mod raw {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Sleeps with a 20 ms timeout, as shmsock's futex slice does.
    pub static TIMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    fn wait(w: &AtomicU32, old: u32) {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        let t = if TIMED.load(Ordering::Relaxed) {
            &ts as *const libc::timespec
        } else {
            std::ptr::null()
        };
        // SAFETY: `w` is a live, aligned u32 for the call, `t` null or a
        // live timespec; FUTEX_WAIT only reads them.
        unsafe {
            libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAIT, old, t);
        }
    }

    fn wake(w: &AtomicU32) {
        // SAFETY: as above; FUTEX_WAKE does not touch the word.
        unsafe {
            libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, 1);
        }
    }

    /// A futex word (leaked: the probe is short-lived).
    pub type Word = &'static AtomicU32;

    /// Waits until `w` is no longer `old`.
    pub fn until_changed(w: Word, old: u32, spin: bool) {
        while w.load(Ordering::Acquire) == old {
            if spin {
                std::hint::spin_loop();
            } else {
                wait(w, old);
            }
        }
    }

    /// Bumps `w` and wakes its sleeper (always: the probe is a floor).
    pub fn bump(w: Word, spin_reader: bool) {
        w.fetch_add(1, Ordering::Release);
        if !spin_reader {
            wake(w);
        }
    }

    /// Two words on the heap (`shared` false) or in a shared memfd mapping,
    /// as shmsock's are (`shared`).
    pub fn pair(shared: bool) -> (Word, Word) {
        if !shared {
            return (
                Box::leak(Box::new(AtomicU32::new(0))),
                Box::leak(Box::new(AtomicU32::new(0))),
            );
        }
        // SAFETY: a fresh memfd of 8 KiB mapped shared and never unmapped;
        // the two words are 4 KiB apart, aligned, zero-filled by the
        // kernel, and only ever accessed atomically.
        unsafe {
            let fd = libc::memfd_create(c"probe".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0 && libc::ftruncate(fd, 8192) == 0);
            let p = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert!(p != libc::MAP_FAILED);
            (
                &*(p as *const AtomicU32),
                &*((p as *const u8).add(4096) as *const AtomicU32),
            )
        }
    }
}

fn raw_round(
    client_spins: bool,
    shared: bool,
    n: u64,
    think: Duration,
) -> Result<(Vec<u64>, i64, Phases)> {
    let (req, rep) = raw::pair(shared);
    let (req2, rep2) = (req, rep);
    let server = thread::spawn(move || {
        let t0 = cpu_ns();
        let mut ph = Vec::new();
        for i in 0..(n + 5) as u32 {
            raw::until_changed(req2, i, false);
            let a = now_ns();
            raw::bump(rep2, client_spins);
            if i >= 5 {
                ph.push([a, now_ns(), on_cpu()]);
            }
        }
        (cpu_ns() - t0, ph)
    });
    let mut ph = Vec::new();
    let mut samples = Vec::with_capacity(n as usize);
    let mut cpu = 0;
    for i in 0..(n + 5) as u32 {
        thread::sleep(think);
        if i == 5 {
            cpu = cpu_ns();
        }
        let c0 = on_cpu();
        let t = Instant::now();
        let a = now_ns();
        raw::bump(req, false);
        let b = now_ns();
        raw::until_changed(rep, i, client_spins);
        if i >= 5 {
            samples.push(t.elapsed().as_nanos() as u64);
            ph.push([a, b, now_ns(), c0]);
        }
    }
    cpu = cpu_ns() - cpu;
    let (scpu, sph) = server.join().map_err(|_| "server panicked")?;
    Ok((samples, cpu + scpu, merge(ph, sph)))
}

/// One round of `n` paced round trips: (samples in ns, CPU ns of both).
fn round(v: &str, n: u64, think: Duration) -> Result<(Vec<u64>, i64, Phases)> {
    raw::TIMED.store(v.contains('t'), std::sync::atomic::Ordering::Relaxed);
    if v.starts_with("ff") || v.starts_with("sf") {
        return raw_round(v.starts_with('s'), v.contains('m'), n, think);
    }
    let (mut c, mut s) = make(v)?;
    let server = thread::spawn(move || -> Result<(i64, Vec<[u64; 3]>)> {
        let t0 = cpu_ns();
        let mut ph = Vec::new();
        for i in 0..n + 5 {
            s.recv(i, SIZE)?;
            let a = now_ns();
            s.send(i, SIZE)?;
            if i >= 5 {
                ph.push([a, now_ns(), on_cpu()]);
            }
        }
        Ok((cpu_ns() - t0, ph))
    });
    let mut ph = Vec::new();
    let mut samples = Vec::with_capacity(n as usize);
    let mut cpu = 0;
    for i in 0..n + 5 {
        thread::sleep(think);
        if i == 5 {
            cpu = cpu_ns();
        }
        let c0 = on_cpu();
        let t = Instant::now();
        let a = now_ns();
        c.send(i, SIZE)?;
        let b = now_ns();
        c.recv(i, SIZE)?;
        if i >= 5 {
            samples.push(t.elapsed().as_nanos() as u64);
            ph.push([a, b, now_ns(), c0]);
        }
    }
    cpu = cpu_ns() - cpu;
    let (scpu, sph) = server.join().map_err(|_| "server panicked")??;
    Ok((samples, cpu + scpu, merge(ph, sph)))
}

fn main() -> Result<()> {
    let mut think_us = 200u64;
    let mut n = 2000u64;
    let mut rounds = 3usize;
    let mut variants = "stream,aa,bb,sb,ab".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--think-us" => think_us = val()?.parse()?,
            "--n" => n = val()?.parse()?,
            "--rounds" => rounds = val()?.parse()?,
            "--variants" => variants = val()?,
            "--ring" => RING.store(val()?.parse()?, std::sync::atomic::Ordering::Relaxed),
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let vs: Vec<&str> = variants.split(',').collect();
    let think = Duration::from_micros(think_us);
    let mut all = vec![(Vec::new(), 0i64); vs.len()];
    let mut phases: Vec<Phases> = vec![Vec::new(); vs.len()];
    for r in 0..rounds {
        for k in 0..vs.len() {
            let i = (k + r) % vs.len();
            let (s, cpu, ph) = round(vs[i], n, think)?;
            all[i].0.extend(s);
            all[i].1 += cpu;
            phases[i].extend(ph);
        }
    }
    let mut base = None;
    println!("think {think_us} us, {n} x {rounds} round trips, 64 B, not pinned");
    println!(
        "variant   p50 us   p99 us   p50 vs stream   CPU/req us   \
         | p50 us since send: sent  served  replied  back"
    );
    for (i, v) in vs.iter().enumerate() {
        let (s, cpu) = &mut all[i];
        s.sort_unstable();
        let p = |q: f64| s[((s.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        let (p50, p99) = (p(0.5), p(0.99));
        if *v == "stream" {
            base = Some(p50);
        }
        let ratio = base.map_or(f64::NAN, |b| p50 / b);
        let per = *cpu as f64 / s.len() as f64 / 1000.0;
        let med = |k: usize| {
            let mut d: Vec<u64> = phases[i]
                .iter()
                .map(|p| p[k + 1].saturating_sub(p[0]))
                .collect();
            d.sort_unstable();
            d.get(d.len() / 2).map_or(f64::NAN, |&x| x as f64 / 1000.0)
        };
        let same = phases[i].iter().filter(|p| p[5] == 1).count() as f64
            / phases[i].len().max(1) as f64
            * 100.0;
        println!(
            "{v:8} {p50:8.1} {p99:8.1}   {ratio:13.2}   {per:10.1}   | {:10.1} {:8.1} {:6.1} {:6.1} | same CPU {same:3.0} %",
            med(0),
            med(1),
            med(2),
            med(3)
        );
    }
    Ok(())
}
