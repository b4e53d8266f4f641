//! A peer written from `docs/protocol.md` and `docs/shm-layout.md` ALONE.
//!
//! Outside reviewers will write their own peer from the docs; this binary is
//! that peer, written first. Nothing here uses shmsock's encoders: the
//! handshake bytes, the memfd and its seals, the ring header, the record
//! framing (length word, tags, padding, fragments), the cursors and the
//! wake-ups are all built by hand from the documented numbers below. The
//! other side is the real shmsock `Listener` (and, in one case, the real
//! client `Builder::connect` against this peer acting as the server).
//!
//! Every wait of the docs peer is a documented park (socket kind, bit 63 of
//! the park word clear) followed by a sleep on the socket: if the real side
//! owes a wake-up and does not send it, the peer's generous watchdog (10 s)
//! fails the case. A wrong offset, tag, seal or byte in the docs (or here)
//! makes the handshake fail or the bytes differ.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;
use shmsock_testkit::peer::{
    add_seals, raw_connect, raw_send, send_signal, seqpacket_pair, signal_pair, unique_path,
    wait_signal,
};

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::SealFlag;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags};
use shmsock::wire::RejectReason;
use shmsock::{Builder, Error};

// ---------------------------------------------------------------------
// The documented numbers (protocol.md §1-2, §7; shm-layout.md).
// ---------------------------------------------------------------------

/// protocol.md §1: `PROTOCOL_MAGIC`, the 8 bytes "SHMSOCKP".
const MAGIC: &[u8; 8] = b"SHMSOCKP";
/// protocol.md title and §1: `PROTOCOL_VERSION`.
const VERSION: u32 = 3;
const KIND_HELLO: u8 = 1;
const KIND_WELCOME: u8 = 2;
const KIND_REJECT: u8 = 3;
const KIND_WAKE_DATA: u8 = 4;
const KIND_WAKE_SPACE: u8 = 5;
const HELLO_LEN: usize = 48;
const REJECT_LEN: usize = 24;
const WAKE_LEN: usize = 8;
/// protocol.md §2 Reject reasons.
const REASON_VERSION: u32 = 1;
const REASON_LIMITS: u32 = 3;
const REASON_MALFORMED: u32 = 4;

/// shm-layout.md, header table.
const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMSOCKR");
const RING_VERSION: u32 = 3;
const HEADER_SIZE: u64 = 1024;
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_HEADER_SIZE: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_TAIL: usize = 128;
const OFF_PRODUCER_CLOSED: usize = 136;
const OFF_HEAD: usize = 256;
const OFF_CONSUMER_CLOSED: usize = 264;
const OFF_READER_PARK: usize = 384;
const OFF_WRITER_PARK: usize = 512;
const OFF_DATA_WAKE: usize = 640;
const OFF_SPACE_WAKE: usize = 768;
const DATA: usize = 1024;
/// Park words: bit 63 says the parker wants a futex wake-up.
const PARK_FUTEX: u64 = 1 << 63;
/// Record header word: bit 63 is the padding flag, bits 48-62 reserved.
const FLAG_PAD: u64 = 1 << 63;
const RESERVED_BITS: u64 = 0x7fff << 48;
/// protocol.md §7 tags.
const TAG_INLINE: u16 = 0;
const TAG_FRAG_START: u16 = 2;
const TAG_FRAG: u16 = 3;
const TAG_FRAG_ABORT: u16 = 4;

/// How long the docs peer sleeps for a wake-up it is owed before it calls
/// the wake-up lost. Generous: the machine is busy.
const WAKE_WATCHDOG: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);

fn ring_seals() -> SealFlag {
    SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_FUTURE_WRITE
        | SealFlag::F_SEAL_SEAL
}

// ---------------------------------------------------------------------
// A mapping, read through raw pointers and atomics only.
// ---------------------------------------------------------------------

struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

