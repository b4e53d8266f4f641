//! In-process smoke tests (threads, not processes; the fork-based tests
//! live in the workspace's `tests/`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use shmsock_transport::{Builder, Connection, Error, Listener, WaitStrategy};

fn sock_path(name: &str) -> String {
    format!("@shmsock-smoke-{}-{name}", std::process::id())
}

#[test]
fn echo_small_and_large_each_strategy() {
    for (i, wait) in [
        WaitStrategy::Spin,
        WaitStrategy::Block,
        WaitStrategy::default(),
    ]
    .into_iter()
    .enumerate()
    {
        let path = sock_path(&format!("echo{i}"));
        let l = Builder::new().wait(wait).bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut c = l.accept().unwrap();
            loop {
                let v = match c.recv() {
                    Ok(m) => m.to_vec(),
                    Err(Error::Disconnected) => return,
                    Err(e) => panic!("{e}"),
                };
                c.send(&v).unwrap();
            }
        });
        let mut c = Builder::new()
            .wait(wait)
            .ring_capacity(1 << 16)
            .connect(&path)
            .unwrap();
        for len in [0usize, 1, 64, 4096, 32 * 1024 - 8, 32 * 1024, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            c.send(&data).unwrap();
            let back = c.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(back.len(), len);
            assert_eq!(back.to_vec(), data, "len {len} {wait:?}");
        }
        for k in 0..2000u32 {
            let mut g = c.reserve(4).unwrap();
            g.copy_from_slice(&k.to_le_bytes());
            g.commit().unwrap();
            assert_eq!(c.recv().unwrap().to_vec(), k.to_le_bytes());
        }
        drop(c);
        server.join().unwrap();
    }
}

#[test]
fn recv_timeout_and_try_recv() {
    let path = sock_path("timeout");
    let l = Listener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        c.send(b"late").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut c = Connection::connect(&path).unwrap();
    assert!(c.try_recv().unwrap().is_none());
    assert!(matches!(
        c.recv_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert_eq!(c.recv().unwrap().to_vec(), b"late");
    t.join().unwrap();
    assert!(matches!(c.recv(), Err(Error::Disconnected)));
}

/// Regression: `try_send` never consumed the space wake-ups it armed, so a
/// level-triggered poller on the Sender's fd kept firing.
#[test]
fn try_send_consumes_its_wakeups() {
    use std::os::fd::AsFd;
    let path = sock_path("trysend");
    let l = Builder::new().ring_capacity(4096).bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let c = l.accept().unwrap();
        let (_tx, mut rx) = c.split();
        // Read everything until the peer hangs up, slowly, so that the ring
        // fills again and again (a reader that keeps up made this flaky).
        while rx.recv_timeout(Duration::from_secs(10)).is_ok() {
            std::thread::sleep(Duration::from_micros(20));
        }
    });
    let c = Builder::new().ring_capacity(4096).connect(&path).unwrap();
    let (mut tx, rx) = c.split();
    let readable = |fd: std::os::fd::BorrowedFd<'_>| {
        let mut p = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut p, Some(&ts)).unwrap() > 0
    };
    let mut full = 0;
    for _ in 0..100_000 {
        if !tx.try_send(&[0u8; 256]).unwrap() {
            full += 1;
            // Wait for the space wake-up, then send again.
            let fd = tx.as_fd();
            let mut p = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            rustix::event::poll(&mut p, None).unwrap();
            assert!(tx.try_send(&[0u8; 256]).unwrap());
            assert!(!readable(tx.as_fd()), "stale wake-up left on the socket");
        }
        if full >= 20 {
            break;
        }
    }
    assert!(full >= 20, "the ring never filled");
    drop(tx);
    drop(rx);
    t.join().unwrap();
}

/// Parks at once like `Block`, but may use asymmetric fences (which
/// `Block` never does: it parks on every wait).
const PARK_AT_ONCE: WaitStrategy = WaitStrategy::Adaptive {
    spin: Duration::ZERO,
};

/// Every combination of wake-up kind and fence mode, both sides alike and
/// mixed (one side asks for asymmetric fences, the other does not: the
/// handshake then falls back to symmetric fences on both): a Block
/// ping-pong (every message parks and wakes a peer) delivers everything.
#[test]
fn ping_pong_in_every_wake_and_fence_mode() {
    let membarrier = shmsock_shm::membarrier::register();
    for (i, (futex, server_asym, client_asym)) in [
        (true, true, true),
        (true, false, false),
        (false, true, true),
        (false, false, false),
        (true, true, false),
        (true, false, true),
    ]
    .into_iter()
    .enumerate()
    {
        let path = sock_path(&format!("modes{i}"));
        let l = Builder::new()
            .wait(PARK_AT_ONCE)
            .futex_wakeups(futex)
            .asymmetric_fences(server_asym)
            .bind(&path)
            .unwrap();
        let server = std::thread::spawn(move || {
            let mut c = l.accept().unwrap();
            let asym = c.asymmetric_fences();
            loop {
                let v = match c.recv() {
                    Ok(m) => m.to_vec(),
                    Err(Error::Disconnected) => return asym,
                    Err(e) => panic!("{e}"),
                };
                c.send(&v).unwrap();
            }
        });
        let mut c = Builder::new()
            .wait(PARK_AT_ONCE)
            .futex_wakeups(!futex) // the kinds are per side: mix them too
            .asymmetric_fences(client_asym)
            .ring_capacity(4096)
            .connect(&path)
            .unwrap();
        let expect = membarrier && server_asym && client_asym;
        assert_eq!(c.asymmetric_fences(), expect, "case {i}");
        if i == 0 {
            // Block never asks for asymmetric fences.
            let l2 = Builder::new().bind(sock_path("modes-block")).unwrap();
            let t = std::thread::spawn(move || l2.accept().unwrap().asymmetric_fences());
            let b = Builder::new()
                .wait(WaitStrategy::Block)
                .connect(sock_path("modes-block"))
                .unwrap();
            assert!(!b.asymmetric_fences());
            assert!(!t.join().unwrap());
        }
        for k in 0..3000u32 {
            c.send(&k.to_le_bytes()).unwrap();
            let back = c.recv_timeout(Duration::from_secs(20)).unwrap();
            assert_eq!(back.to_vec(), k.to_le_bytes(), "case {i}");
        }
        drop(c);
        assert_eq!(server.join().unwrap(), expect, "case {i}");
    }
}

/// A ShutdownHandle wakes a call sleeping on a futex (it `FUTEX_WAKE`s the
/// word the call sleeps on), not only at the end of its timeout.
#[test]
fn shutdown_wakes_a_futex_sleeper() {
    let path = sock_path("shutfutex");
    let l = Builder::new().bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        // Hold the connection open, silent, until the client is done.
        let _ = c.recv_timeout(Duration::from_secs(30));
    });
    let mut c = Builder::new()
        .wait(WaitStrategy::Block)
        .connect(&path)
        .unwrap();
    let h = c.shutdown_handle().unwrap();
    let t = std::time::Instant::now();
    let shut = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        h.shutdown().unwrap();
    });
    let r = c.recv_timeout(Duration::from_secs(20)).map(|m| m.to_vec());
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    shut.join().unwrap();
    drop(c);
    server.join().unwrap();
}
