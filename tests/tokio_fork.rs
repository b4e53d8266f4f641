//! The async API (feature `tokio`) against real peer processes: honest
//! blocking and async clients, and hostile ones (handshake lies, bad fds,
//! ring lies, a peer killed mid-wait). The hostile peers speak the wire
//! protocol by hand with the test kit's building blocks, as in
//! `hostile_fork.rs` and `hostile_handshake.rs` (the hand-made client that
//! lies through its ring, `RawClient`, is repeated from `hostile_fork.rs`:
//! a candidate for the test kit).
//!
//! harness = false: the cases run one after another on the main thread;
//! each forks its children first, then runs a current-thread tokio runtime
//! (no runtime thread exists at fork time). The harness checks every case
//! for leaked fds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;
use shmsock_testkit::peer::{
    self, raw_connect, raw_handshake, raw_send, seqpacket_pair as back_channel, RawClient,
};

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use shmsock::shm::ring::{self, Producer, HEADER_SIZE};
use shmsock::shm::{Segment, SegmentOptions};
use shmsock::tokio as st;
use shmsock::wire::{Control, Hello, MAX_CONTROL_LEN};
use shmsock::{Builder, Error, ProtocolViolation};

fn path() -> String {
    peer::unique_path("shmsock-tokio-fork")
}

const HS: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(30);

/// Runs `f` on a current-thread runtime (no extra thread: later forks stay
/// safe).
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn hello_bytes(cap: u64) -> Vec<u8> {
    let mut b = [0u8; MAX_CONTROL_LEN];
    let n = Control::Hello(Hello {
        ring_capacity: cap,
        max_message: 1 << 30,
        flags: 0,
    })
    .encode(&mut b);
    b[..n].to_vec()
}

fn good_ring_and_producer(cap: u64) -> (Arc<Segment>, Producer) {
    ring::create_segment(c"hostile", cap, SegmentOptions::default()).unwrap()
}

fn sleep_forever() {
    std::thread::sleep(Duration::from_secs(30));
}

/// Retries `connect` while nobody listens yet (the children are forked
/// before the parent's runtime and listener exist).
fn until_listening<T>(mut connect: impl FnMut() -> shmsock::Result<T>) -> T {
    let t = Instant::now();
    loop {
        match connect() {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionRefused && t.elapsed() < WAIT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r.unwrap(),
        }
    }
}

/// A blocking client process: connects, echoes `n` messages of growing
/// size through the server and checks them.
fn blocking_echo_client(p: String, n: usize) -> common::Child {
    common::spawn(move || {
        let opts = Builder::new().ring_capacity(1 << 16);
        let mut c = until_listening(|| opts.connect(&p));
        for i in 0..n {
            let len = [0, 1, 64, 4096, 100_000][i % 5];
            let data: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
            c.send(&data).unwrap();
            assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), data);
        }
    })
}

/// An async client process (its own runtime, after the fork).
fn async_echo_client(p: String, n: usize) -> common::Child {
    common::spawn(move || {
        block_on(async move {
            let t = Instant::now();
            let mut c = loop {
                match st::Connection::connect(&p).await {
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::ConnectionRefused
                            && t.elapsed() < WAIT =>
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    r => break r.unwrap(),
                }
            };
            for i in 0..n {
                let len = [3, 64, 1 << 20][i % 3];
                let data: Vec<u8> = (0..len).map(|k| (k * 3 + i) as u8).collect();
                c.send(&data).await.unwrap();
                assert_eq!(c.recv().await.unwrap().to_vec(), data);
            }
        })
    })
}

/// Serves one echo connection until the peer leaves.
async fn echo(mut c: st::Connection) {
    let (tx, rx) = c.split();
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(Error::Disconnected) => return,
            Err(e) => panic!("{e}"),
        };
        let v = msg.to_vec();
        drop(msg);
        tx.send(&v).await.unwrap();
    }
}

