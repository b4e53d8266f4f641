//! In-process tests of the async API (tasks on a multi-threaded runtime;
//! the fork-based ones, with real processes, are in the workspace's
//! `tests/tokio_fork.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use shmsock_transport::tokio::{Connection, Listener};
use shmsock_transport::{Builder, Error, WaitStrategy};

fn sock_path(name: &str) -> String {
    format!("@shmsock-tokio-smoke-{}-{name}", std::process::id())
}

const LONG: Duration = Duration::from_secs(20);

async fn pair(name: &str, opts: Builder) -> (Connection, Connection) {
    let path = sock_path(name);
    let l = Listener::bind_with(&path, opts.clone()).unwrap();
    let server = tokio::spawn(async move { l.accept().await.unwrap() });
    let client = Connection::connect_with(&path, &opts).await.unwrap();
    (server.await.unwrap(), client)
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + seed) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_small_and_large_each_strategy() {
    for (i, wait) in [
        WaitStrategy::Block,
        WaitStrategy::default(),
        WaitStrategy::Spin,
    ]
    .into_iter()
    .enumerate()
    {
        let opts = Builder::new().wait(wait).ring_capacity(1 << 16);
        let (mut s, mut c) = pair(&format!("echo{i}"), opts).await;
        let server = tokio::spawn(async move {
            let (tx, rx) = s.split();
            loop {
                let v = match rx.recv().await {
                    Ok(m) => m.to_vec(),
                    Err(Error::Disconnected) => return,
                    Err(e) => panic!("{e}"),
                };
                tx.send(&v).await.unwrap();
            }
        });
        for len in [0usize, 1, 64, 4096, 32 * 1024 - 8, 32 * 1024, 1 << 20] {
            let data = pattern(len, len);
            c.send(&data).await.unwrap();
            let back = tokio::time::timeout(LONG, c.recv()).await.unwrap().unwrap();
            assert_eq!(back.to_vec(), data, "len {len} {wait:?}");
        }
        for k in 0..2000u32 {
            let mut g = c.reserve(4).await.unwrap();
            g.copy_from_slice(&k.to_le_bytes());
            g.commit().unwrap();
            assert_eq!(c.recv().await.unwrap().to_vec(), k.to_le_bytes());
        }
        drop(c);
        tokio::time::timeout(LONG, server).await.unwrap().unwrap();
    }
}

/// `select!` over `recv()` and a timer that fires far more often than
/// messages arrive: every dropped `recv` future must lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_recv_with_a_timer_loses_nothing() {
    let (mut s, mut c) = pair("select", Builder::new().wait(WaitStrategy::Block)).await;
    const N: u32 = 300;
    let sender = tokio::spawn(async move {
        for k in 0..N {
            if k % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            s.send(&k.to_le_bytes()).await.unwrap();
        }
        // A large one, cut into fragments, to cancel mid-reassembly too.
        s.send(&pattern(1 << 20, 3)).await.unwrap();
        s
    });
    let mut tick = tokio::time::interval(Duration::from_micros(50));
    let (mut next, mut ticks) = (0u32, 0u64);
    while next <= N {
        tokio::select! {
            m = c.recv() => {
                let m = m.unwrap();
                if next < N {
                    assert_eq!(m.to_vec(), next.to_le_bytes());
                } else {
                    assert_eq!(m.to_vec(), pattern(1 << 20, 3));
                }
                next += 1;
            }
            _ = tick.tick() => ticks += 1,
        }
    }
    assert!(ticks > 0);
    drop(sender.await.unwrap());
}

/// A `send` dropped while it waits for space (the peer does not read)
/// publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_send_publishes_nothing() {
    let (mut s, mut c) = pair("cancel-send", Builder::new().ring_capacity(4096)).await;
    // Fill the ring until a send has to wait, and drop that send.
    let mut sent = 0u32;
    loop {
        let b = sent.to_le_bytes();
        match tokio::time::timeout(Duration::from_millis(20), s.send(&b)).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
            }
            Err(_) => break,
        }
    }
    assert!(sent > 10);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..=sent {
            got.push(c.recv().await.unwrap().to_vec());
        }
        got
    });
    s.send(b"after").await.unwrap();
    let got = tokio::time::timeout(LONG, reader).await.unwrap().unwrap();
    for (k, m) in got[..sent as usize].iter().enumerate() {
        assert_eq!(m, &(k as u32).to_le_bytes());
    }
    assert_eq!(got[sent as usize], b"after");
}

