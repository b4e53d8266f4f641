//! A hostile server, with the client as the victim: the mirror image of
//! `hostile_fork.rs`. A fake server runs in a forked child, binds an
//! abstract socket, speaks the protocol by hand (the crate's own
//! `wire::Control` to encode, `shm` to build rings) and lies. The victim is
//! `Builder::connect` in this process (or, where it could die of a signal,
//! in a forked child). Every case checks the typed error, a time bound, and
//! (the harness does it) that /proc/self/fd holds as many fds afterwards.
//!
//! The listening socket is bound in this process before the fork and only
//! the child keeps it, so the victim never races the server's `bind`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;
use shmsock_testkit::peer::{self, encode, memfd, raw_listen as listen, raw_send};

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::SealFlag as S;
use nix::sys::wait::WaitStatus;
use rustix::net::{
    recvmsg, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags,
    SocketFlags, SocketType,
};
use shmsock::shm::ring::{self, segment_size, Consumer, Producer, HEADER_SIZE};
use shmsock::shm::{Segment, SegmentOptions};
use shmsock::wire::{Control, Hello, PROTOCOL_VERSION};
use shmsock::{Builder, Connection, Error, ProtocolViolation, WaitStrategy};

/// Handshake timeout of every victim.
const HS: Duration = Duration::from_millis(500);
/// How late past its own bound a victim may return (2 shared cores).
const SLACK: Duration = Duration::from_secs(1);
/// Watchdog for children.
const WAIT: Duration = Duration::from_secs(30);
/// The size seals alone: a ring segment needs a write seal on top.
const SIZE: S = peer::SIZE_SEALS;
/// The seals of a ring segment.
const ALL: S = peer::RING_SEALS;
/// Offsets in a ring header (docs/shm-layout.md).
const TAIL: usize = 128;
const HEAD: usize = 256;
const READER_PARK: usize = 384;

fn path() -> String {
    peer::unique_path("shmsock-hs")
}

fn welcome(cap: u64) -> Vec<u8> {
    encode(Control::Welcome(Hello {
        ring_capacity: cap,
        max_message: 1 << 30,
    }))
}

fn good_ring(cap: u64) -> Arc<Segment> {
    good_ring_and_producer(cap).0
}

fn good_ring_and_producer(cap: u64) -> (Arc<Segment>, Producer) {
    ring::create_segment(c"hostile-server", cap, SegmentOptions::default()).unwrap()
}

fn sleep_forever() {
    std::thread::sleep(Duration::from_secs(30));
}

/// What the fake server got from the client: the connection and the Hello
/// with its fds (client ring memfd, back-channel socket).
struct Accepted {
    sock: OwnedFd,
    hello: Hello,
    client_ring: OwnedFd,
    back: OwnedFd,
}