/// An async server on one task thread serves blocking and async client
/// processes at once (handshakes, small and large messages both ways).
fn async_server_many_client_processes() {
    let p = path();
    let mut kids = Vec::new();
    for k in 0..6 {
        kids.push(blocking_echo_client(p.clone(), 50 + k));
    }
    for _ in 0..2 {
        kids.push(async_echo_client(p.clone(), 30));
    }
    block_on(async {
        // The children were forked first (no runtime thread at fork time)
        // and connect once the socket exists.
        let l = st::Listener::bind(&p).unwrap();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let mut served = Vec::new();
                for _ in 0..kids.len() {
                    let c = tokio::time::timeout(WAIT, l.accept())
                        .await
                        .unwrap()
                        .unwrap();
                    served.push(tokio::task::spawn_local(echo(c)));
                }
                for s in served {
                    tokio::time::timeout(WAIT, s).await.unwrap().unwrap();
                }
            })
            .await;
    });
    for k in kids {
        k.wait(WAIT);
    }
}

/// Runs `client` in a child against a fresh async listener; returns what
/// `accept` gave (checked to come in time); then checks that a good client
/// is still served.
fn against_async_server(client: impl FnOnce(&str) + 'static) -> shmsock::Result<st::Connection> {
    let p = path();
    let p2 = p.clone();
    // Fork before the runtime exists; the child waits for the socket.
    let child = common::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < WAIT {
            let s = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
            let addr = SocketAddrUnix::new_abstract_name(&p2.as_bytes()[1..]).unwrap();
            // A probe: the listener skips a client that hangs up silently.
            if rustix::net::connect(&s, &addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        client(&p2)
    });
    let p3 = p.clone();
    let good = common::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut c = Builder::new().connect(&p3).unwrap();
        c.send(b"good").unwrap();
    });
    let r = block_on(async {
        let l = st::Listener::bind_with(&p, Builder::new().handshake_timeout(HS)).unwrap();
        let t = Instant::now();
        // The good client may finish first: take both results.
        let mut bad = None;
        let mut good_conn = None;
        while bad.is_none() || good_conn.is_none() {
            match tokio::time::timeout(WAIT, l.accept()).await.unwrap() {
                Ok(c) if c.peer_credentials().pid == Some(good.pid.as_raw()) => good_conn = Some(c),
                r => {
                    assert!(t.elapsed() < HS + Duration::from_secs(5), "accept hung");
                    bad = Some(r);
                }
            }
        }
        let mut g = good_conn.unwrap();
        assert_eq!(g.recv().await.unwrap().to_vec(), b"good");
        // Kill and reap the hostile child while the listener still exists:
        // a connect it makes after the listener is gone would be refused
        // and panic in the child (noise in a passing run).
        child.kill();
        bad.unwrap()
    });
    good.wait(WAIT);
    r
}

fn expect_protocol(
    r: shmsock::Result<st::Connection>,
    what: &str,
    pred: impl Fn(&ProtocolViolation) -> bool,
) {
    match r {
        Err(Error::Protocol { violation, .. }) if pred(&violation) => {}
        other => panic!("{what}: expected a matching protocol violation, got {other:?}"),
    }
}

/// Handshake lies against the async listener: garbage, silence, wrong fd
/// counts, fds that are not sealed memfds, a pipe as back channel.
fn hostile_handshakes() {
    let r = against_async_server(|p| {
        let s = raw_connect(p);
        raw_send(s.as_fd(), b"GET / HTTP/1.1\r\n\r\n", &[]);
        sleep_forever();
    });
    expect_protocol(r, "garbage", |v| {
        matches!(v, ProtocolViolation::Malformed(_))
    });
    let r = against_async_server(|p| {
        let _s = raw_connect(p);
        sleep_forever();
    });
    assert!(matches!(r, Err(Error::Timeout)), "silence: {r:?}");
    let r = against_async_server(|p| {
        let s = raw_connect(p);
        raw_send(s.as_fd(), &hello_bytes(4096), &[]);
        sleep_forever();
    });
    expect_protocol(r, "no fds", |v| {
        matches!(v, ProtocolViolation::FdCount { .. })
    });
    let r = against_async_server(|p| {
        let s = raw_connect(p);
        let (rp, _wp) = nix::unistd::pipe().unwrap();
        let fds: Vec<BorrowedFd<'_>> = (0..12).map(|_| rp.as_fd()).collect();
        raw_send(s.as_fd(), &hello_bytes(4096), &fds);
        sleep_forever();
    });
    expect_protocol(r, "12 fds", |v| {
        matches!(v, ProtocolViolation::ControlTruncated)
    });
    let r = against_async_server(|p| {
        let s = raw_connect(p);
        let (rp, _wp) = nix::unistd::pipe().unwrap();
        let (_a, bc) = back_channel();
        raw_send(s.as_fd(), &hello_bytes(4096), &[rp.as_fd(), bc.as_fd()]);
        sleep_forever();
    });
    expect_protocol(r, "pipe as ring", |v| {
        matches!(
            v,
            ProtocolViolation::BadMemfd(shmsock::shm::Error::NotMemfd(_))
        )
    });
    let r = against_async_server(|p| {
        let s = raw_connect(p);
        let (ring, _prod) = good_ring_and_producer(4096);
        let (rp, _wp) = nix::unistd::pipe().unwrap();
        raw_send(s.as_fd(), &hello_bytes(4096), &[ring.fd(), rp.as_fd()]);
        sleep_forever();
    });
    expect_protocol(r, "pipe back channel", |v| {
        matches!(v, ProtocolViolation::BadBackChannel)
    });
}

