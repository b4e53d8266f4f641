//! Fork-based tests of the transport: every case runs real peer processes.
//! The harness (tests/common) runs cases one by one on the main thread,
//! checks every child's exit status with a watchdog, and fails a case whose
//! fd count in /proc/self/fd changed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmsock::{Builder, Connection, Error, Listener, WaitStrategy};

static N: AtomicU32 = AtomicU32::new(0);

fn path() -> String {
    format!(
        "@shmsock-fork-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(131).wrapping_add(i * 7) as u8)
        .collect()
}

const WAIT: Duration = Duration::from_secs(60);

/// Server in the parent echoing everything; client in the child.
fn echo_sizes_with(wait: WaitStrategy, cap: u64, sizes: &[usize]) {
    let p = path();
    let opts = Builder::new().wait(wait).ring_capacity(cap);
    let l = opts.bind(&p).unwrap();
    let sizes = sizes.to_vec();
    let copts = opts.clone();
    let child = common::spawn(move || {
        let mut c = copts.connect(&p).unwrap();
        for (seq, &len) in sizes.iter().enumerate() {
            let data = payload(seq as u64, len);
            c.send(&data).unwrap();
            let m = c.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(m.len(), len);
            assert!(m.to_vec() == data, "echo of {len} bytes differs");
        }
    });
    let mut s = l.accept().unwrap();
    loop {
        let v = match s.recv_timeout(WAIT) {
            Ok(m) => m.to_vec(),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("{e}"),
        };
        s.send(&v).unwrap();
    }
    child.wait(WAIT);
}

fn echo_sizes() {
    let cap = 1 << 16;
    let max_inline = (cap / 2 - 8) as usize;
    echo_sizes_with(
        WaitStrategy::default(),
        cap,
        &[
            0,
            1,
            64,
            4096,
            max_inline - 1,
            max_inline,
            max_inline + 1,
            cap as usize - 1,
            cap as usize,
            cap as usize + 1,
            1 << 20,
            64 << 20,
        ],
    );
}

fn echo_each_wait_strategy() {
    for wait in [
        WaitStrategy::Spin,
        WaitStrategy::Block,
        WaitStrategy::Adaptive {
            spin: Duration::from_micros(5),
        },
    ] {
        echo_sizes_with(wait, 1 << 16, &[0, 64, 4096, 20_000, 100_000, 3, 1 << 20]);
    }
}

fn zero_copy_reserve_commit() {
    let p = path();
    let l = Listener::bind(&p).unwrap();
    let child = common::spawn(move || {
        let mut c = Connection::connect(&p).unwrap();
        for seq in 0..10_000u64 {
            let mut g = c.reserve(256).unwrap();
            g.copy_from_slice(&payload(seq, 256));
            if seq % 3 == 0 {
                g.truncate(100);
            }
            g.commit().unwrap();
        }
        // A dropped grant sends nothing.
        let abandoned = c.reserve(10).unwrap();
        let _ = abandoned;
        c.send(b"end").unwrap();
    });
    let mut s = l.accept().unwrap();
    for seq in 0..10_000u64 {
        let m = s.recv_timeout(WAIT).unwrap();
        let mut want = payload(seq, 256);
        if seq % 3 == 0 {
            want.truncate(100);
        }
        assert_eq!(m.to_vec(), want);
    }
    assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"end");
    assert!(matches!(s.recv_timeout(WAIT), Err(Error::Disconnected)));
    child.wait(WAIT);
}