fn accept_hello(l: &OwnedFd) -> Accepted {
    let sock = rustix::net::accept_with(l, SocketFlags::CLOEXEC).unwrap();
    let mut buf = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let r = recvmsg(
        &sock,
        &mut [IoSliceMut::new(&mut buf)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let Control::Hello(hello) = Control::decode(&buf[..r.bytes]).unwrap() else {
        panic!("no hello")
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    assert_eq!(fds.len(), 2);
    let back = fds.pop().unwrap();
    let client_ring = fds.pop().unwrap();
    Accepted {
        sock,
        hello,
        client_ring,
        back,
    }
}

/// Forks a fake server that accepts one client, reads its Hello and runs
/// `script`. Returns the socket path and the child.
fn fake_server(script: impl FnOnce(Accepted) + 'static) -> (String, common::Child) {
    let p = path();
    let l = listen(&p);
    // `l` moves into the closure: the parent drops its copy when `spawn`
    // returns, so only the child holds the listening socket.
    let child = common::spawn(move || script(accept_hello(&l)));
    (p, child)
}

/// Connects a victim client with the given builder; returns the result and
/// how long it took.
fn victim(p: &str, b: Builder) -> (shmsock::Result<Connection>, Duration) {
    let t = Instant::now();
    let r = b.handshake_timeout(HS).connect(p);
    (r, t.elapsed())
}

/// Runs `script` as the server; the client's handshake must fail with an
/// error matching `pred`, within the handshake timeout plus slack.
fn handshake_case(
    what: &str,
    script: impl FnOnce(Accepted) + 'static,
    pred: impl Fn(&Error) -> bool,
) {
    let (p, child) = fake_server(script);
    let (r, took) = victim(&p, Builder::new());
    assert!(took < HS + SLACK, "{what}: connect took {took:?}");
    match r {
        Err(e) if pred(&e) => eprintln!("  {what}: {e} ({took:.2?})"),
        other => panic!("{what}: unexpected {other:?}"),
    }
    child.kill();
}

fn violation(e: &Error, pred: impl Fn(&ProtocolViolation) -> bool) -> bool {
    matches!(e, Error::Protocol { violation, .. } if pred(violation))
}

fn bad_memfd(e: &Error, pred: impl Fn(&shmsock::shm::Error) -> bool) -> bool {
    violation(
        e,
        |v| matches!(v, ProtocolViolation::BadMemfd(m) if pred(m)),
    )
}

// ---------------------------------------------------------------- handshake

fn welcome_wrong_version() {
    handshake_case(
        "welcome of version 9",
        |a| {
            let mut b = welcome(4096);
            b[4..8].copy_from_slice(&9u32.to_le_bytes());
            let ring = good_ring(4096);
            raw_send(a.sock.as_fd(), &b, &[ring.fd()]);
            sleep_forever();
        },
        |e| {
            matches!(
                e,
                Error::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: 9
                }
            )
        },
    );
}

fn garbage_datagrams() {
    handshake_case(
        "garbage",
        |a| {
            raw_send(a.sock.as_fd(), b"HTTP/1.1 200 OK\r\n\r\n", &[]);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::Malformed(_))),
    );
    handshake_case(
        "oversized",
        |a| {
            raw_send(a.sock.as_fd(), &[0x02; 1000], &[]);
            sleep_forever();
        },
        |e| {
            violation(e, |v| {
                matches!(
                    v,
                    ProtocolViolation::Oversized { .. } | ProtocolViolation::Malformed(_)
                )
            })
        },
    );
    handshake_case(
        "welcome with bad magic",
        |a| {
            let mut b = welcome(4096);
            b[8] ^= 0xff;
            let ring = good_ring(4096);
            raw_send(a.sock.as_fd(), &b, &[ring.fd()]);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::BadMagic { .. })),
    );
}

fn silence() {
    // Accepts, reads the Hello, never answers: Timeout at the handshake
    // deadline, not before it and not long after.
    let (p, child) = fake_server(|_a| sleep_forever());
    let (r, took) = victim(&p, Builder::new());
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(took >= HS && took < HS + SLACK, "took {took:?}");
    child.kill();
}

fn never_accepts() {
    // The connection waits in the backlog, the hello in its buffer, and no
    // one ever answers: Timeout at the handshake deadline.
    let p = path();
    let l = listen(&p);
    let child = common::spawn(move || {
        let _l = l;
        sleep_forever();
    });
    let (r, took) = victim(&p, Builder::new());
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(took >= HS && took < HS + SLACK, "took {took:?}");
    child.kill();
}

fn credentials_refused_before_anything_is_sent() {
    // The client's policy refuses the server (SO_PEERCRED names whoever
    // called listen(2): this process; the uid is what counts here). The
    // server must see the connection close without a single byte or fd.
    let p = path();
    let l = listen(&p);
    let server = common::spawn(move || {
        let sock = rustix::net::accept_with(&l, SocketFlags::CLOEXEC).unwrap();
        let mut buf = [0u8; 256];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        assert_eq!(r.bytes, 0, "the client spoke to a server it refused");
        assert_eq!(cmsg.drain().count(), 0, "the client sent fds");
    });
    let uid = nix::unistd::geteuid().as_raw();
    let (r, took) = victim(
        &p,
        Builder::new().credentials(shmsock::CredentialsPolicy::Uid(uid.wrapping_add(1))),
    );
    assert!(took < HS + SLACK, "took {took:?}");
    assert!(
        matches!(r, Err(Error::CredentialsRefused { uid: u, .. }) if u == uid),
        "{r:?}"
    );
    drop(r);
    server.wait(WAIT);
}

fn hangs_up_and_rejects() {
    handshake_case("hang-up after the hello", drop, |e| {
        matches!(e, Error::Disconnected)
    });
    handshake_case(
        "reject",
        |a| {
            let b = encode(Control::Reject {
                version: PROTOCOL_VERSION,
                reason: shmsock::wire::RejectReason::Limits,
            });
            raw_send(a.sock.as_fd(), &b, &[]);
            sleep_forever();
        },
        |e| matches!(e, Error::Rejected(shmsock::wire::RejectReason::Limits)),
    );
}