/// A server that lies to an async client: garbage instead of a welcome,
/// and silence (the handshake timeout).
fn hostile_server_against_async_client() {
    for (what, lie) in [("garbage welcome", true), ("silent server", false)] {
        let p = path();
        let raw = peer::raw_listen(&p);
        let server = common::spawn(move || {
            let c = rustix::net::accept(&raw).unwrap();
            if lie {
                raw_send(c.as_fd(), &[0xEE; 40], &[]);
            }
            sleep_forever();
        });
        let t = Instant::now();
        let r = block_on(st::Connection::connect_with(
            &p,
            &Builder::new().handshake_timeout(HS),
        ));
        assert!(t.elapsed() < HS + Duration::from_secs(5), "{what}: hung");
        match (&r, lie) {
            (Err(Error::Protocol { .. }), true) | (Err(Error::Timeout), false) => {}
            _ => panic!("{what}: {r:?}"),
        }
        server.kill();
    }
}

const TAIL: usize = 128;
const HEAD: usize = 256;

/// The async receiver against a client that corrupts its ring after 10
/// good messages: every good message intact, then a protocol violation,
/// promptly; never a bad message.
fn ring_attack(what: &str, attack: fn(&RawClient)) {
    let p = path();
    let p2 = p.clone();
    let child = common::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let c = raw_handshake(&p2, 4096);
        let mut prod = c.prod;
        for seq in 0..10u64 {
            assert!(prod.try_push(&seq.to_le_bytes()).unwrap().is_some());
        }
        let c = RawClient { prod, ..c };
        c.wake();
        std::thread::sleep(Duration::from_millis(50));
        attack(&c);
        c.wake();
        sleep_forever();
    });
    let (got, err) = block_on(async {
        let opts = Builder::new().handshake_timeout(HS).ring_capacity(4096);
        let l = st::Listener::bind_with(&p, opts).unwrap();
        let mut s = tokio::time::timeout(WAIT, l.accept())
            .await
            .unwrap()
            .unwrap();
        let mut got = 0u64;
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(5), s.recv()).await {
                Ok(Ok(m)) => {
                    assert_eq!(m.to_vec(), got.to_le_bytes(), "{what}: bad message");
                    got += 1;
                }
                Ok(Err(e)) => break e,
                Err(_) => panic!("{what}: no violation within 5 s"),
            }
        };
        (got, err)
    });
    assert!(got <= 10, "{what}");
    assert!(matches!(err, Error::Protocol { .. }), "{what}: {err:?}");
    eprintln!("  {what}: {got} good messages, then: {err}");
    child.kill();
}

fn ring_lies() {
    ring_attack("tail backwards", |c| c.poke(TAIL, 8));
    ring_attack("tail beyond capacity", |c| c.poke(TAIL, 4096 * 3));
    ring_attack("tail misaligned", |c| c.poke(TAIL, 10 * 16 + 3));
    ring_attack("record length beyond ring", |c| {
        c.poke(HEADER_SIZE + 160, u64::from(u32::MAX));
        c.poke(TAIL, 160 + 16);
    });
    ring_attack("unknown tag", |c| {
        c.poke(HEADER_SIZE + 160, 8 | (7u64 << 32));
        c.poke(TAIL, 160 + 16);
    });
}