/// A large send dropped between two fragments (the ring is full and the
/// peer does not read) must not leave half a message: the next send tells
/// the peer to drop it, and the peer sees the next message intact (without
/// the abort record it would see an inline record in the middle of a
/// fragmented message: a protocol violation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_send_dropped_mid_fragments_is_dropped_whole() {
    let (mut s, mut c) = pair("cancel-large", Builder::new().ring_capacity(4096)).await;
    let big = pattern(64 * 1024, 9);
    let cut = tokio::time::timeout(Duration::from_millis(20), s.send(&big)).await;
    assert!(
        cut.is_err(),
        "a 64 KiB send through a 4 KiB ring nobody reads must wait"
    );
    let reader = tokio::spawn(async move {
        let first = c.recv().await.unwrap().to_vec();
        let second = c.recv().await.unwrap().to_vec();
        (first, second)
    });
    s.send(b"after").await.unwrap();
    s.send(&big).await.unwrap();
    let (first, second) = tokio::time::timeout(LONG, reader).await.unwrap().unwrap();
    assert_eq!(first, b"after");
    assert_eq!(second, big);
}

/// The peer goes away while we wait: `Disconnected`, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_gone_wakes_waiters() {
    let (s, mut c) = pair("gone", Builder::new()).await;
    let waiter = tokio::spawn(async move { c.recv().await.map(|m| m.len()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("Disconnected promptly")
        .unwrap();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

/// A shutdown handle wakes an awaiting `recv` and a `send` waiting for
/// space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_handle_wakes_waiters() {
    let (_s, c) = pair("shutdown", Builder::new().ring_capacity(4096)).await;
    let h = c.shutdown_handle().unwrap();
    let (mut tx, mut rx) = c.into_split();
    let r = tokio::spawn(async move { rx.recv().await.map(|m| m.len()) });
    let w = tokio::spawn(async move {
        loop {
            tx.send(&[0; 512]).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), Error>(())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.shutdown().unwrap();
    let r = tokio::time::timeout(LONG, r).await.unwrap().unwrap();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    let w = tokio::time::timeout(LONG, w).await.unwrap().unwrap();
    assert!(matches!(w, Err(Error::Disconnected)), "{w:?}");
}

/// A client that connects and says nothing does not hold up the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_does_not_block_accept() {
    let path = sock_path("silent");
    let l = Listener::bind(&path).unwrap();
    // A raw seqpacket client that never sends its Hello.
    let raw = rustix::net::socket(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        None,
    )
    .unwrap();
    let addr = rustix::net::SocketAddrUnix::new_abstract_name(&path.as_bytes()[1..]).unwrap();
    rustix::net::connect(&raw, &addr).unwrap();
    let accept = tokio::spawn(async move { l.accept().await.map(|c| c.peer_credentials()) });
    let c = tokio::time::timeout(LONG, Connection::connect(&path))
        .await
        .unwrap()
        .unwrap();
    let creds = tokio::time::timeout(LONG, accept)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(creds.pid, Some(std::process::id() as i32));
    assert_eq!(c.peer_credentials().pid, Some(std::process::id() as i32));
    drop(raw);
}

/// `recv` futures dropped while a large message is half reassembled (each
/// is given a few µs): the progress stays in the receiver and the message
/// arrives whole, then the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_dropped_mid_reassembly_keeps_progress() {
    let (mut s, mut c) = pair("cancel-recv", Builder::new().ring_capacity(4096)).await;
    let big = pattern(256 * 1024, 5);
    let big2 = big.clone();
    let sender = tokio::spawn(async move {
        s.send(&big2).await.unwrap();
        s.send(b"next").await.unwrap();
        s
    });
    let mut dropped = 0u32;
    let got = loop {
        match tokio::time::timeout(Duration::from_micros(5), c.recv()).await {
            Ok(m) => break m.unwrap().into_vec(),
            Err(_) => dropped += 1,
        }
        assert!(dropped < 1_000_000, "no progress");
    };
    assert_eq!(got, big);
    assert_eq!(c.recv().await.unwrap().to_vec(), b"next");
    drop(tokio::time::timeout(LONG, sender).await.unwrap().unwrap());
    eprintln!("{dropped} recv futures dropped mid-message");
}