fn hello_instead_of_welcome() {
    handshake_case(
        "hello instead of welcome",
        |a| {
            let b = encode(Control::Hello(Hello {
                ring_capacity: 4096,
                max_message: 1 << 20,
            }));
            let ring = good_ring(4096);
            raw_send(a.sock.as_fd(), &b, &[ring.fd(), a.back.as_fd()]);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::Unexpected { .. })),
    );
}

fn welcome_fd_counts() {
    handshake_case(
        "welcome with 0 fds",
        |a| {
            raw_send(a.sock.as_fd(), &welcome(4096), &[]);
            sleep_forever();
        },
        |e| {
            violation(e, |v| {
                matches!(
                    v,
                    ProtocolViolation::FdCount {
                        expected: 1,
                        got: 0,
                        ..
                    }
                )
            })
        },
    );
    handshake_case(
        "welcome with 2 fds",
        |a| {
            let ring = good_ring(4096);
            raw_send(a.sock.as_fd(), &welcome(4096), &[ring.fd(), ring.fd()]);
            sleep_forever();
        },
        |e| {
            violation(e, |v| {
                matches!(
                    v,
                    ProtocolViolation::FdCount {
                        expected: 1,
                        got: 2,
                        ..
                    }
                )
            })
        },
    );
    handshake_case(
        "welcome with 12 fds",
        |a| {
            let pipes: Vec<_> = (0..12).map(|_| nix::unistd::pipe().unwrap()).collect();
            let fds: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
            raw_send(a.sock.as_fd(), &welcome(4096), &fds);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::ControlTruncated)),
    );
}

fn welcome_limits_out_of_range() {
    // Capacity: not a power of two, below the minimum, beyond MAX_CAPACITY,
    // beyond the client's max_peer_ring (1 GiB by default); then a zero
    // max_message.
    for cap in [3u64, 1000, 2048, 1 << 41, 1 << 31] {
        handshake_case(
            &format!("welcome capacity {cap}"),
            move |a| {
                let ring = good_ring(4096);
                raw_send(a.sock.as_fd(), &welcome(cap), &[ring.fd()]);
                sleep_forever();
            },
            |e| violation(e, |v| matches!(v, ProtocolViolation::BadLimit { .. })),
        );
    }
    handshake_case(
        "welcome max_message 0",
        |a| {
            let b = encode(Control::Welcome(Hello {
                ring_capacity: 4096,
                max_message: 0,
            }));
            let ring = good_ring(4096);
            raw_send(a.sock.as_fd(), &b, &[ring.fd()]);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::BadLimit { .. })),
    );
}

fn bad_server_rings() {
    use shmsock::shm::Error as E;
    type Make = fn() -> OwnedFd;
    type Check = fn(&E) -> bool;
    let size = segment_size(4096);
    let cases: Vec<(&str, Make, Check)> = vec![
        (
            "unsealed memfd",
            || memfd(segment_size(4096), segment_size(4096), S::empty()),
            |e| matches!(e, E::MissingSeals { .. }),
        ),
        (
            "growable memfd",
            || {
                let n = segment_size(4096);
                memfd(n, n, S::F_SEAL_SHRINK | S::F_SEAL_SEAL)
            },
            |e| matches!(e, E::MissingSeals { .. }),
        ),
        (
            "size-sealed memfd the server can still write",
            || memfd(segment_size(4096), segment_size(4096), SIZE),
            |e| matches!(e, E::MissingSeals { .. }),
        ),
        (
            "sealed memfd of the wrong size",
            || memfd(segment_size(8192), segment_size(8192), ALL),
            |e| matches!(e, E::WrongSize { .. }),
        ),
        (
            "sparse sealed memfd of the right size",
            || memfd(segment_size(4096), 0, ALL),
            |e| matches!(e, E::NotFullyBacked { allocated: 0, .. }),
        ),
        (
            "pipe",
            || nix::unistd::pipe().unwrap().0,
            |e| matches!(e, E::NotMemfd(_)),
        ),
        (
            "socket",
            || {
                rustix::net::socketpair(
                    AddressFamily::UNIX,
                    SocketType::SEQPACKET,
                    SocketFlags::CLOEXEC,
                    None,
                )
                .unwrap()
                .0
            },
            |e| matches!(e, E::NotMemfd(_)),
        ),
    ];
    for (what, make, pred) in cases {
        handshake_case(
            what,
            move |a| {
                let fd = make();
                raw_send(a.sock.as_fd(), &welcome(4096), &[fd.as_fd()]);
                sleep_forever();
            },
            |e| bad_memfd(e, pred),
        );
    }
    handshake_case(
        "zeroed ring header",
        move |a| {
            let fd = memfd(size, size, ALL);
            raw_send(a.sock.as_fd(), &welcome(4096), &[fd.as_fd()]);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::Ring(_))),
    );
    handshake_case(
        "ring header with cursors out of range",
        |a| {
            let ring = good_ring(4096);
            poke(&ring, TAIL, 8192);
            raw_send(a.sock.as_fd(), &welcome(4096), &[ring.fd()]);
            sleep_forever();
        },
        |e| violation(e, |v| matches!(v, ProtocolViolation::Ring(_))),
    );
}