impl Map {
    fn new(fd: &OwnedFd, len: usize, writable: bool) -> Map {
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a sealed (size-fixed) memfd of
        // at least `len` bytes; it aliases no Rust object.
        let p = unsafe {
            mmap(
                None,
                NonZeroUsize::new(len).unwrap(),
                prot,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .unwrap();
        Map { ptr: p.cast(), len }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: in bounds and 8-aligned (page-aligned base); shared memory
        // is only ever accessed through atomics here.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: as `u64_at`, 4-aligned.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }

    fn write(&self, off: usize, src: &[u8]) {
        assert!(off + src.len() <= self.len);
        // SAFETY: in bounds (checked); our own writable segment, bytes the
        // consumer does not read until we publish `tail`.
        unsafe {
            self.ptr
                .as_ptr()
                .add(off)
                .copy_from_nonoverlapping(src.as_ptr(), src.len())
        };
    }

    fn read(&self, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= self.len);
        // SAFETY: in bounds (checked); a copy out of shared memory through a
        // raw pointer, no reference to it is formed.
        unsafe {
            self.ptr
                .as_ptr()
                .add(off)
                .copy_to_nonoverlapping(dst.as_mut_ptr(), dst.len())
        };
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; nothing refers to it now.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

// ---------------------------------------------------------------------
// Segments (shm-layout.md "Segment rules", protocol.md §5 step 4).
// ---------------------------------------------------------------------

/// A documented ring segment: memfd, `1024 + cap` bytes, fully allocated,
/// mapped read-write, sealed, header initialised.
fn create_segment(cap: u64, seals: SealFlag) -> (OwnedFd, Map) {
    let len = HEADER_SIZE + cap;
    let fd = nix::sys::memfd::memfd_create(
        c"docs-peer-ring",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, len as i64).unwrap();
    nix::fcntl::fallocate(&fd, nix::fcntl::FallocateFlags::empty(), 0, len as i64).unwrap();
    let map = Map::new(&fd, len as usize, true);
    if !seals.is_empty() {
        add_seals(&fd, seals);
    }
    init_header(&map, cap);
    (fd, map)
}

/// shm-layout.md: `initialize` zeroes cursors, flags, park and wake words,
/// then writes capacity, header size, version and magic.
fn init_header(m: &Map, cap: u64) {
    for off in [OFF_TAIL, OFF_HEAD, OFF_READER_PARK, OFF_WRITER_PARK] {
        m.u64_at(off).store(0, Ordering::Relaxed);
    }
    for off in [
        OFF_PRODUCER_CLOSED,
        OFF_CONSUMER_CLOSED,
        OFF_DATA_WAKE,
        OFF_SPACE_WAKE,
    ] {
        m.u32_at(off).store(0, Ordering::Relaxed);
    }
    m.u64_at(OFF_CAPACITY).store(cap, Ordering::Relaxed);
    m.u32_at(OFF_HEADER_SIZE)
        .store(HEADER_SIZE as u32, Ordering::Relaxed);
    m.u32_at(OFF_VERSION).store(RING_VERSION, Ordering::Relaxed);
    m.u64_at(OFF_MAGIC).store(RING_MAGIC, Ordering::Relaxed);
}

/// protocol.md §5 "The validating attach": seals before size, regular file,
/// exact size, fully allocated, mapped read-only, header checked.
fn attach_peer_segment(fd: &OwnedFd, cap: u64) -> Map {
    let seals = SealFlag::from_bits_retain(
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap(),
    );
    let must = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
    assert!(seals.contains(must), "peer's seals {seals:?}");
    assert!(seals.intersects(SealFlag::F_SEAL_FUTURE_WRITE | SealFlag::F_SEAL_WRITE));
    let st = nix::sys::stat::fstat(fd).unwrap();
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(st.st_size as u64, HEADER_SIZE + cap, "peer segment size");
    assert!(st.st_blocks as u64 * 512 >= st.st_size as u64, "sparse");
    let m = Map::new(fd, (HEADER_SIZE + cap) as usize, false);
    assert_eq!(m.u64_at(OFF_MAGIC).load(Ordering::Relaxed), RING_MAGIC);
    assert_eq!(m.u32_at(OFF_VERSION).load(Ordering::Relaxed), RING_VERSION);
    assert_eq!(
        m.u32_at(OFF_HEADER_SIZE).load(Ordering::Relaxed),
        HEADER_SIZE as u32
    );
    assert_eq!(m.u64_at(OFF_CAPACITY).load(Ordering::Relaxed), cap);
    assert_eq!(m.u64_at(OFF_TAIL).load(Ordering::Relaxed), 0);
    m
}

// ---------------------------------------------------------------------
// Control messages (protocol.md §2-3), by hand.
// ---------------------------------------------------------------------

fn hello_bytes(kind: u8, version: u32, cap: u64, max_message: u64, flags: u32) -> [u8; HELLO_LEN] {
    let mut b = [0u8; HELLO_LEN];
    b[0] = kind;
    b[4..8].copy_from_slice(&version.to_le_bytes());
    b[8..16].copy_from_slice(MAGIC);
    b[16..24].copy_from_slice(&cap.to_le_bytes());
    b[24..32].copy_from_slice(&max_message.to_le_bytes());
    b[32..36].copy_from_slice(&flags.to_le_bytes());
    b
}

fn reject_bytes(reason: u32) -> [u8; REJECT_LEN] {
    let mut b = [0u8; REJECT_LEN];
    b[0] = KIND_REJECT;
    b[4..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(MAGIC);
    b[16..20].copy_from_slice(&reason.to_le_bytes());
    b
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// A decoded `Hello` or `Welcome`, checked per §3.
struct HelloMsg {
    cap: u64,
    max_message: u64,
}

fn parse_hello(b: &[u8], kind: u8) -> HelloMsg {
    assert_eq!(b.len(), HELLO_LEN, "length of kind {kind}: {b:?}");
    assert_eq!(b[0], kind, "{b:?}");
    assert_eq!(&b[1..4], &[0, 0, 0]);
    assert_eq!(le32(b, 4), VERSION);
    assert_eq!(&b[8..16], MAGIC);
    assert_eq!(le32(b, 32) & !1, 0, "undefined flag bits");
    assert!(b[36..48].iter().all(|&x| x == 0), "reserved 36..48");
    HelloMsg {
        cap: le64(b, 16),
        max_message: le64(b, 24),
    }
}

/// Checks a `Reject` byte by byte; returns its reason.
fn parse_reject(b: &[u8]) -> u32 {
    assert_eq!(b.len(), REJECT_LEN, "reject length: {b:?}");
    assert_eq!(b[0], KIND_REJECT, "{b:?}");
    assert_eq!(&b[1..4], &[0, 0, 0]);
    assert_eq!(le32(b, 4), VERSION, "the rejecting side's version");
    assert_eq!(&b[8..16], MAGIC);
    assert_eq!(&b[20..24], &[0, 0, 0, 0]);
    le32(b, 16)
}

/// The transport limits of §5 step 4.
fn limits_ok(h: &HelloMsg, max_peer_ring: u64) -> bool {
    h.cap.is_power_of_two()
        && (4096..=max_peer_ring.min(1 << 40)).contains(&h.cap)
        && (1..=i64::MAX as u64).contains(&h.max_message)
}

/// Whether `fd` is readable within `timeout`.
fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, Some(&ts)) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// One datagram and the fds that came with it (256-byte buffer, room for 4
/// fds, as §4 describes); `None` on EOF. Panics if nothing comes within
/// `timeout`.
fn recv_dgram(sock: &OwnedFd, timeout: Duration) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
    assert!(
        readable(sock.as_fd(), timeout),
        "no datagram within {timeout:?}"
    );
    let mut buf = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let r = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Ok(r) => break r,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::CONNRESET) => return None,
            Err(e) => panic!("recvmsg: {e}"),
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    assert!(!r.flags.contains(rustix::net::ReturnFlags::TRUNC));
    assert!(!r.flags.contains(rustix::net::ReturnFlags::CTRUNC));
    if r.bytes == 0 && fds.is_empty() {
        return None;
    }
    Some((buf[..r.bytes].to_vec(), fds))
}

/// Best-effort send of a wake-up datagram (§4: non-blocking, a full buffer
/// drops it).
fn send_wake(sock: &OwnedFd, kind: u8) {
    let mut b = [0u8; WAKE_LEN];
    b[0] = kind;
    match rustix::net::send(sock, &b, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
        Ok(_) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::PIPE) => {}
        Err(rustix::io::Errno::CONNRESET) => {}
        Err(e) => panic!("send wake-up: {e}"),
    }
}

// ---------------------------------------------------------------------
// The docs peer: one side of a connection.
// ---------------------------------------------------------------------

/// How the docs peer parks (bit 63 of its park words).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Park {
    /// Bit 63 clear: sleep on the socket, wake-up datagram wanted.
    Socket,
    /// Bit 63 set: sleep on the peer's wake word with `FUTEX_WAIT`.
    Futex,
}

struct Peer {
    /// Our segment: our ring and our consumer words of theirs.
    mine: Map,
    my_cap: u64,
    /// The peer's segment, read-only.
    theirs: Map,
    their_cap: u64,
    their_max_message: u64,
    /// The socket of the direction we produce: we send `WakeData`, read
    /// `WakeSpace`.
    out_sock: OwnedFd,
    /// The socket of the direction we consume: we read `WakeData`, send
    /// `WakeSpace`.
    in_sock: OwnedFd,
    park: Park,
    // Producer state.
    tail: u64,
    cached_head: u64,
    reader_woken: u64,
    writer_park_seq: u64,
    // Consumer state.
    head: u64,
    cached_tail: u64,
    writer_woken: u64,
    reader_park_seq: u64,
    /// Reassembly: (total, bytes so far).
    partial: Option<(u64, Vec<u8>)>,
    // What the real side did.
    wake_data_got: u64,
    wake_space_got: u64,
    futex_slices_timed_out: u64,
    eof: bool,
}

fn record_size(len: u64) -> u64 {
    8 + len.div_ceil(8) * 8
}

impl Peer {
    fn max_inline(&self) -> u64 {
        self.my_cap / 2 - 8
    }

