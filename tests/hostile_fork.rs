//! A hostile peer: speaks the wire protocol from the crate's own types and
//! misbehaves on purpose. Every case checks the victim's error variant, that
//! it returns within its timeout, that /proc/self/fd holds as many fds
//! afterwards (the harness checks this), and that the listener still serves
//! a good client afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;
use shmsock_testkit::peer::{
    self, raw_connect, raw_handshake, raw_send, seqpacket_pair as back_channel, RawClient,
};

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{
    sendmsg, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use shmsock::shm::ring::{self, segment_size, Consumer, Producer, HEADER_SIZE};
use shmsock::shm::{Segment, SegmentOptions};
use shmsock::wire::{Control, Hello, MAX_CONTROL_LEN, PROTOCOL_VERSION};
use shmsock::{Builder, Connection, Error, ProtocolViolation};

fn path() -> String {
    peer::unique_path("shmsock-hostile")
}

/// A memfd of `len` bytes, fully allocated (so that it is refused for what
/// the case means, not for being sparse), with `seals`.
fn memfd(len: u64, seals: nix::fcntl::SealFlag) -> OwnedFd {
    peer::memfd(len, len, seals)
}

const HS: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(30);

fn hello_bytes(cap: u64) -> Vec<u8> {
    peer::encode(Control::Hello(Hello {
        ring_capacity: cap,
        max_message: 1 << 30,
        flags: 0,
    }))
}

fn good_ring(cap: u64) -> Arc<Segment> {
    good_ring_and_producer(cap).0
}

fn good_ring_and_producer(cap: u64) -> (Arc<Segment>, Producer) {
    ring::create_segment(c"hostile", cap, SegmentOptions::default()).unwrap()
}

/// Runs `client` in a child against a fresh listener; returns what
/// `accept` gave, after checking it returned in time. Then checks that a
/// good client is still served.
fn against_server(client: impl FnOnce(&str) + 'static) -> shmsock::Result<Connection> {
    let p = path();
    let l = Builder::new().handshake_timeout(HS).bind(&p).unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || client(&p2));
    let t = Instant::now();
    let r = l.accept();
    assert!(t.elapsed() < HS + Duration::from_secs(2), "accept hung");
    drop(child); // kills and reaps the hostile child
                 // The listener still serves a good client.
    let good = common::spawn(move || {
        let mut c = Connection::connect(&p).unwrap();
        c.send(b"good").unwrap();
    });
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"good");
    good.wait(WAIT);
    r
}

fn expect_protocol(
    r: shmsock::Result<Connection>,
    what: &str,
    pred: impl Fn(&ProtocolViolation) -> bool,
) {
    match r {
        Err(Error::Protocol { violation, .. }) if pred(&violation) => {}
        other => panic!("{what}: expected a matching protocol violation, got {other:?}"),
    }
}

fn sleep_forever() {
    std::thread::sleep(Duration::from_secs(30));
}

fn version_mismatch_both_sides() {
    // Hostile client of version 2: server reports the mismatch, client gets
    // a Reject naming the server's version.
    let r = against_server(|p| {
        let s = raw_connect(p);
        let mut b = hello_bytes(4096);
        b[4..8].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        let ring = good_ring(4096);
        let (_a, bc) = back_channel();
        raw_send(s.as_fd(), &b, &[ring.fd(), bc.as_fd()]);
        let mut buf = [0u8; 64];
        let (_, n) = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
        match Control::decode(&buf[..n]).unwrap() {
            Control::Reject {
                version: PROTOCOL_VERSION,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    });
    assert!(
        matches!(r, Err(Error::VersionMismatch { ours: PROTOCOL_VERSION, theirs }) if theirs == PROTOCOL_VERSION + 1),
        "{r:?}"
    );
    // Hostile server of version 2: the client reports the mismatch.
    let p = path();
    let lsock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    rustix::net::bind(
        &lsock,
        &SocketAddrUnix::new_abstract_name(&p.as_bytes()[1..]).unwrap(),
    )
    .unwrap();
    rustix::net::listen(&lsock, 4).unwrap();
    let server = common::spawn(move || {
        let s = rustix::net::accept(&lsock).unwrap();
        let mut buf = [0u8; 64];
        let _ = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty());
        let mut b = [0u8; MAX_CONTROL_LEN];
        let n = Control::Welcome(Hello {
            ring_capacity: 4096,
            max_message: 1,
            flags: 0,
        })
        .encode(&mut b);
        b[4..8].copy_from_slice(&9u32.to_le_bytes());
        let ring = good_ring(4096);
        raw_send(s.as_fd(), &b[..n], &[ring.fd()]);
        sleep_forever();
    });
    let r = Builder::new().handshake_timeout(HS).connect(&p);
    assert!(
        matches!(
            r,
            Err(Error::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 9
            })
        ),
        "{r:?}"
    );
    drop(server);
}

fn bad_ring_fds_rejected() {
    use nix::fcntl::SealFlag as S;
    const SIZE: S = S::F_SEAL_SHRINK.union(S::F_SEAL_GROW).union(S::F_SEAL_SEAL);
    const ALL: S = SIZE.union(S::F_SEAL_FUTURE_WRITE);
    type Make = fn() -> OwnedFd;
    type Check = fn(&shmsock::shm::Error) -> bool;
    let cases: Vec<(&str, Make, Check)> = vec![
        (
            "size-sealed memfd the sender can still write",
            || memfd(segment_size(4096), SIZE),
            |e| matches!(e, shmsock::shm::Error::MissingSeals { .. }),
        ),
        (
            "unsealed memfd",
            || memfd(segment_size(4096), S::empty()),
            |e| matches!(e, shmsock::shm::Error::MissingSeals { .. }),
        ),
        (
            "growable memfd",
            || memfd(segment_size(4096), S::F_SEAL_SHRINK | S::F_SEAL_SEAL),
            |e| matches!(e, shmsock::shm::Error::MissingSeals { .. }),
        ),
        (
            "sealed memfd of the wrong size",
            || memfd(segment_size(8192), ALL),
            |e| matches!(e, shmsock::shm::Error::WrongSize { .. }),
        ),
        (
            "sparse sealed memfd of the right size",
            || peer::memfd(segment_size(4096), 0, ALL),
            |e| matches!(e, shmsock::shm::Error::NotFullyBacked { .. }),
        ),
        (
            "sealed memfd of the right size with a hole",
            || peer::memfd(segment_size(4096), 4096, ALL),
            |e| matches!(e, shmsock::shm::Error::NotFullyBacked { .. }),
        ),
        (
            "pipe",
            || nix::unistd::pipe().unwrap().0,
            |e| matches!(e, shmsock::shm::Error::NotMemfd(_)),
        ),
        (
            "socket",
            || back_channel().0,
            |e| matches!(e, shmsock::shm::Error::NotMemfd(_)),
        ),
        (
            "regular file",
            || {
                let mut f = tempfile_in_tmp();
                f.write_all(&vec![0u8; segment_size(4096) as usize])
                    .unwrap();
                OwnedFd::from(f)
            },
            |e| {
                matches!(
                    e,
                    shmsock::shm::Error::NotMemfd(_) | shmsock::shm::Error::MissingSeals { .. }
                )
            },
        ),
    ];
    for (what, make, pred) in cases {
        let r = against_server(move |p| {
            let s = raw_connect(p);
            let fd = make();
            let (_a, bc) = back_channel();
            raw_send(s.as_fd(), &hello_bytes(4096), &[fd.as_fd(), bc.as_fd()]);
            sleep_forever();
        });
        expect_protocol(
            r,
            what,
            |v| matches!(v, ProtocolViolation::BadMemfd(e) if pred(e)),
        );
    }
    // A sealed, fully backed memfd of the right size whose header is garbage.
    let r = against_server(|p| {
        let s = raw_connect(p);
        let fd = memfd(segment_size(4096), ALL);
        let (_a, bc) = back_channel();
        raw_send(s.as_fd(), &hello_bytes(4096), &[fd.as_fd(), bc.as_fd()]);
        sleep_forever();
    });
    expect_protocol(r, "zeroed ring header", |v| {
        matches!(v, ProtocolViolation::Ring(_))
    });
    // A back channel that is a pipe.
    let r = against_server(|p| {
        let s = raw_connect(p);
        let ring = good_ring(4096);
        let (rp, _wp) = nix::unistd::pipe().unwrap();
        raw_send(s.as_fd(), &hello_bytes(4096), &[ring.fd(), rp.as_fd()]);
        sleep_forever();
    });
    expect_protocol(r, "pipe back channel", |v| {
        matches!(v, ProtocolViolation::BadBackChannel)
    });
}

