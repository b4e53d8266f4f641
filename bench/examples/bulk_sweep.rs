//! Bulk-payload sweep (issue 10, bulk targets): one-way throughput of large
//! messages between two threads pinned to two cores, for a grid of ring
//! capacities and fragment sizes, next to a Unix stream and a plain memcpy
//! of the same size, all measured interleaved in one run (ratios within a
//! run are what counts on a shared machine).
//!
//! ```text
//! cargo run --release -p shmsock-bench --example bulk_sweep -- \
//!     [--sizes 1M,16M] [--rings 256K,1M,4M] [--frags 0,64K,256K] [--modes send,zc,raw]
//!     [--rounds 3] [--secs 0.5] [--wait adaptive|spin|block]
//! ```
//!
//! `--frags 0` is the default fragment size (a quarter of the ring); other
//! values go through `Builder::fragment_size`. Modes: `send` (fill every
//! byte, `send`; the receiver `recv_into` a reused buffer and checksums every
//! byte, as `bench`'s copying rows do), `zc` (`write_message`, filled in the
//! ring; the receiver checksums the reassembled message, as `bench`'s zero
//! copy rows do), `zs` (`write_message`; the receiver reads piece by piece
//! with `read_message`, as `bench`'s streamed rows do), `raw` (`send` of a pre-filled buffer, `recv_into`, no fill
//! and no checksum: the transport alone), `stream` (a Unix stream with the
//! bench's framing, fill and checksum), `streamraw` (the stream without fill
//! or checksum). The memcpy rows copy `size` bytes from one private buffer
//! to another in one thread (`memcpy`) and the same with the fill and the
//! checksum around it (`memcpy+fc`: what a copying transport's two copies
//! cost at best in one thread).

use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use shmsock::{Builder, Connection, WaitStrategy};
use shmsock_bench::child::Result;
use shmsock_bench::link::{Framed, Link, ShmCopy, ShmStreamed, ShmZeroCopy};
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