/// The race of `shm`'s `attach_rejects_memfd_shrunk_and_sealed_between_checks`
/// with a real peer. The server sends an unsealed, sparse memfd of the
/// right size as its ring; a second thread of the server then shrinks it
/// to 0 and seals it after a delay. The victim runs in a forked child, so
/// that a SIGBUS shows as its exit status. Each connect must fail with
/// MissingSeals (sealed after the seal check) or WrongSize (shrunk before
/// the size check). If the size were read before the seals, a shrink and
/// seal between the two would get a 0-byte file mapped as a ring, and the
/// header read kills the victim.
///
/// The victim reports each outcome through a shared page, and the racer
/// moves its delay towards the boundary between the two (later after a
/// WrongSize, earlier after a MissingSeals), so that it keeps striking
/// inside the victim's checks rather than before or after them.
fn racing_seal() {
    const RUN: Duration = Duration::from_secs(3);
    // Word 0: outcomes reported by the victim (count << 1 | late).
    let board = Arc::new(Segment::create(c"board", 4096, SegmentOptions::default()).unwrap());
    let p = path();
    let l = listen(&p);
    let board2 = board.clone();
    let server = common::spawn(move || {
        let fd_slot = Arc::new(AtomicU64::new(u64::MAX));
        let delay = Arc::new(AtomicU64::new(2000));
        let stop = Arc::new(AtomicBool::new(false));
        let (slot2, delay2, stop2) = (fd_slot.clone(), delay.clone(), stop.clone());
        // Orderings: `fd_slot` hands an fd from the main thread to the
        // racer and back (Release/Acquire, so each side sees the other's
        // syscalls done); `stop` and `delay` are hints, Relaxed (a stale
        // value costs one round).
        let racer = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let raw = slot2.load(Ordering::Acquire);
                if raw == u64::MAX {
                    std::hint::spin_loop();
                    continue;
                }
                for _ in 0..delay2.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                // SAFETY: the main thread keeps this fd open until we reset
                // the slot to MAX below.
                let fd = unsafe { BorrowedFd::borrow_raw(raw as i32) };
                let _ = nix::unistd::ftruncate(fd, 0);
                let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_ADD_SEALS(ALL));
                slot2.store(u64::MAX, Ordering::Release);
            }
        });
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut seen = 0u64;
        let start = Instant::now();
        while start.elapsed() < RUN + Duration::from_secs(5) {
            let Ok(sock) = rustix::net::accept_with(&l, SocketFlags::CLOEXEC) else {
                break;
            };
            // Read the hello (its fds are closed when `cmsg` drops).
            let mut buf = [0u8; 256];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut cmsg = RecvAncillaryBuffer::new(&mut space);
            let _ = recvmsg(
                &sock,
                &mut [IoSliceMut::new(&mut buf)],
                &mut cmsg,
                RecvFlags::CMSG_CLOEXEC,
            );
            drop(cmsg);
            // Sparse: ftruncate stays cheap, which helps the racer.
            let fd = memfd(segment_size(4096), 0, S::empty());
            raw_send(sock.as_fd(), &welcome(4096), &[fd.as_fd()]);
            fd_slot.store(fd.as_raw_fd() as u64, Ordering::Release);
            while fd_slot.load(Ordering::Acquire) != u64::MAX {
                std::hint::spin_loop();
            }
            // Wait (bounded) for the victim's verdict, then steer.
            let t = Instant::now();
            let mut word = peek(&board2, 0);
            while word >> 1 == seen && t.elapsed() < Duration::from_millis(100) {
                std::thread::yield_now();
                word = peek(&board2, 0);
            }
            if word >> 1 != seen {
                seen = word >> 1;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let step = 1 + x % 64;
                let d = delay.load(Ordering::Relaxed);
                let d = if word & 1 == 1 {
                    d.saturating_sub(step)
                } else {
                    (d + step).min(1_000_000)
                };
                delay.store(d, Ordering::Relaxed);
            }
            drop(fd);
        }
        stop.store(true, Ordering::Relaxed);
        racer.join().unwrap();
    });
    let p2 = p.clone();
    let board3 = board.clone();
    let mut v = common::spawn(move || {
        let before = common::fd_count();
        let start = Instant::now();
        let (mut late, mut early, mut n) = (0u64, 0u64, 0u64);
        while start.elapsed() < RUN {
            // A small ring of our own: more handshakes per second.
            let r = Builder::new()
                .ring_capacity(4096)
                .handshake_timeout(Duration::from_secs(5))
                .connect(&p2);
            n += 1;
            let is_late = match r {
                Err(e)
                    if bad_memfd(&e, |m| {
                        matches!(m, shmsock::shm::Error::MissingSeals { .. })
                    }) =>
                {
                    late += 1;
                    1
                }
                Err(e) if bad_memfd(&e, |m| matches!(m, shmsock::shm::Error::WrongSize { .. })) => {
                    early += 1;
                    0
                }
                other => panic!("attempt {n}: {other:?}"),
            };
            poke(&board3, 0, n << 1 | is_late);
        }
        assert_eq!(common::fd_count(), before, "victim leaked fds");
        eprintln!(
            "  racing seal: {n} handshakes; sealed after the seal check {late}, \
             shrunk before the size check {early}"
        );
    });
    let st = v.wait_status(RUN + WAIT);
    assert!(
        matches!(st, WaitStatus::Exited(_, 0)),
        "victim ended with {st:?} (Signaled(SIGBUS) = mapped past EOF)"
    );
    server.kill();
}