/// Streams `n` checksummed, numbered messages over `tx` while receiving
/// the same from `rx`, each on its own thread.
fn duplex(c: Connection, n: u64) {
    let (mut tx, mut rx) = c.split();
    let sender = std::thread::spawn(move || {
        let mut buf = vec![0u8; 512];
        for seq in 0..n {
            let len = 16 + (seq as usize * 13) % 480;
            let b = &mut buf[..len];
            b[..8].copy_from_slice(&seq.to_le_bytes());
            for (i, x) in b[16..].iter_mut().enumerate() {
                *x = (seq as usize + i) as u8;
            }
            let sum = fnv(&b[16..]);
            b[8..16].copy_from_slice(&sum.to_le_bytes());
            tx.send(b).unwrap();
        }
        tx
    });
    let mut buf = vec![0u8; 512];
    for seq in 0..n {
        let m = rx.recv_timeout(WAIT).unwrap();
        let k = m.copy_to(&mut buf);
        let b = &buf[..k];
        assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), seq);
        assert_eq!(
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
            fnv(&b[16..])
        );
    }
    let tx = sender.join().unwrap();
    drop(tx);
    assert!(matches!(rx.recv_timeout(WAIT), Err(Error::Disconnected)));
}

fn million_each_way_at_once() {
    const M: u64 = 1_000_000;
    let p = path();
    let opts = Builder::new().ring_capacity(1 << 18);
    let l = opts.bind(&p).unwrap();
    let copts = opts.clone();
    let child = common::spawn(move || duplex(copts.connect(&p).unwrap(), M));
    duplex(l.accept().unwrap(), M);
    child.wait(WAIT);
}

fn eight_clients_one_server() {
    let p = path();
    let l = Listener::bind(&p).unwrap();
    let children: Vec<_> = (0..8u64)
        .map(|id| {
            let p = p.clone();
            common::spawn(move || {
                let mut c = Connection::connect(&p).unwrap();
                for seq in 0..2000u64 {
                    let data = payload(seq ^ (id << 32), 100 + id as usize * 10);
                    c.send(&data).unwrap();
                    assert!(c.recv_timeout(Duration::from_secs(30)).unwrap().to_vec() == data);
                }
            })
        })
        .collect();
    // The server serves all eight at once, one thread each.
    let mut threads = Vec::new();
    for _ in 0..8 {
        let mut s = l.accept().unwrap();
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            loop {
                let v = match s.recv_timeout(WAIT) {
                    Ok(m) => m.to_vec(),
                    Err(Error::Disconnected) => return n,
                    Err(e) => panic!("{e}"),
                };
                s.send(&v).unwrap();
                n += 1;
            }
        }));
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), 2000);
    }
    for c in children {
        c.wait(WAIT);
    }
}

/// Lengths that alternate fragmented (large, larger, smaller: the
/// receiver's reassembly buffer is reused and must never show stale bytes)
/// and inline messages, for a 64 KiB ring (records up to 32,760 bytes).
fn mixed_len(seq: u64) -> usize {
    match seq % 6 {
        0 => 100_000 + seq as usize,
        2 => 300_000,
        4 => 40_000 + seq as usize,
        _ => 50,
    }
}

fn large_messages_keep_order_with_inline() {
    let p = path();
    let opts = Builder::new().ring_capacity(1 << 16);
    let l = opts.bind(&p).unwrap();
    let copts = opts.clone();
    let child = common::spawn(move || {
        let mut c = copts.connect(&p).unwrap();
        for seq in 0..40u64 {
            c.send(&payload(seq, mixed_len(seq))).unwrap();
        }
    });
    let mut s = l.accept().unwrap();
    for seq in 0..40u64 {
        let len = mixed_len(seq);
        let m = s.recv_timeout(WAIT).unwrap();
        assert_eq!(
            m.as_sealed().is_some(),
            len > 32_760,
            "messages larger than one record are reassembled"
        );
        if seq % 4 == 2 {
            // Taking the reassembled buffer leaves the receiver a new one.
            assert!(m.into_vec() == payload(seq, len), "message {seq}");
        } else if let Some(bytes) = m.as_sealed() {
            assert!(bytes == payload(seq, len), "message {seq}");
        } else {
            assert!(m.to_vec() == payload(seq, len), "message {seq}");
        }
    }
    assert!(matches!(s.recv_timeout(WAIT), Err(Error::Disconnected)));
    child.wait(WAIT);
}

