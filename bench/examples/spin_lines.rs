//! What a 64 B round trip costs in cache-line transfers: protocols that move
//! different numbers of lines per direction, ping-ponged between two pinned
//! processes, interleaved round by round with the machine's one-line floor
//! and with the real shm ring, so that "a protocol that must move N lines
//! per direction costs X ns here" is a same-run number
//! (`docs/performance.md`, "Spin round trip against the floor").
//!
//! ```text
//! cargo build --release -p shmsock-bench --example spin_lines
//! target/release/examples/spin_lines [ROUNDS] [ROUND_TRIPS_PER_ROUND] [VARIANT,...]
//! ```
//!
//! Variants (each direction has its own 64 KiB data area, as a ring has):
//!
//! - `floor`: one shared word, ping-ponged (what `bench` calls the
//!   cache-line floor): 1 line per direction.
//! - `cursor`: the ring's line pattern without its software: the writer
//!   writes an 8 B header and 64 B of payload at its position, then stores
//!   its cursor (on a line of its own, Release); the reader spins on the
//!   cursor, then loads the header and copies the payload, then stores its
//!   own `head` (a line the writer reads once per lap). Cursor line, then
//!   the record's lines (72 B: two lines, the header's first).
//! - `cursor_fence`: `cursor` plus what symmetric fences add per message:
//!   a SeqCst fence after each cursor store and after each `head` store,
//!   each followed by a load of the peer's park word (never written here).
//! - `cursor_touch`: `cursor`, but the spinning reader also loads the
//!   header word of the record it waits for (discarding it), so that the
//!   record's line travels while it waits for the cursor's.
//! - `seq`: no cursor on the data path: the header word carries the
//!   message's sequence number, written last (Release); the reader spins on
//!   it. One line per direction for the header and the first 56 payload
//!   bytes, a second for the rest.
//! - `cursor_dep`: `cursor`, but the copy's length comes from the header
//!   word, as a real reader's must: the payload's second line is requested
//!   only once the header's line has arrived.
//! - `ring` / `ring_asym`: the real `shmsock_shm` ring (`try_push` /
//!   `try_read` + `copy_to` + release) with symmetric fences (the default,
//!   what `Spin` runs) or asymmetric ones (a compiler fence on the hot
//!   path; nobody parks here, so no membarrier is needed).
//! - `ring_rd` / `ring_rd_asym` / `ring_rdpoll`: a raw writer (the ring's
//!   byte format, none of its code) and the ring's reader (symmetric,
//!   asymmetric fences; `ring_rdpoll` spins on the raw `tail` word and
//!   calls the reader only once it moved); `ring_wr`: the ring's writer
//!   and a raw reader. They tell which half's code is on the critical path.
//! - `transport`: a whole `Connection` (`WaitStrategy::Spin`, 64 KiB rings,
//!   `send` / `recv_into`), what `bench` calls "shmsock Spin send";
//!   `transport_asym`: the same with `Builder::asymmetric_fences(true)` on
//!   both sides.
//! - `stream`, `batch32` (and `_asym`): one-way throughput of 64 B
//!   messages over those connections, `send` / `recv_into` one at a time
//!   or `send_batch` / `recv_batch` 32 at a time; one sample per round
//!   (ns per message).
//!
//! Each line of the table: p10/p50/p90 of all samples, p50 over the
//! floor's p50, and the median [range] over the rounds of the round's p50
//! over the same round's floor p50 (the more robust number on a busy host,
//! whose cross-core speed swings from minute to minute).
//!
//! Every round trip is timed with `Instant::now()`, as `bench` times both
//! its floor and its transports, so the clock read is in every sample.

// A probe: any failure is a bug to surface loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::spin_loop;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shmsock::shm::ring::{self, Consumer, Fences, Producer, RingMemory};
use shmsock::shm::{Segment, SegmentOptions};
use shmsock_bench::{child, pin};