fn tempfile_in_tmp() -> std::fs::File {
    let fd = rustix::fs::open(
        std::env::temp_dir(),
        rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    std::fs::File::from(fd)
}

fn wrong_fd_counts_rejected() {
    // No fds where two are due.
    let r = against_server(|p| {
        let s = raw_connect(p);
        raw_send(s.as_fd(), &hello_bytes(4096), &[]);
        sleep_forever();
    });
    expect_protocol(r, "no fds", |v| {
        matches!(
            v,
            ProtocolViolation::FdCount {
                got: 0,
                expected: 2,
                ..
            }
        )
    });
    // Three fds.
    let r = against_server(|p| {
        let s = raw_connect(p);
        let ring = good_ring(4096);
        let (_a, bc) = back_channel();
        let (rp, _wp) = nix::unistd::pipe().unwrap();
        raw_send(
            s.as_fd(),
            &hello_bytes(4096),
            &[ring.fd(), bc.as_fd(), rp.as_fd()],
        );
        sleep_forever();
    });
    expect_protocol(r, "three fds", |v| {
        matches!(v, ProtocolViolation::FdCount { got: 3, .. })
    });
    // Far more fds than the control buffer holds: MSG_CTRUNC, all closed
    // (the harness's fd count proves it).
    let r = against_server(|p| {
        let s = raw_connect(p);
        let pipes: Vec<_> = (0..12).map(|_| nix::unistd::pipe().unwrap()).collect();
        let fds: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        raw_send(s.as_fd(), &hello_bytes(4096), &fds);
        sleep_forever();
    });
    expect_protocol(r, "12 fds", |v| {
        matches!(v, ProtocolViolation::ControlTruncated)
    });
}

fn garbage_and_silence() {
    let r = against_server(|p| {
        let s = raw_connect(p);
        raw_send(s.as_fd(), b"GET / HTTP/1.1\r\n\r\n", &[]);
        sleep_forever();
    });
    expect_protocol(r, "garbage", |v| {
        matches!(v, ProtocolViolation::Malformed(_))
    });
    let r = against_server(|p| {
        let s = raw_connect(p);
        raw_send(s.as_fd(), &[0xAB; 1000], &[]);
        sleep_forever();
    });
    expect_protocol(r, "oversized", |v| {
        matches!(
            v,
            ProtocolViolation::Oversized { .. } | ProtocolViolation::Malformed(_)
        )
    });
    // Connects and never speaks: handshake timeout.
    let r = against_server(|p| {
        let _s = raw_connect(p);
        sleep_forever();
    });
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    // A welcome sent to the server: unexpected.
    let r = against_server(|p| {
        let s = raw_connect(p);
        let mut b = [0u8; MAX_CONTROL_LEN];
        let n = Control::Welcome(Hello {
            ring_capacity: 4096,
            max_message: 1,
            flags: 0,
        })
        .encode(&mut b);
        let ring = good_ring(4096);
        raw_send(s.as_fd(), &b[..n], &[ring.fd()]);
        sleep_forever();
    });
    expect_protocol(r, "welcome to server", |v| {
        matches!(v, ProtocolViolation::Unexpected { .. })
    });
    // Limits out of range: a ring of 3 bytes, a ring beyond the maximum.
    for cap in [3u64, 1 << 41] {
        let r = against_server(move |p| {
            let s = raw_connect(p);
            let ring = good_ring(4096);
            let (_a, bc) = back_channel();
            raw_send(s.as_fd(), &hello_bytes(cap), &[ring.fd(), bc.as_fd()]);
            sleep_forever();
        });
        expect_protocol(r, "capacity", |v| {
            matches!(v, ProtocolViolation::BadLimit { .. })
        });
    }
}

const TAIL: usize = 128;
const HEAD: usize = 256;

/// The server receives from a client that corrupts its ring after sending
/// `good` valid messages. The server must get every good message intact
/// and then a protocol violation (or Disconnected), never a bad message.
fn ring_attack(what: &str, attack: fn(&RawClient)) {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(4096)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 4096);
        for seq in 0..10u64 {
            assert!(c.prod.try_push(&seq.to_le_bytes()).unwrap().is_some());
        }
        c.wake();
        std::thread::sleep(Duration::from_millis(50));
        attack(&c);
        c.wake();
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let mut got = 0u64;
    let t = Instant::now();
    let err = loop {
        match s.recv_timeout(Duration::from_secs(2)) {
            Ok(m) => {
                assert_eq!(
                    m.to_vec(),
                    got.to_le_bytes(),
                    "{what}: bad message delivered"
                );
                got += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "{what}: took {:?}",
        t.elapsed()
    );
    assert!(got <= 10, "{what}");
    assert!(matches!(err, Error::Protocol { .. }), "{what}: {err:?}");
    eprintln!("  {what}: {got} good messages, then: {err}");
    child.kill();
}

fn shared_memory_attacks() {
    ring_attack("tail backwards", |c| c.poke(TAIL, 8));
    ring_attack("tail beyond capacity", |c| c.poke(TAIL, 4096 * 3));
    ring_attack("tail huge", |c| c.poke(TAIL, u64::MAX - 7));
    ring_attack("tail misaligned", |c| c.poke(TAIL, 10 * 16 + 3));
    ring_attack("record length beyond ring", |c| {
        c.poke(HEADER_SIZE + 160, u64::from(u32::MAX));
        c.poke(TAIL, 160 + 16);
    });
    ring_attack("record length beyond limit", |c| {
        c.poke(HEADER_SIZE + 160, 3000);
        c.poke(TAIL, 160 + 3008);
    });
    ring_attack("reserved flags", |c| {
        c.poke(HEADER_SIZE + 160, 8 | (0x00ff_0000u64 << 32));
        c.poke(TAIL, 160 + 16);
    });
    ring_attack("unknown tag", |c| {
        c.poke(HEADER_SIZE + 160, 8 | (7u64 << 32));
        c.poke(TAIL, 160 + 16);
    });
    ring_attack("large announcement without fd", |c| {
        c.poke(HEADER_SIZE + 160, 16 | (1u64 << 32));
        c.poke(HEADER_SIZE + 168, 0);
        c.poke(HEADER_SIZE + 176, 100_000);
        c.poke(TAIL, 160 + 24);
    });
    ring_attack("flags flipped", |c| {
        // Every word of our own header: the server's consumer reads the
        // producer words, its producer the consumer words.
        c.poke(128 + 8, 0xffff_ffff); // producer_closed + pad
        c.poke(384, 1); // our reader park word (ring server -> us)
        c.poke(512, 1); // our writer park word (ring us -> server)
        c.poke(HEAD, 1 << 40); // our cursor of the server's ring: checked when it sends
        c.poke(TAIL, 4096 * 5);
    });
}

/// The server sends to a client that lies about its cursor of the
/// server's ring. Since protocol 2 that cursor lives in the client's own
/// segment (the only place it can lie): the server's producer must refuse
/// it with a protocol violation at its next refresh, never write over
/// records the client has not released, and never hang.
fn consumer_cursor_lies(what: &str, head: u64, pred: fn(&shmsock::shm::Violation) -> bool) {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(4096)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let c = raw_handshake(&p2, 4096);
        c.poke(HEAD, head);
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    let mut sent = 0u64;
    let err = loop {
        // The producer reloads `head` only when its cached copy says the
        // ring is full; a send that timed out before the lie landed just
        // tries again.
        match s.send_timeout(&[1u8; 100], Duration::from_millis(200)) {
            Ok(()) => sent += 1,
            Err(Error::Timeout) => {}
            Err(e) => break e,
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: no violation");
    };
    assert!(
        matches!(&err, Error::Protocol { violation: ProtocolViolation::Ring(v), .. } if pred(v)),
        "{what}: {err:?}"
    );
    eprintln!("  {what}: {sent} sent, then: {err}");
    child.kill();
}

fn consumer_cursor_attacks() {
    use shmsock::shm::Violation as V;
    consumer_cursor_lies("head beyond tail", 1 << 40, |v| {
        matches!(v, V::HeadBeyondTail { .. })
    });
    consumer_cursor_lies("head misaligned", 3, |v| matches!(v, V::Misaligned { .. }));
}

fn random_scribbler() {
    // A client that streams checksummed messages while a second thread
    // scribbles random words over its own segment (the only memory it can
    // write: its ring to the server and its words of the server's ring).
    // The server either keeps
    // receiving intact messages or reports a violation; it never delivers a
    // message whose checksum fails as if it were good... unless the
    // scribbler hit payload bytes, which the checksum catches: then the
    // test counts it as detected corruption, which shmsock cannot prevent
    // (payload bytes are the peer's to write), not as a transport failure.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(1 << 16)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 1 << 16);
        let seg = c.ours.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let scribbler = std::thread::spawn(move || {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            std::thread::sleep(Duration::from_millis(20));
            while !stop2.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (x as usize % seg.len()) & !7;
                // SAFETY: in bounds, aligned, atomic store into shared memory.
                unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off).cast()) }
                    .store(x.rotate_left(17), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let start = Instant::now();
        let mut seq = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            let mut b = [0u8; 64];
            b[..8].copy_from_slice(&seq.to_le_bytes());
            b[8..16].copy_from_slice(&(!seq).to_le_bytes());
            match c.prod.try_push(&b) {
                Ok(Some(_)) => seq += 1,
                Ok(None) => std::thread::yield_now(),
                Err(_) => break,
            }
            if seq.is_multiple_of(64) {
                c.wake();
            }
        }
        stop.store(true, Ordering::Relaxed);
        scribbler.join().unwrap();
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    let mut ok = 0u64;
    let mut corrupt = 0u64;
    let end = loop {
        match s.recv_timeout(Duration::from_secs(3)) {
            Ok(m) => {
                // Every delivered message is within bounds; check its body.
                assert!(m.len() <= 1 << 15);
                let v = m.to_vec();
                if v.len() == 64
                    && u64::from_le_bytes(v[..8].try_into().unwrap())
                        == !u64::from_le_bytes(v[8..16].try_into().unwrap())
                {
                    ok += 1;
                } else {
                    corrupt += 1;
                }
            }
            Err(e) => break e,
        }
        assert!(t.elapsed() < Duration::from_secs(20), "scribbler test hung");
    };
    assert!(
        matches!(end, Error::Protocol { .. } | Error::Timeout),
        "{end:?} after {ok} good, {corrupt} corrupt"
    );
    eprintln!("  scribbler: {ok} intact, {corrupt} with scribbled payload, then {end}");
    child.kill();
}

/// Reads a word of a raw client's read-only view of the server's segment.
fn their_word(c: &RawClient, off: usize) -> u64 {
    let seg = &c.theirs_seg;
    // SAFETY: in bounds of the mapped header, 8-aligned; a Relaxed atomic
    // load, which works on a read-only mapping.
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off).cast()) }.load(Ordering::Relaxed)
}