fn message_too_large_refused_by_sender() {
    let p = path();
    let l = Builder::new().max_message(1 << 20).bind(&p).unwrap();
    let child = common::spawn(move || {
        let mut c = Connection::connect(&p).unwrap();
        let r = c.send(&vec![0u8; (1 << 20) + 1]);
        assert!(matches!(r, Err(Error::MessageTooLarge { .. })), "{r:?}");
        c.send(&vec![1u8; 1 << 20]).unwrap();
    });
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_timeout(WAIT).unwrap().len(), 1 << 20);
    child.wait(WAIT);
    // The limit binds inline messages too (send, try_send and reserve).
    let p = path();
    let l = Builder::new().max_message(100).bind(&p).unwrap();
    let child = common::spawn(move || {
        let mut c = Connection::connect(&p).unwrap();
        assert!(matches!(
            c.send(&[0u8; 101]),
            Err(Error::MessageTooLarge { max: 100, .. })
        ));
        assert!(matches!(
            c.try_send(&[0u8; 101]),
            Err(Error::MessageTooLarge { .. })
        ));
        assert!(matches!(
            c.reserve(101).map(|_| ()),
            Err(Error::MessageTooLarge { .. })
        ));
        c.send(&[1u8; 100]).unwrap();
    });
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_timeout(WAIT).unwrap().len(), 100);
    child.wait(WAIT);
}