const LEN: usize = 64;
const REC: u64 = 8 + LEN as u64;
/// Data area per direction (what `bench` gives a 64 B Spin row).
const CAP: u64 = 64 << 10;
/// One direction's block: 4 header lines of 128 B, then the data area.
const DIR: u64 = 512 + CAP;
const CURSOR: u64 = 0;
const HEAD: u64 = 128;
const PARK: u64 = 256;
/// The control block (after both directions).
const CTL: u64 = 2 * DIR;
const STOP: u64 = u64::MAX;

const NAMES: [&str; 18] = [
    "floor",
    "cursor",
    "cursor_fence",
    "cursor_touch",
    "seq",
    "ring",
    "ring_asym",
    "ring_rd",
    "ring_wr",
    "ring_rdpoll",
    "ring_rd_asym",
    "cursor_dep",
    "transport",
    "transport_asym",
    "stream",
    "stream_asym",
    "batch32",
    "batch32_asym",
];

/// First one-way streaming variant: these time a whole round of `per`
/// messages (one sample per round, in ns per message).
const STREAM0: usize = 14;

struct Shared {
    seg: Segment,
}

impl Shared {
    fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.seg.len() as u64);
        // SAFETY: in bounds and 8-aligned (asserted); the mapping lives as
        // long as `self`; both processes use the word only through atomics.
        unsafe { AtomicU64::from_ptr(self.seg.as_ptr().add(off as usize).cast()) }
    }
    fn ptr(&self, off: u64) -> *mut u8 {
        assert!(off + LEN as u64 <= self.seg.len() as u64);
        // SAFETY: in bounds (asserted).
        unsafe { self.seg.as_ptr().add(off as usize) }
    }
}

/// One direction of the raw protocols, as one side sees it.
struct Dir {
    base: u64,
    /// Messages so far (the sequence of `seq`).
    n: u64,
    /// Position (monotonic), 72 B records, a record never wraps.
    pos: u64,
}