    // ---- producer (ring in `mine`, consumer words in `theirs`) ----

    fn refresh_head(&mut self) {
        let h = self.theirs.u64_at(OFF_HEAD).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        assert!(h.is_multiple_of(8), "head misaligned: {h}");
        assert!(h >= self.cached_head, "head backwards");
        assert!(h <= self.tail, "head beyond tail");
        self.cached_head = h;
    }

    /// Waits until `need` bytes from `tail` are free, parking (documented
    /// protocol) when they are not.
    fn wait_room(&mut self, need: u64) {
        loop {
            if self.tail + need - self.cached_head <= self.my_cap {
                return;
            }
            self.refresh_head();
            if self.tail + need - self.cached_head <= self.my_cap {
                return;
            }
            // Park (protocol.md §8): the wake word first, then a new odd
            // value (Release), park fence, re-check, sleep.
            let w = self.theirs.u32_at(OFF_SPACE_WAKE).load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let s = self.writer_park_seq + 1;
            let word = s | if self.park == Park::Futex {
                PARK_FUTEX
            } else {
                0
            };
            self.mine
                .u64_at(OFF_WRITER_PARK)
                .store(word, Ordering::Release);
            fence(Ordering::SeqCst);
            self.refresh_head();
            if self.tail + need - self.cached_head > self.my_cap {
                self.sleep(true, w);
            }
            self.writer_park_seq = s + 1;
            self.mine
                .u64_at(OFF_WRITER_PARK)
                .store(s + 1, Ordering::Relaxed);
        }
    }

    /// Sleeps for the wake-up of a park episode: on the socket (one
    /// datagram) or on the peer's wake word.
    fn sleep(&mut self, writer: bool, wake_word: u32) {
        let (sock, want) = if writer {
            (&self.out_sock, KIND_WAKE_SPACE)
        } else {
            (&self.in_sock, KIND_WAKE_DATA)
        };
        if self.park == Park::Futex {
            let word = if writer {
                self.theirs.u32_at(OFF_SPACE_WAKE)
            } else {
                self.theirs.u32_at(OFF_DATA_WAKE)
            };
            // One 200 ms slice (§8); the caller re-checks the ring and parks
            // again. Shared futex: no FUTEX_PRIVATE_FLAG.
            let r = rustix::thread::futex::wait(
                word,
                rustix::thread::futex::Flags::empty(),
                wake_word,
                Some(&rustix::thread::futex::Timespec {
                    tv_sec: 0,
                    tv_nsec: 200_000_000,
                }),
            );
            match r {
                Ok(()) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                    if writer {
                        self.wake_space_got += 1;
                    } else {
                        self.wake_data_got += 1;
                    }
                }
                Err(rustix::io::Errno::TIMEDOUT) => {
                    self.futex_slices_timed_out += 1;
                    assert!(
                        self.futex_slices_timed_out < 300,
                        "futex-parked for a minute in all"
                    );
                    // The peer's death shows only on the socket.
                    if readable(sock.as_fd(), Duration::ZERO) {
                        match recv_dgram(sock, WAIT) {
                            None => self.eof = true,
                            Some((b, _)) => assert_eq!(b.first(), Some(&want), "{b:?}"),
                        }
                    }
                }
                Err(e) => panic!("futex wait: {e}"),
            }
            return;
        }
        if self.eof {
            return;
        }
        assert!(
            readable(sock.as_fd(), WAKE_WATCHDOG),
            "parked {} and no wake-up within {WAKE_WATCHDOG:?}",
            if writer { "writer" } else { "reader" }
        );
        match recv_dgram(sock, WAIT) {
            None => self.eof = true,
            Some((b, fds)) => {
                assert!(fds.is_empty());
                assert_eq!(b.len(), WAKE_LEN, "wake-up length {b:?}");
                assert_eq!(b[0], want, "wake-up kind on this socket: {b:?}");
                assert!(b[1..].iter().all(|&x| x == 0), "reserved {b:?}");
                if writer {
                    self.wake_space_got += 1;
                } else {
                    self.wake_data_got += 1;
                }
            }
        }
    }

    /// Writes one record (with padding before it if it would cross the end),
    /// publishes `tail` and wakes the reader if it is parked.
    fn write_record(&mut self, tag: u16, parts: &[&[u8]]) {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        assert!(len <= self.max_inline());
        let rs = record_size(len);
        let mask = self.my_cap - 1;
        let off = self.tail & mask;
        let to_end = self.my_cap - off;
        let pad = if rs > to_end { to_end } else { 0 };
        self.wait_room(pad + rs);
        let mut at = self.tail;
        if pad > 0 {
            self.mine
                .u64_at(DATA + off as usize)
                .store((to_end - 8) | FLAG_PAD, Ordering::Relaxed);
            at += pad;
        }
        let roff = DATA + (at & mask) as usize;
        let mut p = roff + 8;
        for part in parts {
            self.mine.write(p, part);
            p += part.len();
        }
        self.mine
            .u64_at(roff)
            .store(len | (u64::from(tag) << 32), Ordering::Relaxed);
        self.tail = at + rs;
        // Publish: Release orders the record before `tail`.
        self.mine
            .u64_at(OFF_TAIL)
            .store(self.tail, Ordering::Release);
        self.wake_reader();
    }