fn sigkill_mid_stream_gives_disconnected() {
    for wait in [
        WaitStrategy::default(),
        WaitStrategy::Spin,
        WaitStrategy::Block,
    ] {
        let p = path();
        let opts = Builder::new().wait(wait).ring_capacity(1 << 16);
        let l = opts.bind(&p).unwrap();
        let copts = opts.clone();
        let child = common::spawn(move || {
            let mut c = copts.connect(&p).unwrap();
            let mut seq = 0u64;
            loop {
                c.send(&seq.to_le_bytes()).unwrap();
                seq += 1;
                if seq.is_multiple_of(1000) {
                    // Occasionally also a large message.
                    c.send(&vec![7u8; 40_000]).unwrap();
                }
            }
        });
        let mut s = l.accept().unwrap();
        let mut next = 0u64;
        for _ in 0..5000 {
            let m = s.recv_timeout(WAIT).unwrap();
            if m.len() == 8 {
                assert_eq!(m.to_vec(), next.to_le_bytes());
                next += 1;
            }
        }
        child.kill();
        let killed = Instant::now();
        // Everything committed before the kill is still delivered, in order,
        // then Disconnected.
        loop {
            match s.recv_timeout(Duration::from_secs(5)) {
                Ok(m) => {
                    if m.len() == 8 {
                        assert_eq!(m.to_vec(), next.to_le_bytes());
                        next += 1;
                    }
                }
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{wait:?}: {e}"),
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "{wait:?}: Disconnected took {:?}",
            killed.elapsed()
        );
        // The sending side notices too.
        let r = (0..100_000).try_for_each(|_| s.send(b"x"));
        assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    }
}

fn blocked_sender_sees_disconnect_of_dead_reader() {
    let p = path();
    let opts = Builder::new()
        .wait(WaitStrategy::Block)
        .ring_capacity(1 << 12);
    let l = opts.bind(&p).unwrap();
    let copts = opts.clone();
    let child = common::spawn(move || {
        let _c = copts.connect(&p).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    let mut s = l.accept().unwrap();
    // Fill the ring; the next send blocks until the peer dies.
    while s.try_send(&[0u8; 512]).unwrap() {}
    let pid = child.pid;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    let t = Instant::now();
    let r = s.send_timeout(&[0u8; 512], Duration::from_secs(10));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    killer.join().unwrap();
    child.kill();
}

fn shutdown_handle_wakes_blocked_calls() {
    // Evicting a client: another thread ends the connection; a recv and a
    // send that wait without a timeout return Disconnected, in every wait
    // strategy, and the peer sees the connection end.
    for wait in [
        WaitStrategy::Block,
        WaitStrategy::default(),
        WaitStrategy::Spin,
    ] {
        let p = path();
        let l = Builder::new()
            .ring_capacity(1 << 12)
            .wait(wait)
            .bind(&p)
            .unwrap();
        let child = common::spawn(move || {
            let mut c = Builder::new()
                .ring_capacity(1 << 12)
                .wait(wait)
                .connect(&p)
                .unwrap();
            c.send(b"first").unwrap();
            // Read nothing for a while: the other side's sender fills its
            // ring and blocks. Then drain: what was committed arrives, then
            // the end of the connection.
            std::thread::sleep(Duration::from_millis(500));
            let r = loop {
                match c.recv_timeout(WAIT) {
                    Ok(m) => assert_eq!(m.len(), 1000),
                    Err(e) => break e,
                }
            };
            assert!(matches!(r, Error::Disconnected), "peer: {r:?}");
        });
        let s = l.accept();
        let s = s.unwrap();
        let handle = s.shutdown_handle().unwrap();
        let (mut tx, mut rx) = s.split();
        assert_eq!(rx.recv_timeout(WAIT).unwrap().to_vec(), b"first");
        let receiver = std::thread::spawn(move || {
            let t = Instant::now();
            let r = rx.recv().map(|m| m.len());
            (r, t.elapsed())
        });
        let sender = std::thread::spawn(move || {
            let t = Instant::now();
            let r = loop {
                if let Err(e) = tx.send(&[7u8; 1000]) {
                    break e;
                }
            };
            (r, t.elapsed(), tx)
        });
        std::thread::sleep(Duration::from_millis(200));
        handle.shutdown().unwrap();
        let (r, took) = receiver.join().unwrap();
        assert!(
            matches!(r, Err(Error::Disconnected)),
            "{wait:?}: recv {r:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{wait:?}: recv took {took:?}"
        );
        let (e, took, mut tx) = sender.join().unwrap();
        assert!(matches!(e, Error::Disconnected), "{wait:?}: send {e:?}");
        assert!(
            took < Duration::from_secs(3),
            "{wait:?}: send took {took:?}"
        );
        // Every later call fails at once; shutting down twice is harmless.
        assert!(matches!(tx.send(b"x"), Err(Error::Disconnected)));
        handle.shutdown().unwrap();
        child.wait(WAIT);
    }
}

fn connecting_to_a_foreign_socket_says_so() {
    // A new user pointed a client at a socket that is not shmsock's and got
    // "Protocol wrong type for socket (os error 91)".
    let dir = std::env::temp_dir().join(format!("shmsock-foreign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stream.sock");
    let _stream = std::os::unix::net::UnixListener::bind(&file).unwrap();
    let e = Connection::connect(&file).unwrap_err();
    assert!(e.to_string().contains("not a shmsock listener"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn graceful_close_drains() {
    let p = path();
    let l = Listener::bind(&p).unwrap();
    let child = common::spawn(move || {
        let mut c = Connection::connect(&p).unwrap();
        for seq in 0..1000u64 {
            c.send(&seq.to_le_bytes()).unwrap();
        }
        // Drop right away: the server must still get all 1000.
    });
    let mut s = l.accept().unwrap();
    child.wait(WAIT);
    for seq in 0..1000u64 {
        assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), seq.to_le_bytes());
    }
    assert!(matches!(s.recv_timeout(WAIT), Err(Error::Disconnected)));
    assert!(matches!(s.try_recv(), Err(Error::Disconnected)));
}

fn listener_file_mode_stale_and_live() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("shmsock-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("s.sock");
    let l = Listener::bind(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second bind while the first is live is refused.
    let e = Listener::bind(&file).unwrap_err();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse),
        "{e}"
    );
    // A child process connects through the file.
    let f2 = file.clone();
    let child = common::spawn(move || {
        let mut c = Connection::connect(&f2).unwrap();
        c.send(b"hi").unwrap();
    });
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"hi");
    assert_eq!(s.peer_credentials().pid, Some(child.pid.as_raw()));
    assert_eq!(s.peer_credentials().uid, nix::unistd::geteuid().as_raw());
    child.wait(WAIT);
    drop(s);
    drop(l);
    assert!(!file.exists(), "socket file removed on drop");
    // A stale socket file (listener gone without cleanup) is replaced.
    {
        let raw = std::os::unix::net::UnixListener::bind(&file).unwrap();
        drop(raw); // leaves a stale file behind
    }
    assert!(file.exists());
    let l = Builder::new().socket_mode(0o660).bind(&file).unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(l);
    // A regular file is never replaced.
    std::fs::write(&file, b"keep").unwrap();
    assert!(Listener::bind(&file).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn credentials_policy_refuses() {
    let p = path();
    let me = nix::unistd::geteuid().as_raw();
    let l = Builder::new()
        .credentials(shmsock::CredentialsPolicy::Uid(me.wrapping_add(1)))
        .bind(&p)
        .unwrap();
    let child = common::spawn(move || {
        let r = Connection::connect(&p);
        assert!(
            matches!(r, Err(Error::Rejected(_)) | Err(Error::Disconnected)),
            "{r:?}"
        );
    });
    let r = l.accept();
    assert!(
        matches!(r, Err(Error::CredentialsRefused { uid, .. }) if uid == me),
        "{r:?}"
    );
    child.wait(WAIT);
}

/// Message `seq` of the batch tests: 64 bytes, its number, then an FNV
/// checksum of the 48 bytes that follow.
fn batch_msg(seq: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in m[16..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i * 7) as u8;
    }
    let sum = fnv(&m[16..]);
    m[8..16].copy_from_slice(&sum.to_le_bytes());
    m
}

/// Checks that `m` is message `seq` of [`batch_msg`].
fn check_batch_msg(m: &[u8], seq: u64) {
    assert_eq!(m.len(), 64, "message {seq}: length");
    assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), seq, "order");
    assert_eq!(
        u64::from_le_bytes(m[8..16].try_into().unwrap()),
        fnv(&m[16..]),
        "message {seq}: checksum"
    );
    assert!(m == batch_msg(seq), "message {seq}: content");
}

/// Sends messages `from..to` of [`batch_msg`] with `send_batch`, in
/// batches of the sizes in `sizes` (cycled), resending what a partial
/// batch left.
fn send_batches(c: &mut Connection, from: u64, to: u64, sizes: &[usize]) {
    let mut seq = from;
    let mut k = 0;
    while seq < to {
        let n = (sizes[k % sizes.len()] as u64).min(to - seq);
        k += 1;
        let msgs: Vec<[u8; 64]> = (seq..seq + n).map(batch_msg).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
        let mut sent = 0;
        while sent < refs.len() {
            sent += c.send_batch(&refs[sent..]).unwrap();
        }
        seq += n;
    }
}

/// 10^6 checksummed 64 B messages sent in batches of many sizes through a
/// small ring (the sender waits for space often) and received in batches of
/// other sizes: order and content verified, nothing lost or repeated.
fn batch_million_small_messages() {
    const M: u64 = 1_000_000;
    for wait in [WaitStrategy::default(), WaitStrategy::Block] {
        let p = path();
        let opts = Builder::new().wait(wait).ring_capacity(1 << 14);
        let l = opts.bind(&p).unwrap();
        let copts = opts.clone();
        let child = common::spawn(move || {
            let mut c = copts.connect(&p).unwrap();
            send_batches(&mut c, 0, M, &[1, 32, 7, 1000, 2, 64, 300]);
        });
        let mut s = l.accept().unwrap();
        let maxes = [32usize, 1, 5, 64, 500, 3];
        let mut next = 0u64;
        let mut calls = 0usize;
        while next < M {
            let max = maxes[calls % maxes.len()];
            calls += 1;
            let got = s
                .recv_batch_timeout(max, WAIT, |m| {
                    check_batch_msg(m, next);
                    next += 1;
                })
                .unwrap();
            assert!((1..=max).contains(&got), "{got} of at most {max}");
        }
        assert!(matches!(
            s.recv_batch_timeout(32, WAIT, |_| panic!("no more messages")),
            Err(Error::Disconnected)
        ));
        assert!(
            calls < M as usize,
            "{wait:?}: batches took more than one message at a time ({calls} calls)"
        );
        child.wait(WAIT);
    }
}

/// Length of message `seq` of the mixed test, for a 64 KiB ring (records
/// up to 32,760 bytes): mostly small, some empty, some larger than one
/// record (fragmented), one exactly one record.
fn mixed_batch_len(seq: u64) -> usize {
    match seq % 17 {
        3 => 100_000 + seq as usize,
        9 => 0,
        11 => 32_760,
        13 => 40_000,
        _ => 1 + (seq as usize * 13) % 200,
    }
}

/// Batches mixing inline and fragmented messages, received with
/// `recv_batch`, `recv` and `try_recv_batch` + `poll`: order and content
/// hold, and a fragmented message always comes alone.
fn batch_mixed_with_large_messages() {
    const N: u64 = 3000;
    let p = path();
    let opts = Builder::new().ring_capacity(1 << 16);
    let l = opts.bind(&p).unwrap();
    let copts = opts.clone();
    let child = common::spawn(move || {
        let mut c = copts.connect(&p).unwrap();
        let max_inline = c.max_inline();
        assert_eq!(max_inline, 32_760);
        let sizes = [5usize, 1, 40, 17, 200];
        let mut seq = 0u64;
        let mut k = 0;
        while seq < N {
            let n = (sizes[k % sizes.len()] as u64).min(N - seq);
            k += 1;
            let msgs: Vec<Vec<u8>> = (seq..seq + n)
                .map(|s| payload(s, mixed_batch_len(s)))
                .collect();
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < refs.len() {
                sent += c.send_batch(&refs[sent..]).unwrap();
            }
            // Plain sends in between.
            if k % 7 == 0 && seq + n < N {
                c.send(&payload(seq + n, mixed_batch_len(seq + n))).unwrap();
                seq += 1;
            }
            seq += n;
        }
    });
    let mut s = l.accept().unwrap();
    let max_inline = s.max_inline();
    let mut next = 0u64;
    let mut call = 0u64;
    while next < N {
        call += 1;
        let mut lens = Vec::new();
        let mut check = |m: &[u8]| {
            let len = mixed_batch_len(next);
            assert_eq!(m.len(), len, "message {next}: length");
            assert!(m == payload(next, len), "message {next}: content");
            lens.push(len);
            next += 1;
        };
        let got = match call % 3 {
            0 => {
                let m = s.recv_timeout(WAIT).unwrap();
                check(&m.to_vec());
                1
            }
            1 => s.recv_batch_timeout(64, WAIT, &mut check).unwrap(),
            _ => loop {
                let n = s.try_recv_batch(64, &mut check).unwrap();
                if n > 0 {
                    break n;
                }
                // Nothing ready: the wake-up is armed, sleep on the fd.
                let fd = std::os::fd::AsFd::as_fd(&s);
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                nix::poll::poll(&mut fds, 10_000u16).unwrap();
            },
        };
        assert_eq!(got, lens.len());
        if lens.iter().any(|&l| l > max_inline) {
            assert_eq!(lens.len(), 1, "a fragmented message comes alone");
        }
    }
    assert!(matches!(
        s.recv_batch_timeout(8, WAIT, |_| panic!("no more messages")),
        Err(Error::Disconnected)
    ));
    child.wait(WAIT);
}

/// A batch larger than the ring: the sender publishes what fits, waits
/// for space and finishes once the receiver reads; with a timeout it
/// returns how many it sent, then `Timeout` on a full ring.
fn batch_waits_for_space() {
    const N: u64 = 1000;
    for wait in [WaitStrategy::default(), WaitStrategy::Block] {
        let p = path();
        // 4 KiB: about 56 records of 64 B.
        let opts = Builder::new().wait(wait).ring_capacity(1 << 12);
        let l = opts.bind(&p).unwrap();
        let copts = opts.clone();
        let child = common::spawn(move || {
            let mut c = copts.connect(&p).unwrap();
            let msgs: Vec<[u8; 64]> = (0..N).map(batch_msg).collect();
            let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
            // The receiver sleeps: the ring fills, the call times out with
            // what it managed to send.
            let t = Instant::now();
            let first = c
                .send_batch_timeout(&refs, Duration::from_millis(100))
                .unwrap();
            assert!(t.elapsed() >= Duration::from_millis(100));
            assert!((20..100).contains(&first), "{first} sent into a 4 KiB ring");
            let r = c.send_batch_timeout(&refs[first..], Duration::from_millis(20));
            assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
            // Without a timeout, it waits for the receiver and sends all.
            assert_eq!(c.send_batch(&refs[first..]).unwrap(), N as usize - first);
        });
        let mut s = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let mut next = 0u64;
        while next < N {
            s.recv_batch_timeout(16, WAIT, |m| {
                check_batch_msg(m, next);
                next += 1;
            })
            .unwrap();
        }
        assert!(matches!(
            s.recv_batch_timeout(8, WAIT, |_| ()),
            Err(Error::Disconnected)
        ));
        child.wait(WAIT);
    }
}

/// The peer leaves in the middle of batches. A receiver killed while the
/// sender waits for space: the batch ends with what was sent, or
/// `Disconnected`, and every later call fails. A sender killed mid-batch:
/// the receiver gets everything published, in order, then `Disconnected`.
fn batch_disconnected_mid_batch() {
    for wait in [WaitStrategy::default(), WaitStrategy::Block] {
        // The receiver dies.
        let p = path();
        let opts = Builder::new().wait(wait).ring_capacity(1 << 12);
        let l = opts.bind(&p).unwrap();
        let copts = opts.clone();
        let child = common::spawn(move || {
            let mut c = copts.connect(&p).unwrap();
            let mut next = 0u64;
            while next < 500 {
                c.recv_batch_timeout(32, WAIT, |m| {
                    check_batch_msg(m, next);
                    next += 1;
                })
                .unwrap();
            }
            std::thread::sleep(Duration::from_secs(60));
        });
        let mut s = l.accept().unwrap();
        let pid = child.pid;
        let mut sent = 0u64;
        let mut killed: Option<Instant> = None;
        let err = loop {
            let msgs: Vec<[u8; 64]> = (sent..sent + 256).map(batch_msg).collect();
            let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
            if sent >= 500 && killed.is_none() {
                // The ring is full and the peer stopped reading.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                killed = Some(Instant::now());
            }
            match s.send_batch_timeout(&refs, Duration::from_secs(20)) {
                Ok(n) => {
                    assert!(n >= 1);
                    if killed.is_some() && n < refs.len() {
                        // A batch cut short by the hang-up: the next one fails.
                        break s.send_batch(&refs[..1]).unwrap_err();
                    }
                    sent += n as u64;
                }
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Disconnected), "{wait:?}: {err}");
        assert!(
            killed.is_some_and(|k| k.elapsed() < Duration::from_secs(2)),
            "{wait:?}: the sender noticed late"
        );
        assert!(matches!(s.send_batch(&[b"x"]), Err(Error::Disconnected)));
        child.kill();

        // The sender dies.
        let p = path();
        let l = opts.bind(&p).unwrap();
        let copts = opts.clone();
        let child = common::spawn(move || {
            let mut c = copts.connect(&p).unwrap();
            send_batches(&mut c, 0, u64::MAX, &[32, 5, 100]);
        });
        let mut s = l.accept().unwrap();
        let mut next = 0u64;
        while next < 20_000 {
            s.recv_batch_timeout(32, WAIT, |m| {
                check_batch_msg(m, next);
                next += 1;
            })
            .unwrap();
        }
        child.kill();
        let killed = Instant::now();
        loop {
            match s.recv_batch_timeout(32, Duration::from_secs(5), |m| {
                check_batch_msg(m, next);
                next += 1;
            }) {
                Ok(n) => assert!(n >= 1),
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{wait:?}: {e}"),
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "{wait:?}: Disconnected took {:?}",
            killed.elapsed()
        );
        assert!(matches!(
            s.try_recv_batch(8, |_| ()),
            Err(Error::Disconnected)
        ));
    }
}

/// Zero-copy batches (`Connection::batch`): messages reserved in place and
/// staged, a large one sent through the batch, an abandoned grant, batches
/// published explicitly and by drop, through a ring small enough that
/// reserving waits (which must publish what is staged, or both sides would
/// wait forever).
fn batch_guard_zero_copy() {
    const N: u64 = 20_000;
    let large = |seq: u64| seq % 997 == 500;
    for wait in [WaitStrategy::default(), WaitStrategy::Block] {
        let p = path();
        let opts = Builder::new().wait(wait).ring_capacity(1 << 12);
        let l = opts.bind(&p).unwrap();
        let copts = opts.clone();
        let child = common::spawn(move || {
            let mut c = copts.connect(&p).unwrap();
            let mut seq = 0u64;
            let mut k = 0u64;
            while seq < N {
                k += 1;
                let mut b = c.batch();
                assert!(b.is_empty());
                let end = (seq + 1 + k % 150).min(N);
                while seq < end {
                    if large(seq) {
                        b.send(&payload(seq, 10_000)).unwrap();
                    } else {
                        let mut g = b.reserve(64).unwrap();
                        g.copy_from_slice(&batch_msg(seq));
                        g.commit();
                        if seq.is_multiple_of(13) {
                            // Abandoned: sends nothing.
                            let mut g = b.reserve(64).unwrap();
                            g.fill_from(&[0xee; 64]);
                        }
                    }
                    seq += 1;
                }
                let staged = b.len();
                if k.is_multiple_of(2) {
                    assert_eq!(b.publish().unwrap(), staged);
                } else {
                    drop(b);
                }
            }
        });
        let mut s = l.accept().unwrap();
        let mut next = 0u64;
        while next < N {
            s.recv_batch_timeout(40, WAIT, |m| {
                if large(next) {
                    assert!(m == payload(next, 10_000), "message {next}");
                } else {
                    check_batch_msg(m, next);
                }
                next += 1;
            })
            .unwrap();
        }
        assert!(matches!(
            s.recv_batch_timeout(8, WAIT, |_| ()),
            Err(Error::Disconnected)
        ));
        child.wait(WAIT);
    }
}

fn main() {
    common::run(&[
        ("echo_sizes", echo_sizes),
        ("echo_each_wait_strategy", echo_each_wait_strategy),
        ("zero_copy_reserve_commit", zero_copy_reserve_commit),
        ("million_each_way_at_once", million_each_way_at_once),
        ("eight_clients_one_server", eight_clients_one_server),
        (
            "large_messages_keep_order_with_inline",
            large_messages_keep_order_with_inline,
        ),
        (
            "message_too_large_refused_by_sender",
            message_too_large_refused_by_sender,
        ),
        (
            "sigkill_mid_stream_gives_disconnected",
            sigkill_mid_stream_gives_disconnected,
        ),
        (
            "blocked_sender_sees_disconnect_of_dead_reader",
            blocked_sender_sees_disconnect_of_dead_reader,
        ),
        ("graceful_close_drains", graceful_close_drains),
        (
            "connecting_to_a_foreign_socket_says_so",
            connecting_to_a_foreign_socket_says_so,
        ),
        (
            "shutdown_handle_wakes_blocked_calls",
            shutdown_handle_wakes_blocked_calls,
        ),
        (
            "listener_file_mode_stale_and_live",
            listener_file_mode_stale_and_live,
        ),
        ("credentials_policy_refuses", credentials_policy_refuses),
        ("batch_million_small_messages", batch_million_small_messages),
        (
            "batch_mixed_with_large_messages",
            batch_mixed_with_large_messages,
        ),
        ("batch_waits_for_space", batch_waits_for_space),
        ("batch_disconnected_mid_batch", batch_disconnected_mid_batch),
        ("batch_guard_zero_copy", batch_guard_zero_copy),
    ]);
}
