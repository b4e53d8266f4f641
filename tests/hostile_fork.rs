//! A hostile peer: speaks the wire protocol from the crate's own types and
//! misbehaves on purpose. Every case checks the victim's error variant, that
//! it returns within its timeout, that /proc/self/fd holds as many fds
//! afterwards (the harness checks this), and that the listener still serves
//! a good client afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{
    sendmsg, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use shmsock::shm::ring::{self, segment_size, Consumer, Producer, HEADER_SIZE};
use shmsock::shm::{Segment, SegmentOptions};
use shmsock::wire::{Control, Hello, MAX_CONTROL_LEN};
use shmsock::{Builder, Connection, Error, ProtocolViolation};

static N: AtomicU32 = AtomicU32::new(0);

fn path() -> String {
    format!(
        "@shmsock-hostile-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const HS: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(30);

fn raw_connect(p: &str) -> OwnedFd {
    let s = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let addr = SocketAddrUnix::new_abstract_name(&p.as_bytes()[1..]).unwrap();
    rustix::net::connect(&s, &addr).unwrap();
    s
}

fn raw_send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(fds)));
    }
    sendmsg(sock, &[IoSlice::new(bytes)], &mut cmsg, SendFlags::NOSIGNAL).unwrap();
}

fn hello_bytes(cap: u64) -> Vec<u8> {
    let mut b = [0u8; MAX_CONTROL_LEN];
    let n = Control::Hello(Hello {
        ring_capacity: cap,
        max_message: 1 << 30,
    })
    .encode(&mut b);
    b[..n].to_vec()
}

fn good_ring(cap: u64) -> Segment {
    ring::create_segment(c"hostile", cap, SegmentOptions::default()).unwrap()
}

fn back_channel() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

fn memfd(len: u64, seals: nix::fcntl::SealFlag) -> OwnedFd {
    let fd = nix::sys::memfd::memfd_create(
        c"hostile",
        nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, len as i64).unwrap();
    if !seals.is_empty() {
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::fcntl::FcntlArg::F_ADD_SEALS(seals),
        )
        .unwrap();
    }
    fd
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
        b[4..8].copy_from_slice(&2u32.to_le_bytes());
        let ring = good_ring(4096);
        let (_a, bc) = back_channel();
        raw_send(s.as_fd(), &b, &[ring.fd(), bc.as_fd()]);
        let mut buf = [0u8; 64];
        let (_, n) = rustix::net::recv(&s, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
        match Control::decode(&buf[..n]).unwrap() {
            Control::Reject { version: 1, .. } => {}
            other => panic!("{other:?}"),
        }
    });
    assert!(
        matches!(r, Err(Error::VersionMismatch { ours: 1, theirs: 2 })),
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
        })
        .encode(&mut b);
        b[4..8].copy_from_slice(&9u32.to_le_bytes());
        let ring = good_ring(4096);
        raw_send(s.as_fd(), &b[..n], &[ring.fd()]);
        sleep_forever();
    });
    let r = Builder::new().handshake_timeout(HS).connect(&p);
    assert!(
        matches!(r, Err(Error::VersionMismatch { ours: 1, theirs: 9 })),
        "{r:?}"
    );
    drop(server);
}

fn bad_ring_fds_rejected() {
    use nix::fcntl::SealFlag as S;
    const ALL: S = S::F_SEAL_SHRINK.union(S::F_SEAL_GROW).union(S::F_SEAL_SEAL);
    type Make = fn() -> OwnedFd;
    type Check = fn(&shmsock::shm::Error) -> bool;
    let cases: Vec<(&str, Make, Check)> = vec![
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
    // A sealed memfd of the right size whose header is garbage.
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

/// A client that completes the handshake by hand and keeps raw access to
/// both rings, to attack the server through shared memory.
struct RawClient {
    sock: OwnedFd,
    _back: OwnedFd,
    ours: Arc<Segment>,
    prod: Producer,
    _theirs: Consumer,
}

fn raw_handshake(p: &str, cap: u64) -> RawClient {
    let sock = raw_connect(p);
    let ours = Arc::new(good_ring(cap));
    let (back, bc) = back_channel();
    raw_send(sock.as_fd(), &hello_bytes(cap), &[ours.fd(), bc.as_fd()]);
    drop(bc);
    // Receive the welcome and the server's ring.
    let mut buf = [0u8; 64];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let r = rustix::net::recvmsg(
        &sock,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut cmsg,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let Control::Welcome(w) = Control::decode(&buf[..r.bytes]).unwrap() else {
        panic!("no welcome")
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    let theirs =
        Segment::attach(fds.pop().unwrap(), segment_size(w.ring_capacity), 1 << 30).unwrap();
    RawClient {
        sock,
        _back: back,
        prod: Producer::attach(ours.clone()).unwrap(),
        ours,
        _theirs: Consumer::attach(Arc::new(theirs)).unwrap(),
    }
}

impl RawClient {
    fn poke(&self, off: usize, val: u64) {
        assert!(off + 8 <= self.ours.len());
        // SAFETY: in bounds and 8-aligned; the word is shared memory, so it
        // is written atomically.
        unsafe { AtomicU64::from_ptr(self.ours.as_ptr().add(off).cast()) }
            .store(val, Ordering::SeqCst);
    }
    fn wake(&self) {
        let mut b = [0u8; MAX_CONTROL_LEN];
        let n = Control::WakeData.encode(&mut b);
        let _ = rustix::net::send(
            &self.sock,
            &b[..n],
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        );
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
            assert!(c.prod.try_push(&seq.to_le_bytes()).unwrap());
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
        c.poke(128 + 8, 0xffff_ffff); // producer_closed + pad
        c.poke(384, 1);
        c.poke(512, 1);
        c.poke(HEAD, 1 << 40); // the consumer's own cursor: ignored by it
        c.poke(TAIL, 4096 * 5);
    });
}

fn random_scribbler() {
    // A client that streams checksummed messages while a second thread
    // scribbles random words over its ring. The server either keeps
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
                Ok(true) => seq += 1,
                Ok(false) => std::thread::yield_now(),
                Err(_) => break,
            }
            if seq % 64 == 0 {
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

fn main() {
    common::run(&[
        ("version_mismatch_both_sides", version_mismatch_both_sides),
        ("bad_ring_fds_rejected", bad_ring_fds_rejected),
        ("wrong_fd_counts_rejected", wrong_fd_counts_rejected),
        ("garbage_and_silence", garbage_and_silence),
        ("shared_memory_attacks", shared_memory_attacks),
        ("random_scribbler", random_scribbler),
    ]);
}