    fn wake_reader(&mut self) {
        fence(Ordering::SeqCst);
        let p = self.theirs.u64_at(OFF_READER_PARK).load(Ordering::Relaxed);
        if p & 1 == 1 && p != self.reader_woken {
            self.reader_woken = p;
            if p & PARK_FUTEX != 0 {
                // §8: Acquire after loading the owed park value, then the
                // bump (Release), then FUTEX_WAKE.
                fence(Ordering::Acquire);
                let w = self.mine.u32_at(OFF_DATA_WAKE);
                w.fetch_add(1, Ordering::Release);
                let _ = rustix::thread::futex::wake(
                    w,
                    rustix::thread::futex::Flags::empty(),
                    i32::MAX as u32,
                );
            } else {
                send_wake(&self.out_sock, KIND_WAKE_DATA);
            }
        }
    }

    /// Sends one message: inline up to `max_inline`, else fragments of a
    /// quarter ring (§9).
    fn send(&mut self, msg: &[u8]) {
        assert!(msg.len() as u64 <= self.their_max_message);
        if msg.len() as u64 <= self.max_inline() {
            self.write_record(TAG_INLINE, &[msg]);
            return;
        }
        let f = (self.my_cap / 4 - 8) as usize;
        let total = (msg.len() as u64).to_le_bytes();
        let first = f - 8;
        self.write_record(TAG_FRAG_START, &[&total, &msg[..first]]);
        for chunk in msg[first..].chunks(f) {
            self.write_record(TAG_FRAG, &[chunk]);
        }
    }

    /// Closes our direction (§10): `producer_closed = 1` after the last
    /// `tail`, a wake-up if the reader is parked.
    fn close(&mut self) {
        self.mine
            .u32_at(OFF_PRODUCER_CLOSED)
            .store(1, Ordering::Release);
        self.wake_reader();
        self.mine
            .u32_at(OFF_CONSUMER_CLOSED)
            .store(1, Ordering::Relaxed);
    }

    // ---- consumer (ring in `theirs`, consumer words in `mine`) ----

    fn refresh_tail(&mut self) {
        let t = self.theirs.u64_at(OFF_TAIL).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        assert!(t.is_multiple_of(8), "tail misaligned: {t}");
        assert!(t >= self.cached_tail, "tail backwards");
        assert!(t - self.head <= self.their_cap, "tail beyond capacity");
        self.cached_tail = t;
    }

    /// The next record (tag, payload), skipping padding; `None` if the ring
    /// is empty.
    fn try_record(&mut self) -> Option<(u16, Vec<u8>)> {
        let mask = self.their_cap - 1;
        loop {
            if self.head == self.cached_tail {
                self.refresh_tail();
                if self.head == self.cached_tail {
                    return None;
                }
            }
            let off = self.head & mask;
            let to_end = self.their_cap - off;
            let avail = self.cached_tail - self.head;
            let word = self
                .theirs
                .u64_at(DATA + off as usize)
                .load(Ordering::Relaxed);
            let len = word & 0xffff_ffff;
            if word & FLAG_PAD != 0 {
                assert_eq!(word >> 32, FLAG_PAD >> 32, "padding with tag bits");
                assert_eq!(len + 8, to_end, "padding not to the end");
                assert!(to_end < avail, "padding without a record after it");
                self.head += to_end;
                continue;
            }
            assert_eq!(word & RESERVED_BITS, 0, "reserved bits {word:#x}");
            assert!(len <= self.their_cap / 2 - 8, "record too long");
            let rs = record_size(len);
            assert!(rs <= to_end && rs <= avail, "record crosses end or tail");
            let tag = ((word >> 32) & 0xffff) as u16;
            let mut payload = vec![0u8; len as usize];
            self.theirs.read(DATA + off as usize + 8, &mut payload);
            self.head += rs;
            // Release: our reads of the record before the producer reuses it.
            self.mine
                .u64_at(OFF_HEAD)
                .store(self.head, Ordering::Release);
            self.wake_writer();
            return Some((tag, payload));
        }
    }

    fn wake_writer(&mut self) {
        fence(Ordering::SeqCst);
        let p = self.theirs.u64_at(OFF_WRITER_PARK).load(Ordering::Relaxed);
        // Hysteresis: only once at most half the ring is in use.
        if p & 1 == 1
            && p != self.writer_woken
            && self.cached_tail - self.head <= self.their_cap / 2
        {
            self.writer_woken = p;
            if p & PARK_FUTEX != 0 {
                // §8: Acquire after loading the owed park value, then the
                // bump (Release), then FUTEX_WAKE.
                fence(Ordering::Acquire);
                let w = self.mine.u32_at(OFF_SPACE_WAKE);
                w.fetch_add(1, Ordering::Release);
                let _ = rustix::thread::futex::wake(
                    w,
                    rustix::thread::futex::Flags::empty(),
                    i32::MAX as u32,
                );
            } else {
                send_wake(&self.in_sock, KIND_WAKE_SPACE);
            }
        }
    }

    fn producer_closed(&self) -> bool {
        let c = self
            .theirs
            .u32_at(OFF_PRODUCER_CLOSED)
            .load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        c != 0
    }

    /// Parks the reader (documented order): the wake word, odd park word
    /// (Release), fence, re-check; returns whether the ring is still empty
    /// (then the caller sleeps), with the wake word read before the park.
    fn park_reader(&mut self) -> (u64, u32, bool) {
        let w = self.theirs.u32_at(OFF_DATA_WAKE).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let s = self.reader_park_seq + 1;
        let word = s | if self.park == Park::Futex {
            PARK_FUTEX
        } else {
            0
        };
        self.mine
            .u64_at(OFF_READER_PARK)
            .store(word, Ordering::Release);
        fence(Ordering::SeqCst);
        self.refresh_tail();
        (s, w, self.head == self.cached_tail)
    }

    fn unpark_reader(&mut self, s: u64) {
        self.reader_park_seq = s + 1;
        self.mine
            .u64_at(OFF_READER_PARK)
            .store(s + 1, Ordering::Relaxed);
    }