/// A raw link: `send` of a pre-filled buffer, `recv_into`, no checksum.
struct Raw {
    conn: Connection,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl Link for Raw {
    fn send(&mut self, _seq: u64, len: usize) -> Result<()> {
        self.conn.send(&self.tx[..len])?;
        Ok(())
    }
    fn recv(&mut self, _seq: u64, len: usize) -> Result<()> {
        let n = self.conn.recv_into(&mut self.rx)?;
        if n != len {
            return Err(format!("raw: got {n} bytes, want {len}").into());
        }
        Ok(())
    }
}

/// A Unix stream without fill or checksum.
struct StreamRaw {
    s: UnixStream,
    tx: Vec<u8>,
    rx: Vec<u8>,
}

impl Link for StreamRaw {
    fn send(&mut self, _seq: u64, len: usize) -> Result<()> {
        use std::io::Write;
        self.s.write_all(&self.tx[..len])?;
        Ok(())
    }
    fn recv(&mut self, _seq: u64, len: usize) -> Result<()> {
        use std::io::Read;
        self.s.read_exact(&mut self.rx[..len])?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Send,
    Zc,
    Zs,
    Raw,
    Stream,
    StreamRaw,
}

fn mode(s: &str) -> Result<Mode> {
    Ok(match s {
        "send" => Mode::Send,
        "zc" => Mode::Zc,
        "zs" => Mode::Zs,
        "raw" => Mode::Raw,
        "stream" => Mode::Stream,
        "streamraw" => Mode::StreamRaw,
        _ => return Err(format!("unknown mode {s}").into()),
    })
}

fn filled(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern::fill(&mut v, 7);
    v
}

type Pair = (Box<dyn Link + Send>, Box<dyn Link + Send>);

fn make(mode: Mode, size: usize, ring: usize, frag: usize, wait: WaitStrategy) -> Result<Pair> {
    let (a, b) = UnixStream::pair()?;
    match mode {
        Mode::Stream => {
            let a2 = a.try_clone()?;
            let b2 = b.try_clone()?;
            return Ok((
                Box::new(Framed::new(a, a2, size)),
                Box::new(Framed::new(b, b2, size)),
            ));
        }
        Mode::StreamRaw => {
            return Ok((
                Box::new(StreamRaw {
                    s: a,
                    tx: filled(size),
                    rx: filled(size),
                }),
                Box::new(StreamRaw {
                    s: b,
                    tx: filled(size),
                    rx: filled(size),
                }),
            ))
        }
        _ => {}
    }
    drop((a, b));
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let mut builder = Builder::new().ring_capacity(ring as u64).wait(wait);
    if frag != 0 {
        builder = builder.fragment_size(frag);
    }
    let b2 = builder.clone();
    let h = thread::spawn(move || b2.accept_socket(b));
    let ca = builder.connect_socket(a)?;
    let cb = h.join().map_err(|_| "accept panicked")??;
    Ok(match mode {
        Mode::Send => (
            Box::new(ShmCopy::new(ca, size)),
            Box::new(ShmCopy::new(cb, size)),
        ),
        Mode::Zc => (
            Box::new(ShmZeroCopy::new(ca, size)),
            Box::new(ShmZeroCopy::new(cb, size)),
        ),
        Mode::Zs => (
            Box::new(ShmStreamed::new(ca, size)),
            Box::new(ShmStreamed::new(cb, size)),
        ),
        _ => (
            Box::new(Raw {
                conn: ca,
                tx: filled(size),
                rx: filled(size),
            }),
            Box::new(Raw {
                conn: cb,
                tx: filled(size),
                rx: filled(size),
            }),
        ),
    })
}

/// GB/s of `n` one-way messages of `size` bytes, sender on `c0`,
/// receiver on `c1`.
fn one_way(pair: Pair, size: usize, n: u64, cores: (usize, usize)) -> Result<f64> {
    let (mut tx, mut rx) = pair;
    let h = thread::spawn(move || -> std::result::Result<(), String> {
        pin::pin_to(cores.1).map_err(|e| e.to_string())?;
        // One warm-up message, then the timed ones.
        rx.recv_stream(0, n + 1, size).map_err(|e| e.to_string())
    });
    pin::pin_to(cores.0)?;
    tx.send(0, size)?;
    let t = Instant::now();
    tx.send_stream(1, n, size)?;
    h.join().map_err(|_| "receiver panicked")??;
    let dt = t.elapsed();
    Ok((n as f64 * size as f64) / dt.as_secs_f64() / 1e9)
}

/// Copies `src` into `dst` (same length, 16-aligned dst) with
/// non-temporal stores.
#[cfg(target_arch = "x86_64")]
fn copy_nt(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    assert_eq!(dst.len(), src.len());
    assert_eq!(dst.as_ptr() as usize % 16, 0);
    let n = dst.len() / 16;
    for i in 0..n {
        // SAFETY: i * 16 + 16 <= len for both; dst is 16-aligned.
        unsafe {
            let v = _mm_loadu_si128(src.as_ptr().add(i * 16).cast::<__m128i>());
            _mm_stream_si128(dst.as_mut_ptr().add(i * 16).cast::<__m128i>(), v);
        }
    }
    dst[n * 16..].copy_from_slice(&src[n * 16..]);
    // SAFETY: sfence has no preconditions.
    unsafe { _mm_sfence() };
}

fn memcpy(size: usize, secs: f64, fc: bool) -> f64 {
    memcpy_with(size, secs, fc, false)
}

fn memcpy_with(size: usize, secs: f64, fc: bool, nt: bool) -> f64 {
    let mut a = filled(size);
    let mut b = filled(size);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < secs || n < 2 {
        if fc {
            pattern::fill(&mut a, n);
        }
        if nt {
            copy_nt(&mut b, &a);
        } else {
            b.copy_from_slice(&a);
        }
        if fc {
            std::hint::black_box(pattern::checksum(&b));
        }
        n += 1;
    }
    (n as f64 * size as f64) / t.elapsed().as_secs_f64() / 1e9
}

fn main() -> Result<()> {
    let mut sizes = vec![1 << 20, 16 << 20];
    let mut rings = vec![256 << 10, 1 << 20, 4 << 20];
    let mut frags = vec![0];
    let mut modes = vec![Mode::Send, Mode::Stream];
    let mut rounds = 3;
    let mut secs = 0.5f64;
    let mut wait = WaitStrategy::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or("missing value")?;
        match a.as_str() {
            "--sizes" => sizes = list(&v)?,
            "--rings" => rings = list(&v)?,
            "--frags" => frags = list(&v)?,
            "--modes" => modes = v.split(',').map(mode).collect::<Result<_>>()?,
            "--rounds" => rounds = v.parse()?,
            "--secs" => secs = v.parse()?,
            "--wait" => {
                wait = match v.as_str() {
                    "spin" => WaitStrategy::Spin,
                    "block" => WaitStrategy::Block,
                    _ => WaitStrategy::default(),
                }
            }
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let cores = pin::two_cores()?.ok_or("needs two cores")?;
    let restore = pin::current()?;
    for &size in &sizes {
        // Every configuration of this size: (label, mode, ring, frag).
        let mut cfgs = Vec::new();
        for &m in &modes {
            match m {
                Mode::Stream | Mode::StreamRaw => cfgs.push((format!("{m:?}"), m, 0, 0)),
                _ => {
                    for &r in &rings {
                        for &f in &frags {
                            if f != 0 && (f >= r / 2 || size <= r / 2) {
                                continue;
                            }
                            let fl = if f == 0 { "q".into() } else { name(f) };
                            cfgs.push((format!("{m:?} ring {} frag {fl}", name(r)), m, r, f));
                        }
                    }
                }
            }
        }
        let mut res: Vec<Vec<f64>> = vec![Vec::new(); cfgs.len() + 4];
        // Messages per measurement: about `secs` at 4 GB/s.
        let n = ((secs * 4e9) / size as f64).ceil().max(4.0) as u64;
        for _ in 0..rounds {
            for (i, (_, m, r, f)) in cfgs.iter().enumerate() {
                let pair = make(*m, size, *r, *f, wait)?;
                res[i].push(one_way(pair, size, n, cores)?);
                pin::restore(&restore)?;
            }
            pin::pin_to(cores.0)?;
            res[cfgs.len()].push(memcpy(size, secs / 2.0, false));
            res[cfgs.len() + 1].push(memcpy(size, secs / 2.0, true));
            res[cfgs.len() + 2].push(memcpy_with(size, secs / 2.0, false, true));
            res[cfgs.len() + 3].push(memcpy_with(size, secs / 2.0, true, true));
            pin::restore(&restore)?;
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let labels: Vec<String> = cfgs
            .iter()
            .map(|c| c.0.clone())
            .chain([
                "memcpy".into(),
                "memcpy+fill+checksum".into(),
                "memcpy NT stores".into(),
                "memcpy NT+fill+checksum".into(),
            ])
            .collect();
        let stream = cfgs
            .iter()
            .position(|c| matches!(c.1, Mode::Stream))
            .map(|i| med(&mut res[i].clone()));
        println!(
            "size {} ({} msgs x {rounds} rounds, median GB/s, range)",
            name(size),
            n
        );
        for (l, v) in labels.iter().zip(res.iter_mut()) {
            let lo = v.iter().cloned().fold(f64::MAX, f64::min);
            let hi = v.iter().cloned().fold(0.0, f64::max);
            let m = med(v);
            let x = stream
                .map(|s| format!("{:5.2}x stream", m / s))
                .unwrap_or_default();
            println!("  {l:<32} {m:7.2} ({lo:5.2}-{hi:5.2}) {x}");
        }
    }
    let _ = Duration::ZERO;
    Ok(())
}