impl Dir {
    fn new(base: u64) -> Self {
        Dir { base, n: 0, pos: 0 }
    }
    /// Offset in the segment of the record at `pos`, advancing `pos`.
    fn next(&mut self) -> (u64, u64) {
        let mut off = self.pos % CAP;
        if off + REC > CAP {
            self.pos += CAP - off;
            off = 0;
        }
        let at = self.base + 512 + off;
        self.pos += REC;
        self.n += 1;
        (at, self.pos)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Raw {
    Cursor,
    CursorFence,
    CursorTouch,
    Seq,
    /// `cursor`, but the copy's length comes from the header word (as a
    /// real reader's must): the payload's second line is loaded only once
    /// the header's line has arrived.
    CursorDep,
}

fn raw_send(sh: &Shared, d: &mut Dir, peer: &Dir, v: Raw, buf: &[u8; LEN]) {
    let (at, end) = d.next();
    // SAFETY: `at + 8 + LEN` lies in this direction's data area; the
    // reader has consumed the previous lap (ping-pong: one message in
    // flight).
    unsafe { sh.ptr(at + 8).copy_from_nonoverlapping(buf.as_ptr(), LEN) };
    if at == d.base + 512 {
        // Once per lap, the space check reads the reader's head.
        let _ = sh.word(d.base + HEAD).load(Ordering::Acquire);
    }
    if v == Raw::Seq {
        sh.word(at).store(d.n << 32 | LEN as u64, Ordering::Release);
    } else {
        sh.word(at).store(LEN as u64, Ordering::Relaxed);
        sh.word(d.base + CURSOR).store(end, Ordering::Release);
        if v == Raw::CursorFence {
            fence(Ordering::SeqCst);
            let _ = sh.word(peer.base + PARK).load(Ordering::Relaxed);
        }
    }
}

fn raw_recv(sh: &Shared, d: &mut Dir, own: &Dir, v: Raw, buf: &mut [u8; LEN]) {
    let (at, end) = d.next();
    if v == Raw::Seq {
        let want = d.n << 32 | LEN as u64;
        while sh.word(at).load(Ordering::Acquire) != want {
            spin_loop();
        }
    } else {
        let cursor = sh.word(d.base + CURSOR);
        loop {
            if cursor.load(Ordering::Acquire) >= end {
                break;
            }
            if v == Raw::CursorTouch {
                std::hint::black_box(sh.word(at).load(Ordering::Relaxed));
            }
            spin_loop();
        }
        let h = sh.word(at).load(Ordering::Relaxed);
        assert!(h <= LEN as u64);
        if v == Raw::CursorDep {
            // SAFETY: in bounds (h <= LEN); published (Acquire above).
            unsafe {
                buf.as_mut_ptr()
                    .copy_from_nonoverlapping(sh.ptr(at + 8), h as usize)
            };
        }
    }
    if v != Raw::CursorDep {
        // SAFETY: in bounds; published (Acquire above).
        unsafe {
            buf.as_mut_ptr()
                .copy_from_nonoverlapping(sh.ptr(at + 8), LEN)
        };
    }
    sh.word(d.base + HEAD).store(end, Ordering::Release);
    if v == Raw::CursorFence {
        fence(Ordering::SeqCst);
        let _ = sh.word(own.base + PARK).load(Ordering::Relaxed);
    }
}

struct RingPair {
    prod: Producer,
    cons: Consumer,
}

fn ring_send(r: &mut RingPair, buf: &[u8; LEN]) {
    loop {
        if let Some(w) = r.prod.try_push(buf).unwrap() {
            let _ = w.redeem(|| Ok::<(), ()>(()));
            return;
        }
    }
}

/// `ring_rdpoll`: spins on the raw `tail` word of `seg` until it moves
/// past `seen`, then reads with the ring.
fn ring_recv_poll(r: &mut RingPair, seg: &Segment, buf: &mut [u8; LEN]) {
    // SAFETY: `tail` at offset 128 of a live ring segment; atomics only.
    let tail = unsafe { AtomicU64::from_ptr(seg.as_ptr().add(128).cast()) };
    let seen = r.cons.position();
    while tail.load(Ordering::Acquire) == seen {
        spin_loop();
    }
    ring_recv(r, buf);
}

fn ring_recv(r: &mut RingPair, buf: &mut [u8; LEN]) {
    loop {
        if let Some(g) = r.cons.try_read().unwrap() {
            g.copy_to(buf);
            let _ = g.release().redeem(|| Ok::<(), ()>(()));
            return;
        }
        spin_loop();
    }
}

/// A raw half of a real ring segment (its format, none of its code):
/// `tail` at 128, `head` at 256, data at 1024, 8 B record headers,
/// padding records at the wrap.
struct RawRing {
    seg: Arc<Segment>,
    pos: u64,
}

impl RawRing {
    fn word(&self, off: u64) -> &AtomicU64 {
        // SAFETY: 8-aligned offsets inside the segment (callers), which
        // lives as long as `self`; atomics only.
        unsafe { AtomicU64::from_ptr(self.seg.as_ptr().add(off as usize).cast()) }
    }
    fn send(&mut self, buf: &[u8; LEN]) {
        let mut off = self.pos % CAP;
        if CAP - off < REC {
            self.word(1024 + off)
                .store((CAP - off - 8) | 1 << 63, Ordering::Relaxed);
            self.pos += CAP - off;
            off = 0;
        }
        // SAFETY: in the data area; the reader released the previous lap.
        unsafe {
            self.seg
                .as_ptr()
                .add((1024 + off + 8) as usize)
                .copy_from_nonoverlapping(buf.as_ptr(), LEN)
        };
        self.word(1024 + off).store(LEN as u64, Ordering::Relaxed);
        self.pos += REC;
        self.word(128).store(self.pos, Ordering::Release);
    }
    fn recv(&mut self, buf: &mut [u8; LEN]) {
        while self.word(128).load(Ordering::Acquire) == self.pos {
            spin_loop();
        }
        let mut off = self.pos % CAP;
        let mut h = self.word(1024 + off).load(Ordering::Relaxed);
        if h >> 63 != 0 {
            self.pos += CAP - off;
            off = 0;
            h = self.word(1024).load(Ordering::Relaxed);
        }
        assert_eq!(h, LEN as u64);
        // SAFETY: in the data area, published (Acquire above).
        unsafe {
            buf.as_mut_ptr()
                .copy_from_nonoverlapping(self.seg.as_ptr().add((1024 + off + 8) as usize), LEN)
        };
        self.pos += REC;
        self.word(256).store(self.pos, Ordering::Release);
    }
}

/// One side's state of every variant.
struct Side {
    tx: Dir,
    rx: Dir,
    ring: RingPair,
    /// `ring_rd`: the parent writes raw, the child reads with the ring
    /// (and the other way back); `ring_wr`: the ring writes, raw reads.
    rd: (RawRing, RingPair),
    /// The segment the `rd` pair reads from.
    rd_seg: Arc<Segment>,
    wr: (RingPair, RawRing),
    /// `transport`: a whole connection, `WaitStrategy::Spin`, 64 KiB rings
    /// (what `bench` measures as "shmsock Spin send").
    conn: Option<shmsock::Connection>,
    /// The same with `Builder::asymmetric_fences(true)` on both sides.
    conn_asym: Option<shmsock::Connection>,
    rxv: Vec<u8>,
    floor_next: u64,
}

const RAW: [Raw; 4] = [Raw::Cursor, Raw::CursorFence, Raw::CursorTouch, Raw::Seq];

fn raw_of(v: usize) -> Raw {
    if v == 11 {
        Raw::CursorDep
    } else {
        RAW[v - 1]
    }
}

impl Side {
    fn fences(&mut self, v: usize) {
        let f = if v == 6 {
            Fences::Asymmetric
        } else {
            Fences::Symmetric
        };
        self.ring.prod.set_fences(f);
        self.ring.cons.set_fences(f);
        let f = if v == 10 {
            Fences::Asymmetric
        } else {
            Fences::Symmetric
        };
        self.rd.1.cons.set_fences(f);
    }

    /// Parent: sends first. `v` is the variant index.
    fn ping(&mut self, sh: &Shared, v: usize, seq: u64) {
        let mut buf = [seq as u8; LEN];
        match v {
            0 => {
                let w = sh.word(CTL + 128);
                w.store(self.floor_next, Ordering::Release);
                while w.load(Ordering::Acquire) != self.floor_next + 1 {
                    spin_loop();
                }
                self.floor_next += 2;
            }
            1..=4 | 11 => {
                let raw = raw_of(v);
                raw_send(sh, &mut self.tx, &self.rx, raw, &buf);
                raw_recv(sh, &mut self.rx, &self.tx, raw, &mut buf);
            }
            7 | 10 => {
                self.rd.0.send(&buf);
                ring_recv(&mut self.rd.1, &mut buf);
            }
            12 | 13 => {
                let c = if v == 12 {
                    &mut self.conn
                } else {
                    &mut self.conn_asym
                };
                let c = c.as_mut().unwrap();
                c.send(&buf).unwrap();
                let n = c.recv_into(&mut self.rxv).unwrap();
                buf.copy_from_slice(&self.rxv[..n]);
            }
            9 => {
                self.rd.0.send(&buf);
                ring_recv_poll(&mut self.rd.1, &self.rd_seg, &mut buf);
            }
            8 => {
                ring_send(&mut self.wr.0, &buf);
                self.wr.1.recv(&mut buf);
            }
            _ => {
                ring_send(&mut self.ring, &buf);
                ring_recv(&mut self.ring, &mut buf);
            }
        }
        assert_eq!(buf[LEN - 1], seq as u8);
    }

    /// Streaming variants: the connection (sym/asym) and whether batched.
    fn stream_conn(&mut self, v: usize) -> (&mut shmsock::Connection, bool) {
        let asym = (v - STREAM0) % 2 == 1;
        let batch = v >= STREAM0 + 2;
        let c = if asym {
            &mut self.conn_asym
        } else {
            &mut self.conn
        };
        (c.as_mut().unwrap(), batch)
    }

    /// Parent: sends `n` messages one way (one at a time or 32 per batch).
    fn stream_send(&mut self, v: usize, n: u64) {
        let (c, batch) = self.stream_conn(v);
        let msg = [7u8; LEN];
        if batch {
            let all = [&msg[..]; 32];
            let mut left = n as usize;
            while left > 0 {
                let k = left.min(32);
                left -= c.send_batch(&all[..k]).unwrap();
            }
        } else {
            for _ in 0..n {
                c.send(&msg).unwrap();
            }
        }
    }

    /// Child: receives `n` messages.
    fn stream_recv(&mut self, v: usize, n: u64) {
        let mut rxv = std::mem::take(&mut self.rxv);
        let (c, batch) = self.stream_conn(v);
        let mut got = 0u64;
        let mut sum = 0u64;
        while got < n {
            if batch {
                got += c.recv_batch(32, |m| sum += u64::from(m[LEN - 1])).unwrap() as u64;
            } else {
                c.recv_into(&mut rxv).unwrap();
                sum += u64::from(rxv[LEN - 1]);
                got += 1;
            }
        }
        assert_eq!(sum, 7 * n);
        self.rxv = rxv;
    }

    /// Child: answers.
    fn pong(&mut self, sh: &Shared, v: usize) {
        let mut buf = [0u8; LEN];
        match v {
            0 => {
                let w = sh.word(CTL + 128);
                while w.load(Ordering::Acquire) != self.floor_next {
                    spin_loop();
                }
                w.store(self.floor_next + 1, Ordering::Release);
                self.floor_next += 2;
            }
            1..=4 | 11 => {
                let raw = raw_of(v);
                raw_recv(sh, &mut self.rx, &self.tx, raw, &mut buf);
                raw_send(sh, &mut self.tx, &self.rx, raw, &buf);
            }
            7 | 10 => {
                ring_recv(&mut self.rd.1, &mut buf);
                self.rd.0.send(&buf);
            }
            9 => {
                ring_recv_poll(&mut self.rd.1, &self.rd_seg, &mut buf);
                self.rd.0.send(&buf);
            }
            12 | 13 => {
                let c = if v == 12 {
                    &mut self.conn
                } else {
                    &mut self.conn_asym
                };
                let c = c.as_mut().unwrap();
                let n = c.recv_into(&mut self.rxv).unwrap();
                buf.copy_from_slice(&self.rxv[..n]);
                c.send(&buf).unwrap();
            }
            8 => {
                self.wr.1.recv(&mut buf);
                ring_send(&mut self.wr.0, &buf);
            }
            _ => {
                ring_recv(&mut self.ring, &mut buf);
                ring_send(&mut self.ring, &buf);
            }
        }
    }
}

fn ring_mem(seg: Arc<Segment>) -> Arc<dyn RingMemory> {
    seg
}

/// The child's command loop: `CTL` holds `round << 8 | variant` (or STOP),
/// `CTL + 8` the round trips; the child acknowledges at `CTL + 64`.
fn serve(sh: &Shared, side: &mut Side) -> child::Result<()> {
    let mut last = 0;
    loop {
        let cmd = loop {
            let c = sh.word(CTL).load(Ordering::Acquire);
            if c != last {
                break c;
            }
            spin_loop();
        };
        if cmd == STOP {
            return Ok(());
        }
        last = cmd;
        let v = (cmd & 0xff) as usize;
        let n = sh.word(CTL + 8).load(Ordering::Relaxed);
        side.fences(v);
        if v >= STREAM0 {
            side.stream_recv(v, n);
        } else {
            for _ in 0..n {
                side.pong(sh, v);
            }
        }
        sh.word(CTL + 64).store(cmd, Ordering::Release);
    }
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args.next().map_or(10, |s| s.parse().expect("rounds"));
    let per: u64 = args.next().map_or(20_000, |s| s.parse().expect("count"));
    // Optional: the variants to run (comma-separated names; the floor
    // always runs).
    let only: Option<String> = args.next();
    let run = |v: usize| {
        v == 0
            || only
                .as_ref()
                .is_none_or(|o| o.split(',').any(|n| n == NAMES[v]))
    };
    let (c0, c1) = pin::two_cores().unwrap().expect("two cores");
    let opts = SegmentOptions {
        populate: true,
        ..SegmentOptions::default()
    };
    let sh = Shared {
        seg: Segment::create(c"spin-lines", CTL + 4096, opts).unwrap(),
    };
    // Two real rings: A (parent → child), B (child → parent); each half's
    // words in the ring's own segment (one mapping, inherited by the fork).
    let (seg_a, prod_a) = ring::create_segment(c"spin-lines-a", CAP, opts).unwrap();
    let (seg_b, prod_b) = ring::create_segment(c"spin-lines-b", CAP, opts).unwrap();
    let cons_a = Consumer::attach(ring_mem(seg_a.clone()), ring_mem(seg_a.clone())).unwrap();
    let cons_b = Consumer::attach(ring_mem(seg_b.clone()), ring_mem(seg_b.clone())).unwrap();
    // ring_rd: C (parent → child: raw writer, ring reader), D (child →
    // parent: raw writer, ring reader). ring_wr: E, F (ring writers, raw
    // readers).
    let pair = |name: &std::ffi::CStr| {
        let (seg, prod) = ring::create_segment(name, CAP, opts).unwrap();
        let cons = Consumer::attach(ring_mem(seg.clone()), ring_mem(seg.clone())).unwrap();
        (seg, prod, cons)
    };
    let (seg_c, _prod_c, cons_c) = pair(c"spin-lines-c");
    let (seg_d, _prod_d, cons_d) = pair(c"spin-lines-d");
    let (seg_e, prod_e, _cons_e) = pair(c"spin-lines-e");
    let (seg_f, prod_f, _cons_f) = pair(c"spin-lines-f");
    let raw = |seg: &Arc<Segment>| RawRing {
        seg: seg.clone(),
        pos: 0,
    };
    let mut side = Side {
        tx: Dir::new(0),
        rx: Dir::new(DIR),
        ring: RingPair {
            prod: prod_a,
            cons: cons_b,
        },
        rd: (
            raw(&seg_c),
            RingPair {
                prod: _prod_d,
                cons: cons_d,
            },
        ),
        wr: (
            RingPair {
                prod: prod_e,
                cons: _cons_f,
            },
            raw(&seg_f),
        ),
        rd_seg: seg_d.clone(),
        conn: None,
        conn_asym: None,
        rxv: Vec::with_capacity(LEN),
        floor_next: 1,
    };
    let child_rd = (raw(&seg_d), cons_c, _prod_c);
    let child_wr = (prod_f, raw(&seg_e), _cons_e);
    let (sock_a, sock_b) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let (asym_a, asym_b) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let builder = |asym: bool| {
        shmsock::Builder::new()
            .ring_capacity(CAP)
            .wait(shmsock::WaitStrategy::Spin)
            .asymmetric_fences(asym)
    };
    let (child, (sock_a, asym_a)) = child::fork_with(
        (sock_a, asym_a),
        (prod_b, cons_a, child_rd, child_wr, (sock_b, asym_b)),
        Some(c1),
        |(prod, cons, rd, wr, (sock_b, asym_b))| {
            let mut side = Side {
                tx: Dir::new(DIR),
                rx: Dir::new(0),
                ring: RingPair { prod, cons },
                rd: (
                    rd.0,
                    RingPair {
                        prod: rd.2,
                        cons: rd.1,
                    },
                ),
                wr: (
                    RingPair {
                        prod: wr.0,
                        cons: wr.2,
                    },
                    wr.1,
                ),
                rd_seg: seg_c.clone(),
                conn: Some(builder(false).connect_socket(sock_b).unwrap()),
                conn_asym: Some(builder(true).connect_socket(asym_b).unwrap()),
                rxv: Vec::with_capacity(LEN),
                floor_next: 1,
            };
            serve(&sh, &mut side)
        },
    )
    .unwrap();
    side.conn = Some(builder(false).accept_socket(sock_a).unwrap());
    side.conn_asym = Some(builder(true).accept_socket(asym_a).unwrap());
    println!(
        "transport_asym runs asymmetric fences: {}",
        side.conn_asym.as_ref().unwrap().asymmetric_fences()
    );
    pin::pin_to(c0).unwrap();
    let nv = NAMES.len();
    let mut all: Vec<Vec<u64>> = vec![Vec::new(); nv];
    let mut per_round: Vec<Vec<u64>> = vec![Vec::new(); nv];
    let mut seq = 0u64;
    for round in 0..rounds {
        for k in 0..nv {
            let v = (k + round as usize) % nv;
            if !run(v) {
                continue;
            }
            let cmd = (round + 1) << 8 | v as u64;
            sh.word(CTL + 8).store(per, Ordering::Relaxed);
            sh.word(CTL).store(cmd, Ordering::Release);
            side.fences(v);
            let mut samples = Vec::with_capacity(per as usize);
            if v >= STREAM0 {
                let t0 = Instant::now();
                side.stream_send(v, per);
                while sh.word(CTL + 64).load(Ordering::Acquire) != cmd {
                    spin_loop();
                }
                let ns = t0.elapsed().as_nanos() as u64 / per;
                per_round[v].push(ns);
                all[v].push(ns);
                continue;
            }
            let mut prev = Instant::now();
            for _ in 0..per {
                side.ping(&sh, v, seq);
                seq += 1;
                let now = Instant::now();
                samples.push((now - prev).as_nanos() as u64);
                prev = now;
            }
            while sh.word(CTL + 64).load(Ordering::Acquire) != cmd {
                spin_loop();
            }
            per_round[v].push(pct(&mut samples, 0.5));
            all[v].extend_from_slice(&samples);
        }
    }
    sh.word(CTL).store(STOP, Ordering::Release);
    child.wait(std::time::Duration::from_secs(10)).unwrap();
    let floor = pct(&mut all[0], 0.5) as f64;
    println!("{rounds} rounds x {per} round trips per variant, interleaved; p50 over all samples");
    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>8}  {:>20}",
        "variant", "p10", "p50", "p90", "x floor", "round p50/floor p50"
    );
    for v in (0..nv).filter(|&v| run(v)) {
        if v >= STREAM0 {
            let mut r = per_round[v].clone();
            r.sort_unstable();
            let m = r[r.len() / 2].max(1);
            println!(
                "{:<14} one-way, ns per message over the rounds: median {} [{}-{}] = {:.1} M msg/s",
                NAMES[v],
                m,
                r[0],
                r[r.len() - 1],
                1e3 / m as f64
            );
            continue;
        }
        let p50 = pct(&mut all[v], 0.5);
        let ratios: Vec<f64> = per_round[v]
            .iter()
            .zip(&per_round[0])
            .map(|(&a, &f)| a as f64 / f as f64)
            .collect();
        let mut r = ratios.clone();
        r.sort_by(f64::total_cmp);
        println!(
            "{:<14} {:>7} {:>7} {:>7} {:>8.2}  {:>5.2} [{:.2}-{:.2}]",
            NAMES[v],
            pct(&mut all[v], 0.1),
            p50,
            pct(&mut all[v], 0.9),
            p50 as f64 / floor,
            r[r.len() / 2],
            r[0],
            r[r.len() - 1],
        );
    }
    drop((seg_a, seg_b));
}