    /// Receives one whole message; `None` once the peer closed its ring and
    /// it is empty.
    fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.try_record() {
                Some((tag, payload)) => {
                    if let Some(m) = self.take(tag, payload) {
                        return Some(m);
                    }
                }
                None => {
                    if self.producer_closed() {
                        self.refresh_tail();
                        if self.head == self.cached_tail {
                            assert!(self.partial.is_none(), "closed mid-message");
                            return None;
                        }
                        continue;
                    }
                    assert!(!self.eof, "peer's socket closed, ring not closed");
                    let (s, w, empty) = self.park_reader();
                    if empty {
                        self.sleep(false, w);
                    }
                    self.unpark_reader(s);
                }
            }
        }
    }

    /// The tag rules of §9.
    fn take(&mut self, tag: u16, payload: Vec<u8>) -> Option<Vec<u8>> {
        match (tag, self.partial.take()) {
            (TAG_INLINE, None) => Some(payload),
            (TAG_FRAG_START, None) => {
                assert!(payload.len() >= 8, "first fragment shorter than 8");
                let total = le64(&payload, 0);
                assert!(total > payload.len() as u64 - 8);
                self.partial = Some((total, payload[8..].to_vec()));
                None
            }
            (TAG_FRAG, Some((total, mut buf))) => {
                assert!(!payload.is_empty());
                buf.extend_from_slice(&payload);
                assert!(buf.len() as u64 <= total, "fragment past the total");
                if buf.len() as u64 == total {
                    Some(buf)
                } else {
                    self.partial = Some((total, buf));
                    None
                }
            }
            (TAG_FRAG_ABORT, Some(_)) => {
                assert!(payload.is_empty());
                None
            }
            (t, p) => panic!("record tag {t} out of place (assembling: {})", p.is_some()),
        }
    }
}

// ---------------------------------------------------------------------
// The handshake, both roles.
// ---------------------------------------------------------------------

const MY_MAX_MESSAGE: u64 = 64 << 20;

/// The client's steps 4-10 of §5 over a connected socket.
fn docs_connect(path: &str, cap: u64, park: Park) -> Peer {
    let sock = raw_connect(path);
    let (fd, mine) = create_segment(cap, ring_seals());
    let (b_c, b_s) = seqpacket_pair();
    let hello = hello_bytes(KIND_HELLO, VERSION, cap, MY_MAX_MESSAGE, 0);
    raw_send(sock.as_fd(), &hello, &[fd.as_fd(), b_s.as_fd()]);
    drop(b_s);
    drop(fd); // our mapping stays; the server holds its own copy
    let (b, mut fds) = recv_dgram(&sock, WAIT).expect("EOF instead of Welcome");
    if b.first() == Some(&KIND_REJECT) {
        panic!("rejected: reason {}", parse_reject(&b));
    }
    let w = parse_hello(&b, KIND_WELCOME);
    assert_eq!(fds.len(), 1, "Welcome carries one fd");
    assert!(limits_ok(&w, 64 << 20), "Welcome limits");
    let their_fd = fds.pop().unwrap();
    let theirs = attach_peer_segment(&their_fd, w.cap);
    drop(their_fd);
    Peer::new(mine, cap, theirs, w, sock, b_c, park)
}

impl Peer {
    fn new(
        mine: Map,
        my_cap: u64,
        theirs: Map,
        h: HelloMsg,
        out_sock: OwnedFd,
        in_sock: OwnedFd,
        park: Park,
    ) -> Peer {
        Peer {
            mine,
            my_cap,
            theirs,
            their_cap: h.cap,
            their_max_message: h.max_message,
            out_sock,
            in_sock,
            park,
            tail: 0,
            cached_head: 0,
            reader_woken: 0,
            writer_park_seq: 0,
            head: 0,
            cached_tail: 0,
            writer_woken: 0,
            reader_park_seq: 0,
            partial: None,
            wake_data_got: 0,
            wake_space_got: 0,
            futex_slices_timed_out: 0,
            eof: false,
        }
    }
}

/// The server's steps 3-8 of §5 on an accepted socket.
fn docs_accept(listener: &OwnedFd, cap: u64) -> Peer {
    let s = rustix::net::accept_with(listener, rustix::net::SocketFlags::CLOEXEC).unwrap();
    let (b, mut fds) = recv_dgram(&s, WAIT).expect("EOF instead of Hello");
    let h = parse_hello(&b, KIND_HELLO);
    assert_eq!(fds.len(), 2, "Hello carries two fds");
    assert!(limits_ok(&h, 64 << 20), "Hello limits");
    let back = fds.pop().unwrap();
    let ring_fd = fds.pop().unwrap();
    assert_eq!(
        rustix::net::sockopt::socket_domain(&back).unwrap(),
        rustix::net::AddressFamily::UNIX
    );
    assert_eq!(
        rustix::net::sockopt::socket_type(&back).unwrap(),
        rustix::net::SocketType::SEQPACKET
    );
    let theirs = attach_peer_segment(&ring_fd, h.cap);
    drop(ring_fd);
    let (fd, mine) = create_segment(cap, ring_seals());
    let welcome = hello_bytes(KIND_WELCOME, VERSION, cap, MY_MAX_MESSAGE, 0);
    raw_send(s.as_fd(), &welcome, &[fd.as_fd()]);
    drop(fd);
    // The accepted socket is the receiver's, the back channel the sender's.
    Peer::new(mine, cap, theirs, h, back, s, Park::Socket)
}

// ---------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------

/// Deterministic bytes for a message of `len` (every byte depends on `len`
/// and its index, so a shifted or stale byte shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8) ^ len.wrapping_mul(7)) as u8)
        .collect()
}

fn check_pattern(what: &str, m: &[u8], len: usize) {
    assert_eq!(m.len(), len, "{what}: length");
    if let Some(i) = m.iter().zip(pattern(len)).position(|(a, b)| *a != b) {
        panic!("{what}: byte {i} of {len} differs");
    }
}

const CLIENT_CAP: u64 = 64 << 10;
const SERVER_CAP: u64 = 16 << 10;

/// The message sizes of the echo cases, sent one at a time: empty, 64 B,
/// each side's inline maximum and one byte more, a multi-fragment message
/// of several MiB, and a run of odd sizes that wraps both rings many times
/// (padding records).
fn echo_sizes() -> Vec<usize> {
    let mut v = vec![
        0,
        64,
        (CLIENT_CAP / 2 - 8) as usize,
        (CLIENT_CAP / 2 - 7) as usize,
        (SERVER_CAP / 2 - 8) as usize,
        (SERVER_CAP / 2 - 7) as usize,
        (3 << 20) + 13,
    ];
    v.extend((0..200).map(|i| (i * 997) % 5000 + 1));
    v.push(0);
    v
}

/// Then a burst: all sent before the first echo is read, so several records
/// are in flight in each ring (fits both rings: no send blocks).
const BURST: usize = 24;