fn producer_that_never_wakes() {
    // The server parks (Block), the hostile client then commits without a
    // wake-up: the server's recv must end at its timeout, not hang, and the
    // record is still there for the next call.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .wait(shmsock::WaitStrategy::Block)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 4096);
        // Wait until the server's consumer is parked on our ring: its park
        // word (in the server's segment) is odd.
        let t = Instant::now();
        while their_word(&c, 384).is_multiple_of(2) {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        let owed = c.prod.try_push(b"silent").unwrap().unwrap();
        // A hostile peer: the wake-up is never paid (forgotten, so that
        // not even Drop pays it).
        std::mem::forget(owed);
        c.prod.unpark();
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    let timed_out = {
        let r = s.recv_timeout(Duration::from_millis(300));
        // Either the commit raced ahead of the park (delivered) or the
        // timeout fired; what must not happen is waiting past the timeout.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "recv overran its timeout"
        );
        match r {
            Ok(m) => {
                assert_eq!(m.to_vec(), b"silent");
                false
            }
            Err(Error::Timeout) => true,
            Err(e) => panic!("{e}"),
        }
    };
    if timed_out {
        assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"silent");
    }
    child.kill();
}

fn reader_that_never_releases() {
    // The hostile client never reads: the server's sends fill the ring and
    // then end at the timeout.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(4096)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let c = raw_handshake(&p2, 4096);
        let _ = their_word(&c, 128);
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    let mut sent = 0;
    let err = loop {
        match s.send_timeout(&[1u8; 100], Duration::from_millis(200)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 10_000, "ring never filled");
    };
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    child.kill();
}

fn wakeup_flood() {
    // Thousands of wake-ups around every real message: every message
    // arrives intact and in order, and the receiver keeps up.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .wait(shmsock::WaitStrategy::Block)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 1 << 16);
        for seq in 0..5000u64 {
            while c.prod.try_push(&seq.to_le_bytes()).unwrap().is_none() {
                std::thread::yield_now();
            }
            for _ in 0..20 {
                c.wake();
            }
        }
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    for seq in 0..5000u64 {
        assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), seq.to_le_bytes());
    }
    child.kill();
}

/// Wakes every waiter on a word of our own segment, as a flooding peer
/// would (the word the victim sleeps on).
fn futex_wake_word(c: &RawClient, off: usize) {
    // SAFETY: in bounds of our own mapped header and 4-aligned.
    let w = unsafe { std::sync::atomic::AtomicU32::from_ptr(c.ours.as_ptr().add(off).cast()) };
    let _ = rustix::thread::futex::wake(w, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
}

const DATA_WAKE: usize = 640;

fn futex_wake_flood() {
    // The server's recv parks for a futex wake-up and sleeps on our
    // `data_wake` word. We flood FUTEX_WAKE on it, and change the word
    // (so its FUTEX_WAIT returns at once), without publishing anything:
    // the server only wakes spuriously, re-checks, and its timeout holds.
    // Then a real message still arrives intact.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .wait(shmsock::WaitStrategy::Block)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 4096);
        let t = Instant::now();
        let mut n = 0u64;
        let mut sent = false;
        // Flood for 1.5 s, publish one message, flood on.
        while t.elapsed() < Duration::from_secs(30) {
            for _ in 0..64 {
                n += 1;
                c.poke(DATA_WAKE, n);
                futex_wake_word(&c, DATA_WAKE);
            }
            if !sent && t.elapsed() > Duration::from_millis(1500) {
                let w = c.prod.try_push(b"real").unwrap().unwrap();
                std::mem::forget(w); // the flood wakes it anyway
                sent = true;
            }
        }
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    let r = s
        .recv_timeout(Duration::from_millis(500))
        .map(|m| m.to_vec());
    let took = t.elapsed();
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(took >= Duration::from_millis(500));
    assert!(
        took < Duration::from_secs(2),
        "flood delayed the timeout: {took:?}"
    );
    assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"real");
    child.kill();
}