/// The async sender against a client that lies about its cursor of our
/// ring: a protocol violation, never a hang.
fn consumer_cursor_lie() {
    let p = path();
    let p2 = p.clone();
    let child = common::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let c = raw_handshake(&p2, 4096);
        c.poke(HEAD, 1 << 40);
        sleep_forever();
    });
    let err = block_on(async {
        let opts = Builder::new().handshake_timeout(HS).ring_capacity(4096);
        let l = st::Listener::bind_with(&p, opts).unwrap();
        let mut s = tokio::time::timeout(WAIT, l.accept())
            .await
            .unwrap()
            .unwrap();
        let t = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), s.send(&[1u8; 100])).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(e)) => break e,
            }
            assert!(t.elapsed() < Duration::from_secs(5), "no violation");
        }
    });
    assert!(
        matches!(
            &err,
            Error::Protocol {
                violation: ProtocolViolation::Ring(shmsock::shm::Violation::HeadBeyondTail { .. }),
                ..
            }
        ),
        "{err:?}"
    );
    child.kill();
}

/// A peer killed while we await: `recv` and a `send` waiting for space end
/// with `Disconnected` at once (the hang-up wakes the task).
fn killed_peer_wakes_waiters() {
    let p = path();
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(50));
        let _c = Builder::new().ring_capacity(4096).connect(&p2).unwrap();
        b.write_all(b"!").unwrap();
        sleep_forever();
    });
    let pid = child.pid;
    let child = std::cell::Cell::new(Some(child));
    block_on(async {
        let opts = Builder::new().ring_capacity(4096);
        let l = st::Listener::bind_with(&p, opts).unwrap();
        let s = tokio::time::timeout(WAIT, l.accept())
            .await
            .unwrap()
            .unwrap();
        {
            use std::io::Read;
            a.read_exact(&mut [0u8; 1]).unwrap();
        }
        let (mut tx, mut rx) = s.into_split();
        // Fill the peer's ring (it never reads) so that a send waits.
        while tokio::time::timeout(Duration::from_millis(20), tx.send(&[7; 256]))
            .await
            .is_ok()
        {}
        let recv = tokio::spawn(async move { rx.recv().await.map(|m| m.len()) });
        let send = tokio::spawn(async move { tx.send(&[7; 256]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let r = tokio::time::timeout(WAIT, recv).await.unwrap().unwrap();
        assert!(matches!(r, Err(Error::Disconnected)), "recv: {r:?}");
        let w = tokio::time::timeout(WAIT, send).await.unwrap().unwrap();
        assert!(matches!(w, Err(Error::Disconnected)), "send: {w:?}");
        // "At once": woken by the hang-up, not by a timeout; generous for a
        // busy machine.
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    });
    child.take().unwrap().kill();
}

/// A silent client does not hold up a good one: the async listener drives
/// handshakes concurrently.
fn silent_clients_do_not_block_good_ones() {
    let p = path();
    let mut silent = Vec::new();
    for _ in 0..4 {
        let p2 = p.clone();
        silent.push(common::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _s = raw_connect(&p2);
            sleep_forever();
        }));
    }
    let p3 = p.clone();
    let good = common::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut c = Builder::new().connect(&p3).unwrap();
        c.send(b"hi").unwrap();
    });
    let good_pid = good.pid.as_raw();
    block_on(async {
        // A handshake timeout far beyond the test: only concurrency can
        // let the good client through in time.
        let opts = Builder::new().handshake_timeout(Duration::from_secs(60));
        let l = st::Listener::bind_with(&p, opts).unwrap();
        let mut c = tokio::time::timeout(Duration::from_secs(10), l.accept())
            .await
            .expect("good client held up by silent ones")
            .unwrap();
        assert_eq!(c.peer_credentials().pid, Some(good_pid));
        assert_eq!(c.recv().await.unwrap().to_vec(), b"hi");
    });
    good.wait(WAIT);
    for s in silent {
        s.kill();
    }
}

fn main() {
    common::run(&[
        (
            "async_server_many_client_processes",
            async_server_many_client_processes,
        ),
        ("hostile_handshakes", hostile_handshakes),
        (
            "hostile_server_against_async_client",
            hostile_server_against_async_client,
        ),
        ("ring_lies", ring_lies),
        ("consumer_cursor_lie", consumer_cursor_lie),
        ("killed_peer_wakes_waiters", killed_peer_wakes_waiters),
        (
            "silent_clients_do_not_block_good_ones",
            silent_clients_do_not_block_good_ones,
        ),
    ]);
}