fn burst_size(i: usize) -> usize {
    i * 17 % 301
}

/// The real server side: echoes every message, checking each against the
/// pattern of its length, until the peer closes.
fn real_echo_server(l: &shmsock::Listener) {
    let mut c = l.accept().unwrap();
    let all = echo_sizes()
        .into_iter()
        .chain((0..BURST).map(burst_size))
        .enumerate();
    for (i, len) in all {
        let m = c.recv_timeout(WAIT).unwrap().to_vec();
        check_pattern(&format!("server, message {i}"), &m, len);
        c.send_timeout(&m, WAIT).unwrap();
    }
    match c.recv_timeout(WAIT) {
        Err(Error::Disconnected) => {}
        other => panic!("after the last message: {other:?}"),
    };
}

fn docs_client_echo(path: &str, park: Park) {
    let mut p = docs_connect(path, CLIENT_CAP, park);
    assert_eq!(p.their_cap, SERVER_CAP);
    for (i, len) in echo_sizes().into_iter().enumerate() {
        p.send(&pattern(len));
        let m = p.recv().expect("server closed early");
        check_pattern(&format!("docs peer, echo {i}"), &m, len);
    }
    for i in 0..BURST {
        p.send(&pattern(burst_size(i)));
    }
    for i in 0..BURST {
        let m = p.recv().expect("server closed early");
        check_pattern(&format!("docs peer, burst echo {i}"), &m, burst_size(i));
    }
    if park == Park::Futex {
        // §8: a futex park episode gets a FUTEX_WAKE, not a datagram; and
        // a wake-up lost would have cost a 200 ms slice (a few allowed on a
        // busy machine, hundreds of waits would time out if none came).
        assert!(
            !readable(p.in_sock.as_fd(), Duration::ZERO),
            "a WakeData datagram for a futex park"
        );
        assert!(
            p.futex_slices_timed_out <= 10,
            "{} futex slices timed out: wake-ups missing",
            p.futex_slices_timed_out
        );
    }
    p.close();
}

fn echo_with(server: Builder, park: Park) {
    let path = unique_path("docs-peer");
    let l = server.ring_capacity(SERVER_CAP).bind(&path).unwrap();
    let child = common::spawn(move || docs_client_echo(&path, park));
    real_echo_server(&l);
    child.wait(WAIT);
}

/// (a) An honest docs peer exchanges messages of every size class with the
/// real server; the server parks on the socket (the default).
fn honest_client_echo() {
    echo_with(Builder::new(), Park::Socket);
}

/// (a) The same with a server that parks on futexes: the docs peer, as
/// waker, bumps its wake words and calls `FUTEX_WAKE`.
fn honest_client_echo_futex_server() {
    echo_with(
        Builder::new()
            .futex_wakeups(true)
            .wait(shmsock::WaitStrategy::Block),
        Park::Socket,
    );
}

/// (a) The docs peer itself parks on the server's wake words (bit 63 set).
fn honest_client_futex_parks() {
    echo_with(
        Builder::new().wait(shmsock::WaitStrategy::Block),
        Park::Futex,
    );
}

/// (a) The real client against the docs peer as the server.
fn real_client_docs_server() {
    real_client_against_docs_server(Builder::new());
}

/// (a) The same with a real client that parks on futexes: the docs server,
/// as waker, bumps its wake words and calls `FUTEX_WAKE`.
fn real_futex_client_docs_server() {
    real_client_against_docs_server(
        Builder::new()
            .futex_wakeups(true)
            .wait(shmsock::WaitStrategy::Block),
    );
}

fn real_client_against_docs_server(client: Builder) {
    let path = unique_path("docs-server");
    let lsock = shmsock_testkit::peer::raw_listen(&path);
    let child = common::spawn(move || {
        let mut p = docs_accept(&lsock, SERVER_CAP);
        while let Some(m) = p.recv() {
            p.send(&m);
        }
        p.close();
    });
    let mut c = client.ring_capacity(CLIENT_CAP).connect(&path).unwrap();
    for (i, len) in echo_sizes().into_iter().enumerate() {
        c.send_timeout(&pattern(len), WAIT).unwrap();
        let m = c.recv_timeout(WAIT).unwrap().to_vec();
        check_pattern(&format!("real client, echo {i}"), &m, len);
    }
    for i in 0..BURST {
        c.send_timeout(&pattern(burst_size(i)), WAIT).unwrap();
    }
    for i in 0..BURST {
        let m = c.recv_timeout(WAIT).unwrap().to_vec();
        check_pattern(&format!("real client, burst echo {i}"), &m, burst_size(i));
    }
    drop(c);
    child.wait(WAIT);
}

/// (b) The docs peer parks its reader BEFORE it asks for a reply, so the
/// server finds it parked when it publishes and must wake it with a
/// `WakeData` datagram; the reply is in the ring when the wake-up comes.
/// The writer side too: the docs peer fills its ring while the server sleeps,
/// parks as a writer and must get `WakeSpace`.
fn parked_reader_is_woken() {
    const ROUNDS: usize = 20;
    let path = unique_path("docs-park");
    let l = Builder::new()
        .ring_capacity(SERVER_CAP)
        .bind(&path)
        .unwrap();
    let (mut ours, mut theirs) = signal_pair();
    let child = common::spawn(move || {
        let mut p = docs_connect(&path, CLIENT_CAP, Park::Socket);
        for round in 0..ROUNDS {
            let (s, _, empty) = p.park_reader();
            assert!(empty, "round {round}: ring not empty before the request");
            let before = p.wake_data_got;
            p.send(&pattern(round + 1));
            // Sleep until the one wake-up this episode is owed.
            p.sleep(false, 0);
            p.unpark_reader(s);
            assert_eq!(p.wake_data_got, before + 1);
            // The producer stores `tail` before it wakes: the reply is there.
            let (tag, m) = p.try_record().expect("woken, but the ring is empty");
            assert_eq!(tag, TAG_INLINE);
            check_pattern("reply", &m, round + 1);
        }
        // Writer parking: 4 rings' worth in one message while the server
        // sleeps before reading.
        let big = pattern(4 * CLIENT_CAP as usize + 5);
        let before = p.wake_space_got;
        p.send(&big);
        assert!(p.wake_space_got > before, "the writer never had to park?");
        let m = p.recv().unwrap();
        check_pattern("big reply", &m, big.len());
        // §10: producer_closed alone (sockets still open) ends the server's
        // receive with Disconnected once the ring is empty.
        p.send(b"last");
        p.close();
        wait_signal(&mut theirs, WAIT);
    });
    let mut c = l.accept().unwrap();
    for round in 0..ROUNDS {
        let m = c.recv_timeout(WAIT).unwrap().to_vec();
        check_pattern("request", &m, round + 1);
        // Give the peer time to reach its sleep (not needed for
        // correctness: it parked before it sent).
        std::thread::sleep(Duration::from_millis(5));
        c.send_timeout(&m, WAIT).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = c.recv_timeout(WAIT).unwrap().to_vec();
    c.send_timeout(&m, WAIT).unwrap();
    assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"last");
    let r = c.recv_timeout(WAIT);
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    send_signal(&mut ours);
    child.wait(WAIT);
}