fn peek(seg: &Segment, off: usize) -> u64 {
    assert!(off + 8 <= seg.len());
    // SAFETY: in bounds, 8-aligned, atomic load of shared memory.
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off).cast()) }.load(Ordering::SeqCst)
}

// ------------------------------------------------------- after a handshake

/// A fake server that completed the handshake by hand and keeps raw access
/// to both segments: its own (`ours`, writable: its ring to the client and
/// its consumer words of the client's ring) and the client's, which the
/// kernel lets it map read-only only.
struct RawServer {
    _sock: OwnedFd,
    /// Our end of the client's back channel: wake-ups to the client go here.
    back: OwnedFd,
    ours: Arc<Segment>,
    prod: Producer,
    _theirs: Consumer,
}

fn serve_good(a: Accepted, cap: u64) -> RawServer {
    let theirs_seg = Arc::new(
        Segment::attach_read_only(
            a.client_ring,
            segment_size(a.hello.ring_capacity),
            segment_size(1 << 30),
        )
        .unwrap(),
    );
    let (ours, prod) = good_ring_and_producer(cap);
    let theirs = Consumer::attach(theirs_seg.clone(), ours.clone()).unwrap();
    let prod = prod.with_consumer_words(theirs_seg).unwrap();
    raw_send(a.sock.as_fd(), &welcome(cap), &[ours.fd()]);
    RawServer {
        _sock: a.sock,
        back: a.back,
        ours,
        prod,
        _theirs: theirs,
    }
}

fn poke(seg: &Segment, off: usize, val: u64) {
    assert!(off + 8 <= seg.len());
    // SAFETY: in bounds and 8-aligned; the word is shared memory, so it is
    // written atomically.
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off).cast()) }.store(val, Ordering::SeqCst);
}

impl RawServer {
    fn poke(&self, off: usize, val: u64) {
        poke(&self.ours, off, val);
    }

    /// Sends one wake-up to the client (non-blocking, best effort).
    fn wake(&self) -> bool {
        rustix::net::send(
            &self.back,
            &encode(Control::WakeData),
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        )
        .is_ok()
    }
}