fn dead_peer_seen_while_futex_parked() {
    // The server's recv without a timeout sleeps on a futex (no socket
    // wake-up can come); the peer dies while it does: the recv ends with
    // Disconnected at the slice's end, not never.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .wait(shmsock::WaitStrategy::Block)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let c = raw_handshake(&p2, 4096);
        // Until the server sleeps (its park word is odd), then die.
        let t = Instant::now();
        while their_word(&c, 384).is_multiple_of(2) {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        // At once: the server's futex phase lasts 20 ms, then it sleeps on
        // the socket, where a death shows without a slice.
        std::process::exit(0);
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    // A lost death would end at the 20 s timeout instead.
    let r = s.recv_timeout(Duration::from_secs(20));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "death noticed late: {:?}",
        t.elapsed()
    );
    child.wait(WAIT);
}

fn long_futex_wait_moves_to_the_socket() {
    // A blocked recv first sleeps on a futex (bit 63 of its park word set),
    // and once a futex slice (20 ms) has passed without a wake-up it parks
    // asking for a socket wake-up (bit 63 clear), which the peer's death
    // ends at once. Before, it slept in 200 ms futex slices for the whole
    // wait, and on a loaded machine the timer wake-up that ended a slice
    // came so late that a SIGKILLed peer was noticed 1.5 s after its death
    // (`sigkill_at_random_points`). The peer watches our park word (it
    // must: it owes that episode a wake-up of the kind its bit 63 asks
    // for), then wakes us the way the second episode asks.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .wait(shmsock::WaitStrategy::Block)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 4096);
        let t = Instant::now();
        let park = |c: &RawClient| their_word(c, 384);
        // First a futex episode, then a socket one, within 10 s.
        while park(&c) % 2 == 0 || park(&c) & (1 << 63) == 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "never futex-parked");
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            let w = park(&c);
            if w % 2 == 1 && w & (1 << 63) == 0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "still futex-parked after 10 s: {w:#x}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // The record, and the wake-up the episode asks for: a WakeData
        // datagram, nothing on the futex.
        let owed = c.prod.try_push(b"after the switch").unwrap().unwrap();
        assert_eq!(owed.kind(), Some(shmsock::shm::ring::WakeKind::Socket));
        owed.redeem(|| {
            let mut b = [0u8; MAX_CONTROL_LEN];
            let n = Control::WakeData.encode(&mut b);
            rustix::net::send(&c.sock, &b[..n], SendFlags::NOSIGNAL).map(drop)
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut s = l.accept().unwrap();
    let r = s.recv_timeout(Duration::from_secs(20)).map(|m| m.to_vec());
    assert_eq!(r.unwrap(), b"after the switch");
    child.wait(WAIT);
}

fn thousand_connections_while_one_streams() {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(Duration::from_millis(300))
        .ring_capacity(1 << 14)
        .bind(&p)
        .unwrap();
    const MSGS: u64 = 50_000;
    // Fork every client before the server starts threads.
    let p1 = p.clone();
    let good = common::spawn(move || {
        let mut c = Builder::new().ring_capacity(1 << 14).connect(&p1).unwrap();
        for seq in 0..MSGS {
            let data = seq.wrapping_mul(0x9e37_79b9).to_le_bytes();
            c.send(&data).unwrap();
            assert_eq!(
                c.recv_timeout(WAIT).unwrap().to_vec(),
                data,
                "good stream corrupted"
            );
        }
    });
    let p2 = p.clone();
    let churn = common::spawn(move || {
        for i in 0..1000 {
            match i % 3 {
                // Full handshake, then drop.
                0 => drop(Builder::new().ring_capacity(1 << 12).connect(&p2).unwrap()),
                // Connect and hang up at once.
                1 => drop(raw_connect(&p2)),
                // Send half a handshake (garbage), then hang up.
                _ => {
                    let s = raw_connect(&p2);
                    raw_send(s.as_fd(), b"junk", &[]);
                }
            }
        }
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let server = std::thread::spawn(move || {
        let mut workers = Vec::new();
        let mut accepted = 0;
        l.set_nonblocking(true).unwrap();
        while !stop2.load(Ordering::Relaxed) {
            match l.accept() {
                Ok(mut c) => {
                    accepted += 1;
                    workers.push(std::thread::spawn(move || loop {
                        let v = match c.recv_timeout(WAIT) {
                            Ok(m) => m.to_vec(),
                            Err(_) => return,
                        };
                        if c.send(&v).is_err() {
                            return;
                        }
                    }));
                    workers.retain(|w| !w.is_finished());
                }
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => {} // a bad client: keep serving
            }
        }
        for w in workers {
            w.join().unwrap();
        }
        accepted
    });
    churn.wait(WAIT);
    good.wait(Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    let accepted = server.join().unwrap();
    // The good client plus every third churned connection completed a handshake.
    assert!(accepted > 333, "accepted {accepted}");
}

fn sigkill_at_random_points() {
    // 200 deaths at random moments: during the handshake, mid-stream,
    // mid large message, while parked. Each time the survivor gets
    // Disconnected (or a handshake error) within a second of the kill, the
    // stream it saw is an unbroken prefix of what was sent, and no fd leaks
    // (the harness counts them).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut outcomes = [0u32; 3];
    for round in 0..200u64 {
        let p = path();
        let wait = match round % 3 {
            0 => shmsock::WaitStrategy::Spin,
            1 => shmsock::WaitStrategy::Block,
            _ => shmsock::WaitStrategy::default(),
        };
        let l = Builder::new()
            .wait(wait)
            .handshake_timeout(Duration::from_millis(500))
            .ring_capacity(1 << 14)
            .bind(&p)
            .unwrap();
        let p2 = p.clone();
        let mode = rnd() % 4;
        let mut child = common::spawn(move || {
            let mut c = Builder::new()
                .wait(wait)
                .ring_capacity(1 << 14)
                .connect(&p2)
                .unwrap();
            let mut seq = 0u64;
            loop {
                match mode {
                    // Large messages only (mid large-message deaths).
                    0 => {
                        let mut v = vec![(seq as u8) ^ 0x5a; 20_000];
                        v[..8].copy_from_slice(&seq.to_le_bytes());
                        c.send(&v).unwrap();
                    }
                    // Slow trickle: the survivor is parked most of the time.
                    1 => {
                        c.send(&seq.to_le_bytes()).unwrap();
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    _ => {
                        let mut v = [0u8; 64];
                        v[..8].copy_from_slice(&seq.to_le_bytes());
                        v[8..16].copy_from_slice(&(!seq).to_le_bytes());
                        c.send(&v).unwrap();
                    }
                }
                seq += 1;
            }
        });
        let delay = Duration::from_micros(rnd() % 3000);
        let pid = child.pid;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            Instant::now()
        });
        // The child may die before it connects: accept without blocking
        // until the kill is well past.
        l.set_nonblocking(true).unwrap();
        let conn = loop {
            match l.accept() {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    if killer.is_finished() && child.try_reap() {
                        // Dead and reaped, and nobody in the accept queue.
                        match l.accept() {
                            Err(Error::Io { source, .. })
                                if source.kind() == std::io::ErrorKind::WouldBlock =>
                            {
                                break Err(Error::Disconnected)
                            }
                            other => break other,
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                other => break other,
            }
        };
        let mut next = 0u64;
        let end = match conn {
            Err(e) => {
                outcomes[0] += 1;
                assert!(
                    matches!(
                        e,
                        Error::Disconnected
                            | Error::Timeout
                            | Error::Io { .. }
                            | Error::Protocol { .. }
                    ),
                    "handshake death: {e:?}"
                );
                None
            }
            Ok(mut s) => loop {
                match s.recv_timeout(Duration::from_secs(5)) {
                    Ok(m) => {
                        let v = m.to_vec();
                        let seq = u64::from_le_bytes(v[..8].try_into().unwrap());
                        assert_eq!(seq, next, "gap or reorder after a kill");
                        if v.len() == 64 {
                            assert_eq!(v[8..16], (!seq).to_le_bytes());
                        }
                        if v.len() == 20_000 {
                            assert!(v[8..].iter().all(|&b| b == (seq as u8) ^ 0x5a));
                        }
                        next += 1;
                    }
                    Err(Error::Disconnected) => break Some(Instant::now()),
                    Err(e) => panic!("round {round}: {e:?}"),
                }
            },
        };
        let killed = killer.join().unwrap();
        if let Some(end) = end {
            outcomes[if next == 0 { 1 } else { 2 }] += 1;
            let lag = end.saturating_duration_since(killed);
            assert!(
                lag < Duration::from_secs(1),
                "round {round}: Disconnected {lag:?} after the kill"
            );
        }
        child.kill();
    }
    eprintln!(
        "  deaths: {} during handshake, {} before the first message, {} mid-stream",
        outcomes[0], outcomes[1], outcomes[2]
    );
}

fn inline_longer_than_max_message() {
    // Regression: max_message used to bind only large messages; a peer
    // could deliver inline messages up to half its ring regardless.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .max_message(100)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 4096);
        assert!(c.prod.try_push(&[7u8; 100]).unwrap().is_some());
        assert!(c.prod.try_push(&[7u8; 200]).unwrap().is_some());
        c.wake();
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_timeout(WAIT).unwrap().len(), 100);
    let r = s.recv_timeout(WAIT).map(|m| m.len());
    assert!(
        matches!(
            r,
            Err(Error::Protocol {
                violation: ProtocolViolation::BadLimit { value: 200, .. },
                ..
            })
        ),
        "{r:?}"
    );
    child.kill();
}

fn large_send_times_out_against_a_peer_that_never_reads() {
    // Regression (protocol 1): the fd of a large message was sent with a
    // blocking sendmsg that ignored the deadline. Large messages now stream
    // through the ring; the deadline must still bound them. A peer that keeps
    // starting new park episodes (a new odd value in its own reader park
    // word, as fast as it can) and never reads its socket fills the socket
    // with wake-ups; the
    // victim's send_timeout must still return at its deadline. The victim
    // runs in the child so that a hang is caught by the watchdog.
    let p = path();
    let p2 = p.clone();
    let victim = common::spawn(move || {
        let l = Builder::new()
            .handshake_timeout(Duration::from_secs(5))
            .ring_capacity(1 << 20)
            .bind(&p2)
            .unwrap();
        let mut s = l.accept().unwrap();
        // Let the hostile loop start, then send many small messages: each
        // owes the "parked" peer a wake-up, until its socket is full.
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..3000 {
            s.send_timeout(&[1u8; 64], Duration::from_secs(5)).unwrap();
            // Give the hostile loop time to set the flag again.
            std::thread::sleep(Duration::from_micros(30));
        }
        let t = Instant::now();
        // More than the ring holds: the fragments fill it and the call must
        // give up at its deadline.
        let r = s.send_timeout(&vec![2u8; 2 << 20], Duration::from_millis(300));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
    });
    // The hostile client: connect (retrying until the child listens).
    let t = Instant::now();
    let c = loop {
        let s = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let addr = SocketAddrUnix::new_abstract_name(&p.as_bytes()[1..]).unwrap();
        if rustix::net::connect(&s, &addr).is_ok() {
            drop(s);
            break raw_handshake(&p, 4096);
        }
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(2));
    };
    // Claim a new park episode over and over on the victim's ring (our
    // reader park word lives in our own segment), never read.
    let done = Instant::now();
    let mut spins = 0u64;
    let mut episode = 1u64;
    while done.elapsed() < Duration::from_secs(10) {
        c.poke(384, episode);
        episode += 2;
        std::hint::spin_loop();
        spins += 1;
        if spins.is_multiple_of(65_536) && common::child_done(&victim) {
            break;
        }
    }
    victim.wait(WAIT);
    drop(c);
}

/// Shmem of the whole machine (tmpfs and memfd pages), in bytes.
fn shmem_bytes() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = m.lines().find(|l| l.starts_with("Shmem:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A record header word: payload length and tag (see docs/shm-layout.md).
fn record_word(len: u64, tag: u64) -> u64 {
    len | (tag << 32)
}

fn length_flip_cannot_bypass_max_message() {
    // Defect 2 (double fetch): the receiver checked the length it got from
    // `peek()` against max_message, then `try_read()` loaded the header
    // again. A peer flipping the length word got 500,000 bytes past a
    // max_message of 1000. Each trial is one connection whose first record
    // is flipped between 500 and 500,000 bytes by a thread of the peer.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(1 << 20)
        .max_message(1000)
        .bind(&p)
        .unwrap();
    let trials = 200;
    let p2 = p.clone();
    let child = common::spawn(move || {
        for _ in 0..trials {
            let c = raw_handshake(&p2, 1 << 20);
            let seg = c.ours.clone();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let flipper = std::thread::spawn(move || {
                // SAFETY: the first record header lies in the mapped data
                // area; an atomic store into shared memory.
                let w = unsafe { AtomicU64::from_ptr(seg.as_ptr().add(HEADER_SIZE).cast()) };
                // Hold each value for a moment, about as long as the gap
                // between two loads of the victim, so that a flip often
                // lands between them.
                let mut hold = 1u32;
                while !stop2.load(Ordering::Relaxed) {
                    for len in [500, 500_000] {
                        w.store(record_word(len, 0), Ordering::Relaxed);
                        for _ in 0..hold {
                            std::hint::spin_loop();
                        }
                    }
                    hold = hold % 64 + 1;
                }
            });
            // The cursor covers the long form, so either length is in bounds.
            c.poke(TAIL, 500_008);
            c.wake();
            // Wait for the server to finish with this connection.
            let mut b = [0u8; 8];
            let _ = rustix::net::recv(&c.sock, &mut b, rustix::net::RecvFlags::empty());
            stop.store(true, Ordering::Relaxed);
            flipper.join().unwrap();
        }
        sleep_forever();
    });
    let mut delivered_long = 0;
    for _ in 0..trials {
        let mut s = l.accept().unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(20) {
            match s.recv_timeout(Duration::from_millis(20)) {
                Ok(m) => {
                    if m.len() > 1000 {
                        delivered_long += 1;
                    }
                }
                Err(_) => break,
            }
        }
    }
    child.kill();
    assert_eq!(
        delivered_long, 0,
        "messages longer than max_message delivered"
    );
}

/// A lying producer: `TAG_FRAG_START` (announcing 1 MiB) and
/// `TAG_FRAG_ABORT` records, each written in order as soon as it fits, with
/// a wake-up after each, until `stop` is set or the ring fails.
fn write_start_abort_pairs(c: &mut RawClient, stop: &std::sync::atomic::AtomicBool) {
    let mut first = [0u8; 16];
    first[..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    for tag in [2u16, 4].into_iter().cycle() {
        let len = if tag == 2 { first.len() } else { 0 };
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match c.prod.try_reserve_tagged(len, tag) {
                Ok(Some(mut g)) => {
                    g.fill_from(&first[..len]);
                    let _ = g.commit();
                    break;
                }
                Ok(None) => std::thread::yield_now(),
                Err(_) => return,
            }
        }
        c.wake();
    }
}

/// Writes one record (tag, payload) as soon as it fits, then wakes.
fn write_record(c: &mut RawClient, tag: u16, payload: &[u8]) {
    loop {
        match c.prod.try_reserve_tagged(payload.len(), tag) {
            Ok(Some(mut g)) => {
                g.fill_from(payload);
                let _ = g.commit();
                break;
            }
            Ok(None) => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    c.wake();
}

/// A first fragment announcing `total` bytes with `first` payload bytes.
fn frag_start(total: u64, first: usize) -> Vec<u8> {
    let mut v = vec![0u8; 8 + first];
    v[..8].copy_from_slice(&total.to_le_bytes());
    v
}

/// The piece-by-piece reader (`read_message`) meets a lying sender: every
/// lie is a typed error within the call's bound, and a stall is a timeout.
fn streaming_reader_refuses_lies() {
    type Lie = fn(&mut RawClient);
    let lies: [(&str, Lie, bool); 6] = [
        // (what, the lie, whether `read_message` itself fails)
        (
            "announces more than max_message",
            |c| write_record(c, 2, &frag_start(2 << 20, 100)),
            true,
        ),
        (
            "announces no more than its first fragment",
            |c| write_record(c, 2, &frag_start(100, 100)),
            true,
        ),
        (
            "fragment past the announced length",
            |c| {
                write_record(c, 2, &frag_start(1000, 100));
                write_record(c, 3, &[7; 2000]);
            },
            false,
        ),
        (
            "inline record inside a message",
            |c| {
                write_record(c, 2, &frag_start(1000, 100));
                write_record(c, 0, b"inline");
            },
            false,
        ),
        (
            "abort record with a payload",
            |c| {
                write_record(c, 2, &frag_start(1000, 100));
                write_record(c, 4, &[1; 8]);
            },
            false,
        ),
        (
            "first fragment, then silence and a wake-up flood",
            |c| {
                write_record(c, 2, &frag_start(1000, 100));
                for _ in 0..100_000 {
                    c.wake();
                }
            },
            false,
        ),
    ];
    for (what, lie, at_start) in lies {
        let p = path();
        let l = Builder::new()
            .handshake_timeout(HS)
            .ring_capacity(1 << 16)
            .max_message(1 << 20)
            .bind(&p)
            .unwrap();
        let p2 = p.clone();
        let child = common::spawn(move || {
            let mut c = raw_handshake(&p2, 1 << 16);
            lie(&mut c);
            sleep_forever();
        });
        let mut s = l.accept().unwrap();
        let bound = Duration::from_millis(300);
        let t = Instant::now();
        let r = match s.receiver().read_message_timeout(bound) {
            Err(e) => Err(e),
            Ok(mut reader) => {
                assert!(!at_start, "{what}: read_message accepted the start");
                let mut piece = Vec::new();
                loop {
                    match reader.next_chunk_timeout(&mut piece, bound) {
                        Ok(true) => assert!(piece.len() <= 1000),
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        let took = t.elapsed();
        eprintln!("  {what}: {r:?} after {took:?}");
        assert!(
            took < 2 * bound + Duration::from_secs(5),
            "{what}: took {took:?}"
        );
        match r {
            Err(Error::Timeout) => assert!(what.contains("silence"), "{what}: timed out"),
            Err(Error::Protocol { .. }) => assert!(!what.contains("silence"), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        child.kill();
    }
}

fn fragment_stalls_and_floods_are_bounded_by_the_deadline() {
    // Defect 3: `take_large` drained the socket until the announced fd
    // showed up, without a deadline: a peer that announced a large message
    // without its fd and flooded wake-ups held a 1 s recv for 6.2 s.
    // Each peer-fed loop must end at the call's deadline.
    type Attack = fn(&mut RawClient, &std::sync::atomic::AtomicBool);
    let attacks: [(&str, Attack); 3] = [
        (
            "protocol-1 announcement without fd + wake-up flood",
            |c, stop| {
                // Fill the victim's socket with wake-ups first, then
                // announce, then keep it full (blocking sends) so that it is
                // never empty.
                let mut b = [0u8; MAX_CONTROL_LEN];
                let n = Control::WakeData.encode(&mut b);
                let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
                while rustix::net::send(&c.sock, &b[..n], flags).is_ok() {}
                c.poke(HEADER_SIZE, record_word(16, 1));
                c.poke(HEADER_SIZE + 8, 0);
                c.poke(HEADER_SIZE + 16, 100_000);
                c.poke(TAIL, 24);
                // Several flooding threads, so the victim's drain never
                // finds the queue empty (the peer held a 1 s recv
                // for 6.2 s this way).
                let floods: Vec<_> = (0..6)
                    .map(|_| {
                        let sock = c.sock.try_clone().unwrap();
                        std::thread::spawn(move || {
                            while rustix::net::send(&sock, &b[..n], SendFlags::NOSIGNAL).is_ok() {}
                        })
                    })
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(floods);
            },
        ),
        ("first fragment, then silence + wake-up flood", |c, stop| {
            let mut first = vec![0u8; 8 + 100];
            first[..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
            let mut g = c.prod.try_reserve_tagged(first.len(), 2).unwrap().unwrap();
            g.fill_from(&first);
            let _ = g.commit();
            while !stop.load(Ordering::Relaxed) {
                c.wake();
            }
        }),
        ("endless start/abort pairs", write_start_abort_pairs),
    ];
    for (what, attack) in attacks {
        let p = path();
        let l = Builder::new()
            .handshake_timeout(HS)
            .ring_capacity(1 << 16)
            .bind(&p)
            .unwrap();
        let p2 = p.clone();
        let child = common::spawn(move || {
            let mut c = raw_handshake(&p2, 1 << 16);
            let stop = std::sync::atomic::AtomicBool::new(false);
            attack(&mut c, &stop);
            sleep_forever();
        });
        let mut s = l.accept().unwrap();
        let t = Instant::now();
        let r = s.recv_timeout(Duration::from_millis(300)).map(|m| m.len());
        let took = t.elapsed();
        eprintln!("  {what}: {r:?} after {took:?}");
        if what.starts_with("endless") {
            // More aborts in one call than an honest sender's timeouts
            // allow: a violation, long before the deadline.
            assert!(
                matches!(
                    r,
                    Err(Error::Protocol {
                        violation: ProtocolViolation::Fragment(_),
                        ..
                    })
                ),
                "{what}: {r:?}"
            );
        }
        assert!(
            took < Duration::from_millis(800),
            "{what}: recv_timeout(300 ms) took {took:?}"
        );
        assert!(
            matches!(r, Err(Error::Timeout | Error::Protocol { .. })),
            "{what}: {r:?}"
        );
        child.kill();
    }
}

fn peer_cannot_make_us_hold_large_message_memory() {
    // Defects 4 and 5. (4) A sealed memfd that was only ftruncate'd costs
    // its sender nothing; the victim mapping it with MAP_POPULATE paid for
    // the pages. (5) The "8 large messages in flight" bound was released by
    // the peer's cursor: a peer that consumed each announcement at once and
    // kept the fds made the victim create 16 x 16 MiB of memfds. Both are
    // measured as growth of the machine's Shmem while the attack runs.
    // Large messages now stream through the ring: no memfd per message.
    let before = shmem_bytes();
    // (5) The victim sends 16 x 16 MiB to a peer that consumes instantly
    // and hoards every fd it is sent.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(1 << 20)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let hoarder = common::spawn(move || {
        let mut c = raw_handshake(&p2, 1 << 20);
        let mut hoard = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            while let Ok(Some(g)) = c.theirs.try_read() {
                drop(g);
            }
            let mut buf = [0u8; 64];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
            let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
            if let Ok(r) = rustix::net::recvmsg(
                &c.back,
                &mut [std::io::IoSliceMut::new(&mut buf)],
                &mut cmsg,
                rustix::net::RecvFlags::DONTWAIT,
            ) {
                if r.bytes == 0 {
                    break;
                }
                for m in cmsg.drain() {
                    if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
                        hoard.extend(it);
                    }
                }
            }
            // Wake the victim's producer now and then, in case it parked.
            let mut b = [0u8; MAX_CONTROL_LEN];
            let n = Control::WakeSpace.encode(&mut b);
            let _ = rustix::net::send(&c.back, &b[..n], SendFlags::NOSIGNAL | SendFlags::DONTWAIT);
        }
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let big = vec![5u8; 16 << 20];
    let mut peak = 0;
    for _ in 0..16 {
        s.send_timeout(&big, Duration::from_secs(10)).unwrap();
        peak = peak.max(shmem_bytes().saturating_sub(before));
    }
    eprintln!("  hoarder: Shmem grew by at most {} MiB", peak >> 20);
    assert!(peak < 96 << 20, "Shmem grew by {} MiB", peak >> 20);
    drop(s);
    hoarder.kill();

    // (4) The peer sends 8 x 32 MiB sparse sealed memfds as protocol-1
    // large messages; the victim must not pay for their pages.
    let before = shmem_bytes();
    let p = path();
    let l = Builder::new().handshake_timeout(HS).bind(&p).unwrap();
    let p2 = p.clone();
    let sparse = common::spawn(move || {
        let mut c = raw_handshake(&p2, 1 << 16);
        use nix::fcntl::SealFlag as S;
        for seq in 0..8u64 {
            // Sparse, as the case says: ftruncate'd, no page allocated.
            let fd = peer::memfd(
                32 << 20,
                0,
                S::F_SEAL_SHRINK | S::F_SEAL_GROW | S::F_SEAL_WRITE | S::F_SEAL_SEAL,
            );
            let mut b = [0u8; MAX_CONTROL_LEN];
            let n = Control::Large { seq, len: 32 << 20 }.encode(&mut b);
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut cmsg = SendAncillaryBuffer::new(&mut space);
            let fds = [fd.as_fd()];
            assert!(cmsg.push(SendAncillaryMessage::ScmRights(&fds)));
            let _ = sendmsg(
                &c.sock,
                &[IoSlice::new(&b[..n])],
                &mut cmsg,
                SendFlags::NOSIGNAL,
            );
            let mut ann = [0u8; 16];
            ann[..8].copy_from_slice(&seq.to_le_bytes());
            ann[8..].copy_from_slice(&(32u64 << 20).to_le_bytes());
            if let Ok(Some(mut g)) = c.prod.try_reserve_tagged(16, 1) {
                g.fill_from(&ann);
                let _ = g.commit();
            }
            c.wake();
        }
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let mut held = Vec::new();
    let end = loop {
        match s.recv_timeout(Duration::from_secs(2)) {
            Ok(m) => held.push(m.len()),
            Err(e) => break e,
        }
        if held.len() >= 8 {
            break Error::Timeout;
        }
    };
    let grew = shmem_bytes().saturating_sub(before);
    eprintln!(
        "  sparse memfds: {} delivered, then {end}; Shmem grew by {} MiB",
        held.len(),
        grew >> 20
    );
    assert!(held.is_empty(), "sparse large messages were delivered");
    assert!(matches!(end, Error::Protocol { .. }), "{end:?}");
    assert!(grew < 96 << 20, "Shmem grew by {} MiB", grew >> 20);
    sparse.kill();
}

fn stalled_live_peer_and_the_default_timeout() {
    // Defect 7: what the defaults promise, as documented in the README and
    // the guide: with `Builder::new()` a live peer that stops reading blocks
    // `send` (as a blocking socket does) until it reads or dies; its death
    // ends the wait promptly with `Disconnected`; a configured timeout ends
    // it with `Timeout`.
    for configured in [false, true] {
        let p = path();
        let l = Builder::new().ring_capacity(1 << 12).bind(&p).unwrap();
        let p2 = p.clone();
        let stalled = common::spawn(move || {
            let _c = raw_handshake(&p2, 1 << 12);
            sleep_forever();
        });
        // The victim accepts in its own process, so that a hang is caught
        // by the watchdog and no copy of the connection stays here.
        let victim = common::spawn(move || {
            let mut s = l.accept().unwrap();
            let t = Instant::now();
            let mut opts_timeout = None;
            if configured {
                opts_timeout = Some(Duration::from_millis(300));
            }
            let r = loop {
                let r = match opts_timeout {
                    Some(d) => s.send_timeout(&[1u8; 512], d),
                    None => s.send(&[1u8; 512]),
                };
                if r.is_err() {
                    break r;
                }
            };
            if configured {
                assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
            } else {
                // Only the peer's death (below, after 500 ms) ends it.
                assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
                assert!(
                    t.elapsed() >= Duration::from_millis(400),
                    "{:?}",
                    t.elapsed()
                );
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let killed = Instant::now();
        stalled.kill();
        let mut victim = victim;
        let st = victim.wait_status(WAIT);
        assert!(
            matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "victim ended with {st:?}"
        );
        if !configured {
            assert!(
                killed.elapsed() < Duration::from_secs(2),
                "Disconnected took {:?} after the kill",
                killed.elapsed()
            );
        }
    }
}

fn duration_max_means_wait_forever() {
    // Defect 10: `recv_timeout(Duration::MAX)`, `send_timeout(.., MAX)` and
    // `Builder::timeout(Some(MAX))` panicked with "overflow when adding
    // duration to instant". They now wait without a deadline.
    let p = path();
    let l = Builder::new()
        .timeout(Some(Duration::MAX))
        .ring_capacity(1 << 12)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let client = common::spawn(move || {
        let mut c = Builder::new()
            .timeout(Some(Duration::MAX))
            .ring_capacity(1 << 12)
            .connect(&p2)
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        c.send_timeout(b"one", Duration::MAX).unwrap();
        c.send(&[3u8; 10_000]).unwrap();
        assert_eq!(c.recv().unwrap().to_vec(), b"two");
    });
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_timeout(Duration::MAX).unwrap().to_vec(), b"one");
    assert_eq!(s.recv().unwrap().len(), 10_000);
    s.send_timeout(b"two", Duration::MAX).unwrap();
    client.wait(WAIT);
}

fn default_limits_bound_what_a_peer_can_make_us_hold() {
    // The memory a peer can make a connection hold, with `Builder::new()`:
    // its ring mapping (at most max_peer_ring = 64 MiB, fully backed by the
    // peer) and one reassembly buffer (at most max_message = 64 MiB, grown
    // only as bytes arrive). A larger ring or a longer message is refused
    // before any memory is taken for it.
    let r = against_server(|p| {
        let s = raw_connect(p);
        let ring = good_ring(128 << 20);
        let (_a, bc) = back_channel();
        raw_send(s.as_fd(), &hello_bytes(128 << 20), &[ring.fd(), bc.as_fd()]);
        sleep_forever();
    });
    expect_protocol(
        r,
        "128 MiB ring",
        |v| matches!(v, ProtocolViolation::BadLimit { value, .. } if *value == 128 << 20),
    );
    let p = path();
    let l = Builder::new().handshake_timeout(HS).bind(&p).unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 1 << 16);
        let mut first = [0u8; 16];
        first[..8].copy_from_slice(&((64u64 << 20) + 1).to_le_bytes());
        let mut g = c.prod.try_reserve_tagged(first.len(), 2).unwrap().unwrap();
        g.fill_from(&first);
        let _ = g.commit();
        c.wake();
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let r = s.recv_timeout(WAIT).map(|m| m.len());
    assert!(
        matches!(
            r,
            Err(Error::Protocol {
                violation: ProtocolViolation::Fragment(_),
                ..
            })
        ),
        "{r:?}"
    );
    child.kill();
}

fn try_recv_is_not_held_by_endless_aborts() {
    // A poll-style server calls try_recv, which has no deadline. A peer
    // streaming start/abort pairs must not keep that call (and so every
    // other client of a single-threaded server) busy: after
    // MAX_ABORTS_PER_CALL abandoned messages the call fails.
    let p = path();
    let l = Builder::new()
        .handshake_timeout(HS)
        .ring_capacity(1 << 16)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = raw_handshake(&p2, 1 << 16);
        write_start_abort_pairs(&mut c, &std::sync::atomic::AtomicBool::new(false));
        sleep_forever();
    });
    let mut s = l.accept().unwrap();
    let t = Instant::now();
    let r = loop {
        match s.try_recv() {
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Ok(Some(m)) => panic!("delivered a message of {} bytes", m.len()),
            Err(e) => break e,
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "try_recv never failed"
        );
    };
    assert!(
        matches!(
            r,
            Error::Protocol {
                violation: ProtocolViolation::Fragment(_),
                ..
            }
        ),
        "{r:?}"
    );
    child.kill();
}

/// Issue 9: every shared byte has one writer, and the kernel enforces it.
/// A peer process that received our ring segment's fd (over a socket, as
/// in the handshake; it forks before the segment exists, so it inherits no
/// mapping of it) tries every way to write it; each must fail, and our own
/// mapping stays writable. What the kernel answers is asserted exactly.
fn peer_cannot_write_our_segment() {
    use nix::errno::Errno;
    use nix::sys::mman::{mmap, mprotect, munmap, MapFlags, ProtFlags};
    use std::num::NonZeroUsize;
    use std::os::fd::AsRawFd;

    let (ours_sock, peer_sock) = back_channel();
    let len = segment_size(4096);
    // The closure owns `peer_sock`: the child uses it, the parent drops it
    // with the closure.
    let child = common::spawn(move || {
        // Receive the segment fd, as the handshake would deliver it.
        let mut buf = [0u8; 8];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &peer_sock,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut cmsg,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        let mut fds = Vec::new();
        for m in cmsg.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
                fds.extend(it);
            }
        }
        let fd: OwnedFd = fds.pop().unwrap();
        let n = NonZeroUsize::new(len as usize).unwrap();
        // 1. A shared writable mapping.
        // SAFETY: a fresh mapping at an address the kernel picks; on success
        // it would be unmapped below (the assertion fails first).
        let r = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        };
        assert_eq!(r.err(), Some(Errno::EPERM), "mmap(PROT_WRITE, MAP_SHARED)");
        // 2. A read-only shared mapping (allowed), then mprotect to write.
        // SAFETY: a fresh mapping at an address the kernel picks, unmapped
        // below; nothing else refers to it.
        let ro = unsafe { mmap(None, n, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, &fd, 0) }
            .expect("read-only mapping is allowed");
        // SAFETY: `ro` is our own mapping of `n` bytes.
        let r = unsafe { mprotect(ro, n.get(), ProtFlags::PROT_READ | ProtFlags::PROT_WRITE) };
        assert_eq!(
            r,
            Err(Errno::EACCES),
            "mprotect(PROT_WRITE) of a read-only mapping"
        );
        // SAFETY: `ro` is 8-aligned, readable for `n` bytes; an atomic load.
        let magic = unsafe { AtomicU64::from_ptr(ro.as_ptr().cast()) }.load(Ordering::Relaxed);
        assert_eq!(
            magic,
            ring::RING_MAGIC,
            "the read-only view reads our header"
        );
        // SAFETY: unmapping our own mapping, not referenced any more.
        unsafe { munmap(ro, n.get()) }.unwrap();
        // 3. write(2) and pwrite(2).
        assert_eq!(
            nix::unistd::write(&fd, &[0xffu8; 8]),
            Err(Errno::EPERM),
            "write(2)"
        );
        assert_eq!(
            nix::sys::uio::pwrite(&fd, &[0xffu8; 8], 128),
            Err(Errno::EPERM),
            "pwrite(2)"
        );
        // 4. Punching a hole (would drop our pages and cost us their
        // allocation again).
        assert_eq!(
            nix::fcntl::fallocate(
                &fd,
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                0,
                4096,
            ),
            Err(Errno::EPERM),
            "fallocate(PUNCH_HOLE)"
        );
        // 5. Changing the size, either way.
        assert_eq!(
            nix::unistd::ftruncate(&fd, 0),
            Err(Errno::EPERM),
            "ftruncate(0)"
        );
        assert_eq!(
            nix::unistd::ftruncate(&fd, (len * 2) as i64),
            Err(Errno::EPERM),
            "ftruncate(grow)"
        );
        // 6. Reopening through /proc for writing: the open itself succeeds
        // (a new open file description of the same memfd, mode 0777 or
        // 0666 depending on the kernel's memfd noexec policy), but the seals
        // belong to the inode, so every write through it fails too.
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("reopening the memfd O_RDWR succeeds");
        let e = f.write(&[0xffu8; 8]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "write via {path}");
        // SAFETY: as in step 1.
        let r = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &f,
                0,
            )
        };
        assert_eq!(r.err(), Some(Errno::EPERM), "mmap(PROT_WRITE) via {path}");
        // 7. Seals can be neither added nor (ever) removed.
        assert_eq!(
            nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_WRITE)
            ),
            Err(Errno::EPERM),
            "F_ADD_SEALS after F_SEAL_SEAL"
        );
        // 8. And the read-only attach of the library accepts it.
        let seg = Segment::attach_read_only(fd, len, 1 << 30).unwrap();
        assert!(!seg.is_writable());
    });
    // Only now, after the fork: the peer inherits no mapping of it.
    let (seg, mut prod) = good_ring_and_producer(4096);
    assert!(prod.try_push(b"ours alone").unwrap().is_some());
    raw_send(ours_sock.as_fd(), b"x", &[seg.fd()]);
    child.wait(WAIT);
    // Nothing the peer did reached our memory, and our mapping is still
    // writable: a consumer over our own words reads what we wrote.
    assert!(prod.try_push(b"still ours").unwrap().is_some());
    let mut c = Consumer::attach(seg.clone(), seg.clone()).unwrap();
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"ours alone");
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"still ours");
    eprintln!(
        "  peer: mmap(PROT_WRITE) EPERM, mprotect EACCES, write/pwrite EPERM, \
         punch hole EPERM, ftruncate EPERM, /proc reopen O_RDWR ok but write EPERM"
    );
}

fn main() {
    common::run(&[
        (
            "peer_cannot_write_our_segment",
            peer_cannot_write_our_segment,
        ),
        ("version_mismatch_both_sides", version_mismatch_both_sides),
        ("bad_ring_fds_rejected", bad_ring_fds_rejected),
        ("wrong_fd_counts_rejected", wrong_fd_counts_rejected),
        ("garbage_and_silence", garbage_and_silence),
        ("shared_memory_attacks", shared_memory_attacks),
        ("consumer_cursor_attacks", consumer_cursor_attacks),
        ("random_scribbler", random_scribbler),
        ("producer_that_never_wakes", producer_that_never_wakes),
        ("reader_that_never_releases", reader_that_never_releases),
        ("wakeup_flood", wakeup_flood),
        ("futex_wake_flood", futex_wake_flood),
        (
            "dead_peer_seen_while_futex_parked",
            dead_peer_seen_while_futex_parked,
        ),
        (
            "long_futex_wait_moves_to_the_socket",
            long_futex_wait_moves_to_the_socket,
        ),
        (
            "thousand_connections_while_one_streams",
            thousand_connections_while_one_streams,
        ),
        ("sigkill_at_random_points", sigkill_at_random_points),
        (
            "inline_longer_than_max_message",
            inline_longer_than_max_message,
        ),
        (
            "large_send_times_out_against_a_peer_that_never_reads",
            large_send_times_out_against_a_peer_that_never_reads,
        ),
        (
            "length_flip_cannot_bypass_max_message",
            length_flip_cannot_bypass_max_message,
        ),
        (
            "fragment_stalls_and_floods_are_bounded_by_the_deadline",
            fragment_stalls_and_floods_are_bounded_by_the_deadline,
        ),
        (
            "peer_cannot_make_us_hold_large_message_memory",
            peer_cannot_make_us_hold_large_message_memory,
        ),
        (
            "stalled_live_peer_and_the_default_timeout",
            stalled_live_peer_and_the_default_timeout,
        ),
        (
            "duration_max_means_wait_forever",
            duration_max_means_wait_forever,
        ),
        (
            "default_limits_bound_what_a_peer_can_make_us_hold",
            default_limits_bound_what_a_peer_can_make_us_hold,
        ),
        (
            "try_recv_is_not_held_by_endless_aborts",
            try_recv_is_not_held_by_endless_aborts,
        ),
        (
            "streaming_reader_refuses_lies",
            streaming_reader_refuses_lies,
        ),
    ]);
}