/// Sends a hand-made `Hello` with `fds` and returns the server's answer: the
/// reason of the `Reject` (checked byte by byte), and what `accept` gave.
fn refused(
    what: &str,
    hello: [u8; HELLO_LEN],
    ring: OwnedFd,
    back: Option<OwnedFd>,
) -> (u32, shmsock::Result<shmsock::Connection>) {
    let path = unique_path("docs-refuse");
    let l = Builder::new()
        .handshake_timeout(Duration::from_secs(10))
        .bind(&path)
        .unwrap();
    let what2 = what.to_string();
    let (mut ours, mut theirs) = signal_pair();
    let child = common::spawn(move || {
        let s = raw_connect(&path);
        let back = back.unwrap_or_else(|| seqpacket_pair().1);
        raw_send(s.as_fd(), &hello, &[ring.as_fd(), back.as_fd()]);
        let (b, fds) = recv_dgram(&s, WAIT).unwrap_or_else(|| panic!("{what2}: EOF, no Reject"));
        assert!(fds.is_empty(), "{what2}: a Reject carries no fds");
        let reason = parse_reject(&b);
        use std::io::Write;
        theirs.write_all(&reason.to_le_bytes()).unwrap();
    });
    let r = l.accept();
    let mut rb = [0u8; 4];
    use std::io::Read;
    ours.read_exact(&mut rb).unwrap();
    child.wait(WAIT);
    (u32::from_le_bytes(rb), r)
}

fn good_ring(cap: u64) -> OwnedFd {
    create_segment(cap, ring_seals()).0
}

/// (c) The documented refusals: each bad `Hello` gets the documented
/// `Reject` reason.
fn documented_refusals() {
    const CAP: u64 = 4096;
    let good = || hello_bytes(KIND_HELLO, VERSION, CAP, 1 << 20, 0);

    // Another protocol version: Reject(Version), with our version in it.
    let (reason, r) = refused(
        "version",
        hello_bytes(KIND_HELLO, VERSION + 1, CAP, 1 << 20, 0),
        good_ring(CAP),
        None,
    );
    assert_eq!(reason, REASON_VERSION);
    assert!(
        matches!(r, Err(Error::VersionMismatch { theirs, .. }) if theirs == VERSION + 1),
        "{r:?}"
    );

    // A capacity that is not a power of two, or below 4 KiB: Limits.
    for cap in [3000u64, 2048] {
        let (reason, r) = refused(
            "capacity",
            hello_bytes(KIND_HELLO, VERSION, cap, 1 << 20, 0),
            good_ring(CAP),
            None,
        );
        assert_eq!(reason, REASON_LIMITS, "capacity {cap}");
        assert!(matches!(r, Err(Error::Protocol { .. })), "{r:?}");
    }
    // max_message 0: Limits.
    let (reason, _) = refused(
        "max_message 0",
        hello_bytes(KIND_HELLO, VERSION, CAP, 0, 0),
        good_ring(CAP),
        None,
    );
    assert_eq!(reason, REASON_LIMITS);

    // Everything else is Malformed.
    let malformed: Vec<(&str, [u8; HELLO_LEN], OwnedFd, Option<OwnedFd>)> = vec![
        (
            "a reserved byte set",
            {
                let mut b = good();
                b[40] = 1;
                b
            },
            good_ring(CAP),
            None,
        ),
        (
            "an undefined flag bit",
            hello_bytes(KIND_HELLO, VERSION, CAP, 1 << 20, 2),
            good_ring(CAP),
            None,
        ),
        (
            "a Welcome in place of the Hello",
            hello_bytes(KIND_WELCOME, VERSION, CAP, 1 << 20, 0),
            good_ring(CAP),
            None,
        ),
        (
            "ring without F_SEAL_FUTURE_WRITE",
            good(),
            create_segment(
                CAP,
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            )
            .0,
            None,
        ),
        (
            "ring without F_SEAL_GROW",
            good(),
            create_segment(
                CAP,
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_FUTURE_WRITE | SealFlag::F_SEAL_SEAL,
            )
            .0,
            None,
        ),
        (
            "unsealed ring",
            good(),
            create_segment(CAP, SealFlag::empty()).0,
            None,
        ),
        (
            "ring of another capacity than announced",
            good(),
            good_ring(2 * CAP),
            None,
        ),
        (
            "ring header of another ring version",
            good(),
            {
                let (fd, m) = create_segment(CAP, SealFlag::empty());
                m.u32_at(OFF_VERSION)
                    .store(RING_VERSION - 1, Ordering::Relaxed);
                add_seals(&fd, ring_seals());
                fd
            },
            None,
        ),
        (
            "back channel a stream socket",
            good(),
            good_ring(CAP),
            Some(
                rustix::net::socketpair(
                    rustix::net::AddressFamily::UNIX,
                    rustix::net::SocketType::STREAM,
                    rustix::net::SocketFlags::CLOEXEC,
                    None,
                )
                .unwrap()
                .1,
            ),
        ),
    ];
    for (what, hello, ring, back) in malformed {
        let (reason, r) = refused(what, hello, ring, back);
        assert_eq!(reason, REASON_MALFORMED, "{what}");
        assert!(matches!(r, Err(Error::Protocol { .. })), "{what}: {r:?}");
    }
}