/// The client receives from a server that corrupts its ring after sending
/// 10 good messages: it must get good messages only, then a protocol
/// violation, in bounded time.
fn ring_attack(what: &str, attack: fn(&RawServer)) {
    let (p, child) = fake_server(move |a| {
        let mut s = serve_good(a, 4096);
        for seq in 0..10u64 {
            assert!(s.prod.try_push(&seq.to_le_bytes()).unwrap());
        }
        s.wake();
        std::thread::sleep(Duration::from_millis(50));
        attack(&s);
        s.wake();
        sleep_forever();
    });
    let mut c = victim(&p, Builder::new()).0.unwrap();
    let mut got = 0u64;
    let t = Instant::now();
    let err = loop {
        match c.recv_timeout(Duration::from_secs(2)) {
            Ok(m) => {
                assert_eq!(m.to_vec(), got.to_le_bytes(), "{what}: bad message");
                got += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{what}: {:?}",
        t.elapsed()
    );
    assert!(got <= 10, "{what}");
    assert!(matches!(err, Error::Protocol { .. }), "{what}: {err:?}");
    eprintln!("  {what}: {got} good messages, then: {err}");
    drop(c);
    child.kill();
}

fn shared_memory_attacks() {
    ring_attack("tail backwards", |s| s.poke(TAIL, 8));
    ring_attack("tail beyond capacity", |s| s.poke(TAIL, 4096 * 3));
    ring_attack("tail huge", |s| s.poke(TAIL, u64::MAX - 7));
    ring_attack("tail misaligned", |s| s.poke(TAIL, 10 * 16 + 3));
    ring_attack("record length beyond ring", |s| {
        s.poke(HEADER_SIZE + 160, u64::from(u32::MAX));
        s.poke(TAIL, 160 + 16);
    });
    ring_attack("record length beyond limit", |s| {
        s.poke(HEADER_SIZE + 160, 3000);
        s.poke(TAIL, 160 + 3008);
    });
    ring_attack("reserved flags", |s| {
        s.poke(HEADER_SIZE + 160, 8 | (0x00ff_0000u64 << 32));
        s.poke(TAIL, 160 + 16);
    });
    ring_attack("unknown tag", |s| {
        s.poke(HEADER_SIZE + 160, 8 | (7u64 << 32));
        s.poke(TAIL, 160 + 16);
    });
    ring_attack("flags flipped", |s| {
        // Every word of our own header: the client's consumer reads the
        // producer words, its producer the consumer words.
        s.poke(TAIL + 8, 0xffff_ffff); // producer_closed + pad
        s.poke(READER_PARK, 1); // our reader park word (ring client -> us)
        s.poke(512, 1); // our writer park word (ring us -> client)
        s.poke(HEAD, 1 << 40); // our cursor of the client's ring: checked when it sends
        s.poke(TAIL, 4096 * 5);
    });
}

/// Announces a large message the protocol-1 way: the `Large` control
/// message with the memfd on the back channel, then a tag-1 announcement.
fn announce_large(s: &mut RawServer, len: u64, fd: BorrowedFd<'_>) {
    let b = encode(Control::Large { seq: 0, len });
    raw_send(s.back.as_fd(), &b, &[fd]);
    let mut g = s.prod.try_reserve_tagged(16, 1).unwrap().unwrap();
    let mut ann = [0u8; 16];
    ann[8..].copy_from_slice(&len.to_le_bytes());
    g.fill_from(&ann);
    g.commit();
    s.wake();
}

fn protocol_1_large_message_memfds_refused() {
    // Protocol 2 takes no memfd after the handshake (large messages stream
    // through the ring): a server that sends one, good or bad, is refused
    // before anything is mapped, whatever the memfd is.
    type Make = fn() -> OwnedFd;
    const LEN: u64 = 100_000;
    let cases: Vec<(&str, Make)> = vec![
        ("large: sparse frozen memfd", || {
            memfd(LEN, 0, S::F_SEAL_WRITE.union(ALL))
        }),
        ("large: memfd not write-sealed", || memfd(LEN, LEN, ALL)),
        ("large: good frozen memfd", || {
            memfd(LEN, LEN, S::F_SEAL_WRITE.union(ALL))
        }),
    ];
    for (what, make) in cases {
        let (p, child) = fake_server(move |a| {
            let mut s = serve_good(a, 4096);
            let fd = make();
            announce_large(&mut s, LEN, fd.as_fd());
            sleep_forever();
        });
        let mut c = victim(&p, Builder::new()).0.unwrap();
        let t = Instant::now();
        let r = c.recv_timeout(Duration::from_secs(2)).map(|m| m.len());
        assert!(t.elapsed() < Duration::from_secs(2) + SLACK, "{what}");
        match r {
            Err(e @ Error::Protocol { .. }) => eprintln!("  {what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
        drop(c);
        child.kill();
    }
}

fn wakeup_flood_while_waiting() {
    // Wake-ups without data, as fast as the socket takes them, while the
    // client waits in recv_timeout: it must time out on time, whatever the
    // wait strategy.
    for wait in [
        WaitStrategy::Block,
        WaitStrategy::default(),
        WaitStrategy::Spin,
    ] {
        let (p, child) = fake_server(|a| {
            let s = serve_good(a, 4096);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if !s.wake() {
                    std::thread::yield_now();
                }
            }
        });
        let mut c = victim(&p, Builder::new().wait(wait)).0.unwrap();
        // Let the flood fill the socket first.
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let r = c.recv_timeout(Duration::from_millis(300)).map(|m| m.len());
        let took = t.elapsed();
        assert!(matches!(r, Err(Error::Timeout)), "{wait:?}: {r:?}");
        assert!(
            took < Duration::from_millis(300) + SLACK,
            "{wait:?}: took {took:?}"
        );
        eprintln!("  flood, {wait:?}: Timeout after {took:.2?}");
        drop(c);
        child.kill();
    }
}

fn server_that_never_reads() {
    // The client sends until its ring is full; send_timeout then ends at
    // its deadline with Timeout.
    let (p, child) = fake_server(|a| {
        let _s = serve_good(a, 4096);
        sleep_forever();
    });
    let mut c = victim(&p, Builder::new().ring_capacity(4096)).0.unwrap();
    let mut sent = 0;
    let (err, took) = loop {
        let t = Instant::now();
        match c.send_timeout(&[1u8; 100], Duration::from_millis(200)) {
            Ok(()) => sent += 1,
            Err(e) => break (e, t.elapsed()),
        }
        assert!(sent < 10_000, "ring never filled");
    };
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(took < Duration::from_millis(200) + SLACK, "took {took:?}");
    eprintln!("  never reads: {sent} sent, then Timeout after {took:.2?}");
    drop(c);
    child.kill();
}

fn server_killed_while_client_parked() {
    // The server completes the handshake and stays silent; 300 ms into the
    // client's recv (parked long since, with either strategy) the parent
    // SIGKILLs it. The recv must return Disconnected within a second of the
    // kill.
    for wait in [WaitStrategy::Block, WaitStrategy::default()] {
        let (p, child) = fake_server(|a| {
            let _s = serve_good(a, 4096);
            sleep_forever();
        });
        let mut c = victim(&p, Builder::new().wait(wait)).0.unwrap();
        let pid = child.pid;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            Instant::now()
        });
        let r = c.recv_timeout(Duration::from_secs(10)).map(|m| m.len());
        let end = Instant::now();
        let killed = killer.join().unwrap();
        assert!(matches!(r, Err(Error::Disconnected)), "{wait:?}: {r:?}");
        let lag = end.saturating_duration_since(killed);
        assert!(
            lag < Duration::from_secs(1),
            "{wait:?}: {lag:?} after the kill"
        );
        eprintln!("  killed while parked, {wait:?}: Disconnected {lag:.2?} after the kill");
        drop(c);
        child.kill();
    }
}

fn main() {
    common::run(&[
        ("welcome_wrong_version", welcome_wrong_version),
        ("garbage_datagrams", garbage_datagrams),
        ("silence", silence),
        ("never_accepts", never_accepts),
        (
            "credentials_refused_before_anything_is_sent",
            credentials_refused_before_anything_is_sent,
        ),
        ("hangs_up_and_rejects", hangs_up_and_rejects),
        ("hello_instead_of_welcome", hello_instead_of_welcome),
        ("welcome_fd_counts", welcome_fd_counts),
        ("welcome_limits_out_of_range", welcome_limits_out_of_range),
        ("bad_server_rings", bad_server_rings),
        ("racing_seal", racing_seal),
        ("shared_memory_attacks", shared_memory_attacks),
        (
            "protocol_1_large_message_memfds_refused",
            protocol_1_large_message_memfds_refused,
        ),
        ("wakeup_flood_while_waiting", wakeup_flood_while_waiting),
        ("server_that_never_reads", server_that_never_reads),
        (
            "server_killed_while_client_parked",
            server_killed_while_client_parked,
        ),
    ]);
}