/// (c) The docs peer as server refuses the real client: the documented
/// outcome on the client is `Error::Rejected(reason)`.
fn real_client_sees_documented_reject() {
    let path = unique_path("docs-server-rej");
    let lsock = shmsock_testkit::peer::raw_listen(&path);
    let child = common::spawn(move || {
        let s = rustix::net::accept_with(&lsock, rustix::net::SocketFlags::CLOEXEC).unwrap();
        let (b, fds) = recv_dgram(&s, WAIT).unwrap();
        parse_hello(&b, KIND_HELLO);
        assert_eq!(fds.len(), 2);
        raw_send(s.as_fd(), &reject_bytes(REASON_LIMITS), &[]);
        // Wait for the client to hang up.
        assert!(recv_dgram(&s, WAIT).is_none());
    });
    let r = Builder::new().connect(&path);
    assert!(
        matches!(r, Err(Error::Rejected(RejectReason::Limits))),
        "{r:?}"
    );
    child.wait(WAIT);
}

// ---- (c) lies in the ring: the documented violation, then `Poisoned` ----

impl Peer {
    /// Writes `word` as a record header at stream position `pos` and
    /// `payload` after it, without any check.
    fn put_record(&mut self, pos: u64, word: u64, payload: &[u8]) {
        let off = DATA + (pos & (self.my_cap - 1)) as usize;
        self.mine.write(off + 8, payload);
        self.mine.u64_at(off).store(word, Ordering::Relaxed);
    }

    /// Publishes `tail` as given and wakes the reader if it is parked.
    fn publish_raw(&mut self, tail: u64) {
        self.tail = tail;
        self.mine.u64_at(OFF_TAIL).store(tail, Ordering::Release);
        self.wake_reader();
    }
}

fn word(len: u64, tag: u64) -> u64 {
    len | tag << 32
}

type Lie = fn(&mut Peer);
type Expect = fn(&shmsock::ProtocolViolation) -> bool;

const LIE_CAP: u64 = 4096;
const LIE_MAX_MESSAGE: u64 = 1000;

fn ring_lie(what: &str, lie: Lie, expect: Expect) {
    let path = unique_path("docs-lie");
    let l = Builder::new()
        .max_message(LIE_MAX_MESSAGE)
        .bind(&path)
        .unwrap();
    let (mut ours, mut theirs) = signal_pair();
    let child = common::spawn(move || {
        let mut p = docs_connect(&path, LIE_CAP, Park::Socket);
        // One honest message first: the lie comes after a good record.
        p.send(b"honest");
        // Lie only once it was read: a lying `tail` refuses what is before it.
        wait_signal(&mut theirs, WAIT);
        lie(&mut p);
        wait_signal(&mut theirs, WAIT);
    });
    let mut c = l.accept().unwrap();
    assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"honest", "{what}");
    send_signal(&mut ours);
    match c.recv_timeout(WAIT) {
        Err(Error::Protocol { violation, .. }) if expect(&violation) => {}
        other => panic!("{what}: {other:?}"),
    }
    match c.recv_timeout(Duration::from_millis(100)) {
        Err(Error::Protocol {
            violation: shmsock::ProtocolViolation::Poisoned,
            ..
        }) => {}
        other => panic!("{what}, the call after: {other:?}"),
    }
    send_signal(&mut ours);
    child.wait(WAIT);
}

/// (c) What shm-layout.md "Checks the consumer makes" and protocol.md §7, §9
/// promise for a lying producer: the documented violation, then every call
/// `Poisoned`.
fn documented_ring_violations() {
    use shmsock::shm::Violation as V;
    use shmsock::ProtocolViolation as P;
    let cases: Vec<(&str, Lie, Expect)> = vec![
        (
            "tail not a multiple of 8",
            |p| p.publish_raw(p.tail + 4),
            |v| matches!(v, P::Ring(V::Misaligned { .. })),
        ),
        (
            "tail more than a ring ahead",
            |p| p.publish_raw(p.tail + LIE_CAP + 8),
            |v| matches!(v, P::Ring(V::TailBeyondCapacity { .. })),
        ),
        (
            "reserved header bit 48",
            |p| {
                p.put_record(p.tail, word(8, 0) | 1 << 48, &[0; 8]);
                p.publish_raw(p.tail + 16);
            },
            |v| matches!(v, P::Ring(V::BadRecord { .. })),
        ),
        (
            "record past the published tail",
            |p| {
                p.put_record(p.tail, word(64, 0), &[0; 64]);
                p.publish_raw(p.tail + 16);
            },
            |v| matches!(v, P::Ring(V::BadRecord { .. })),
        ),
        (
            "padding with nothing after it",
            |p| {
                let to_end = LIE_CAP - (p.tail & (LIE_CAP - 1));
                p.put_record(p.tail, (to_end - 8) | FLAG_PAD, &[]);
                p.publish_raw(p.tail + to_end);
            },
            |v| matches!(v, P::Ring(V::BadRecord { .. })),
        ),
        (
            "retired tag 1",
            |p| {
                p.put_record(p.tail, word(0, 1), &[]);
                p.publish_raw(p.tail + 8);
            },
            |v| matches!(v, P::Fragment(_)),
        ),
        (
            "undefined tag 5",
            |p| {
                p.put_record(p.tail, word(0, 5), &[]);
                p.publish_raw(p.tail + 8);
            },
            |v| matches!(v, P::Fragment(_)),
        ),
        (
            "a fragment with no message started",
            |p| p.write_record(TAG_FRAG, &[b"x"]),
            |v| matches!(v, P::Fragment(_)),
        ),
        (
            "inline longer than the receiver's max_message",
            |p| p.write_record(TAG_INLINE, &[&[7u8; LIE_MAX_MESSAGE as usize + 1]]),
            |v| matches!(v, P::BadLimit { .. }),
        ),
        (
            "a fragmented total over the receiver's max_message",
            |p| {
                let total = (LIE_MAX_MESSAGE + 1).to_le_bytes();
                p.write_record(TAG_FRAG_START, &[&total, b"abc"]);
            },
            |v| matches!(v, P::Fragment(_)),
        ),
    ];
    for (what, lie, expect) in cases {
        ring_lie(what, lie, expect);
    }
}

fn main() {
    common::run(&[
        ("honest_client_echo", honest_client_echo),
        (
            "honest_client_echo_futex_server",
            honest_client_echo_futex_server,
        ),
        ("honest_client_futex_parks", honest_client_futex_parks),
        ("real_client_docs_server", real_client_docs_server),
        (
            "real_futex_client_docs_server",
            real_futex_client_docs_server,
        ),
        ("parked_reader_is_woken", parked_reader_is_woken),
        ("documented_refusals", documented_refusals),
        ("documented_ring_violations", documented_ring_violations),
        (
            "real_client_sees_documented_reject",
            real_client_sees_documented_reject,
        ),
    ]);
}
