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
    // 5 ms: inside the 20 ms futex slice a blocked call sleeps before it
    // moves to the socket, so the shutdown usually finds a futex sleeper.
    // (The test cannot tell its FUTEX_WAKE from the slice's end, after
    // which the socket shows the shutdown too: it checks that the wait
    // ends, with Disconnected.)
    let shut = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        h.shutdown().unwrap();
    });
    let r = c.recv_timeout(Duration::from_secs(20)).map(|m| m.to_vec());
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    shut.join().unwrap();
    drop(c);
    server.join().unwrap();
}
/// `Connection::halves`: a server replies with the request still held in
/// the ring (the message borrows only the receiving half), and the request
/// goes back to its sender only after the reply.
#[test]
fn halves_reply_while_holding_the_request() {
    let path = sock_path("halves");
    let l = Listener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        for _ in 0..1000 {
            let (tx, rx) = c.halves();
            let msg = rx.recv().unwrap();
            let mut reply = tx.reserve(msg.len()).unwrap();
            assert_eq!(msg.copy_to(&mut reply), msg.len());
            reply.commit().unwrap();
        }
    });
    let mut c = Connection::connect(&path).unwrap();
    for k in 0..1000u32 {
        c.send(&k.to_le_bytes()).unwrap();
        assert_eq!(c.recv().unwrap().to_vec(), k.to_le_bytes());
    }
    server.join().unwrap();
}

/// A sink thread that receives everything and sends back (len, checksum)
/// of each message; the test checks them.
fn checking_sink(name: &str, ring: u64) -> (Connection, std::thread::JoinHandle<()>) {
    let path = sock_path(name);
    let l = Builder::new().ring_capacity(ring).bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        loop {
            let (tx, rx) = c.halves();
            let m = match rx.recv() {
                Ok(m) => m,
                Err(Error::Disconnected) => return,
                Err(e) => panic!("{e}"),
            };
            let v = m.to_vec();
            let sum = v.iter().enumerate().fold(0u64, |a, (i, &b)| {
                a.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64)
            });
            let mut reply = (v.len() as u64).to_le_bytes().to_vec();
            reply.extend_from_slice(&sum.to_le_bytes());
            tx.send(&reply).unwrap();
        }
    });
    let c = Builder::new().ring_capacity(ring).connect(&path).unwrap();
    (c, server)
}

fn expect_sum(c: &mut Connection, data: &[u8]) {
    let sum = data.iter().enumerate().fold(0u64, |a, (i, &b)| {
        a.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64)
    });
    let r = c.recv_timeout(Duration::from_secs(20)).unwrap().to_vec();
    assert_eq!(r[..8], (data.len() as u64).to_le_bytes(), "length");
    assert_eq!(r[8..16], sum.to_le_bytes(), "checksum, len {}", data.len());
}

#[test]
fn write_message_in_place_any_size() {
    let (mut c, server) = checking_sink("writer", 1 << 16);
    let inline = c.max_inline();
    for len in [0, 1, 100, inline, inline + 1, 3 * inline + 5, 5 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
        let mut w = c.write_message(len).unwrap();
        let mut chunks = 0;
        while let Some(mut chunk) = w.next_chunk().unwrap() {
            let r = chunk.range();
            assert_eq!(chunk.len(), r.len());
            chunk.copy_from_slice(&data[r]);
            chunk.commit().unwrap();
            chunks += 1;
        }
        assert!(w.is_done());
        assert_eq!(chunks == 1, len <= inline, "len {len}: {chunks} chunks");
        drop(w);
        expect_sum(&mut c, &data);
        // write_all: the same bytes through the same path.
        c.write_message(len).unwrap().write_all(&data).unwrap();
        expect_sum(&mut c, &data);
    }
    drop(c);
    server.join().unwrap();
}

#[test]
fn abandoned_writer_and_dropped_chunk_publish_nothing() {
    let (mut c, server) = checking_sink("abandon", 1 << 16);
    let len = 10 * c.max_inline();
    let data: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
    // Two chunks committed, then the writer is dropped: the receiver must
    // drop the fragments it got and see only the next message.
    {
        let mut w = c.write_message(len).unwrap();
        for _ in 0..2 {
            let mut chunk = w.next_chunk().unwrap().unwrap();
            let r = chunk.range();
            chunk.copy_from_slice(&data[r]);
            chunk.commit().unwrap();
        }
    }
    // A chunk dropped uncommitted is offered again.
    let mut w = c.write_message(len).unwrap();
    let first = w.next_chunk().unwrap().unwrap().range();
    let again = w.next_chunk().unwrap().unwrap().range();
    assert_eq!(first, again);
    while let Some(mut chunk) = w.next_chunk().unwrap() {
        let r = chunk.range();
        chunk.copy_from_slice(&data[r]);
        chunk.commit().unwrap();
    }
    drop(w);
    expect_sum(&mut c, &data);
    // An abandoned inline message: nothing at all was published.
    {
        let mut w = c.write_message(10).unwrap();
        let chunk = w.next_chunk().unwrap();
        assert!(chunk.is_some_and(|c| c.len() == 10));
    }
    c.send(b"after").unwrap();
    expect_sum(&mut c, b"after");
    drop(c);
    server.join().unwrap();
}

#[test]
fn recv_into_reuses_the_callers_buffer() {
    let path = sock_path("recv_into");
    let l = Builder::new().ring_capacity(1 << 16).bind(&path).unwrap();
    let sender = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        for round in 0..3u8 {
            for len in [0usize, 5, 1000, 200_000, 7] {
                c.send(&vec![round ^ len as u8; len]).unwrap();
            }
        }
    });
    let mut c = Builder::new()
        .ring_capacity(1 << 16)
        .connect(&path)
        .unwrap();
    let mut buf = Vec::new();
    for round in 0..3u8 {
        for len in [0usize, 5, 1000, 200_000, 7] {
            // Through the receiver half and through the connection.
            let n = if round == 1 {
                c.recv_into(&mut buf).unwrap()
            } else {
                c.receiver().recv_into(&mut buf).unwrap()
            };
            assert_eq!(n, len);
            assert_eq!(buf, vec![round ^ len as u8; len], "round {round} len {len}");
        }
    }
    // The large message traded buffers: once both have grown, no call
    // allocates (both capacities stay at least one large message).
    assert!(buf.capacity() >= 7);
    sender.join().unwrap();
}

/// Minor page faults of this process so far (`/proc/self/stat` field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_comm = stat.rsplit_once(") ").unwrap().1;
    after_comm.split(' ').nth(7).unwrap().parse().unwrap()
}

/// One pass of inline messages through a 16 MiB ring (both sides in this
/// process); returns the minor faults it took.
fn faults_of_first_pass(prefault: bool) -> u64 {
    const RING: u64 = 16 << 20;
    const MSG: usize = 4096;
    let path = sock_path(&format!("prefault{prefault}"));
    let l = Builder::new()
        .ring_capacity(RING)
        .prefault(prefault)
        .bind(&path)
        .unwrap();
    let server = std::thread::spawn(move || l.accept().unwrap());
    let mut c = Builder::new()
        .ring_capacity(RING)
        .prefault(prefault)
        .connect(&path)
        .unwrap();
    let mut s = server.join().unwrap();
    let msg = vec![7u8; MSG];
    let mut buf = vec![0u8; MSG];
    let before = minor_faults();
    // Half a ring at a time, so the ring never fills: 2 x 8 MiB.
    for _ in 0..2 {
        for _ in 0..(RING as usize / 2 / (MSG + 8)) {
            c.send(&msg).unwrap();
        }
        while s.try_recv().unwrap().map(|m| m.copy_to(&mut buf)).is_some() {}
    }
    minor_faults() - before
}

#[test]
fn prefault_moves_ring_page_faults_to_connect() {
    let cold = faults_of_first_pass(false);
    let warm = faults_of_first_pass(true);
    eprintln!(
        "first pass through a 16 MiB ring: {cold} minor faults without prefault, {warm} with"
    );
    // Without: about one fault per 4 KiB page on each side (2 x 4096).
    assert!(cold >= 4096, "without prefault: {cold} faults");
    assert!(
        warm * 8 < cold,
        "with prefault: {warm} faults, without: {cold}"
    );
}

#[test]
fn read_message_piece_by_piece() {
    const RING: u64 = 1 << 16;
    let path = sock_path("reader");
    let l = Builder::new().ring_capacity(RING).bind(&path).unwrap();
    let data = |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 31 + len) as u8).collect() };
    let sizes = [0usize, 100, (RING / 2 - 8) as usize, 5 << 20, 7, 3 << 20, 9];
    let sender = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        for len in sizes {
            c.send(&data(len)).unwrap();
        }
        // Two chunks of a large message, then the writer is dropped.
        let mut w = c.write_message(1 << 20).unwrap();
        for _ in 0..2 {
            let mut chunk = w.next_chunk().unwrap().unwrap();
            chunk.fill(1);
            chunk.commit().unwrap();
        }
        drop(w);
        c.send(b"after the abandoned one").unwrap();
        c
    });
    let mut c = Builder::new().ring_capacity(RING).connect(&path).unwrap();
    let rx = c.receiver();
    let mut piece = Vec::new();
    // Whole messages, piece by piece: three inline ones, then 5 MiB.
    for len in [0usize, 100, (RING / 2 - 8) as usize, 5 << 20] {
        let mut r = rx.read_message().unwrap();
        assert_eq!(r.len(), len);
        let mut got = Vec::new();
        let mut pieces = 0;
        while r.next_chunk(&mut piece).unwrap() {
            assert!(piece.len() <= (RING / 2) as usize, "a piece is one record");
            got.extend_from_slice(&piece);
            pieces += 1;
        }
        assert_eq!(r.remaining(), 0);
        assert_eq!(got, data(len), "len {len}");
        assert_eq!(
            pieces > 1,
            len > (RING / 2 - 8) as usize,
            "len {len}: {pieces}"
        );
    }
    // Mixed with recv.
    assert_eq!(rx.recv().unwrap().to_vec(), data(7));
    // 3 MiB: three pieces, then the reader is dropped; the rest is skipped.
    {
        let mut r = rx.read_message().unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            assert!(r.next_chunk(&mut piece).unwrap());
            got.extend_from_slice(&piece);
        }
        assert_eq!(got[..], data(3 << 20)[..got.len()]);
    }
    assert_eq!(rx.recv().unwrap().to_vec(), data(9));
    // The sender abandons this one after two chunks.
    let mut r = rx.read_message().unwrap();
    assert_eq!(r.len(), 1 << 20);
    let err = loop {
        match r.next_chunk(&mut piece) {
            Ok(true) => assert!(piece.iter().all(|&b| b == 1)),
            Ok(false) => panic!("an abandoned message ended normally"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Abandoned), "{err:?}");
    drop(r);
    assert_eq!(rx.recv().unwrap().to_vec(), b"after the abandoned one");
    drop(sender.join().unwrap());
}

#[test]
fn fragment_size_sets_the_pieces_of_a_large_message() {
    const RING: u64 = 1 << 20;
    let path = sock_path("fragsize");
    // The listener (the sender here) cuts 1 MiB + 5 into 20,000-byte
    // fragments (rounded down to 8: 20,000), the first one 8 bytes short
    // (the start header); the default would be a quarter ring.
    let l = Builder::new()
        .ring_capacity(RING)
        .fragment_size(20_001)
        .bind(&path)
        .unwrap();
    let data: Vec<u8> = (0..(1 << 20) + 5).map(|i| (i * 7 + 3) as u8).collect();
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        c.send(&sent).unwrap();
        let mut chunks = 0;
        {
            let mut w = c.write_message(sent.len()).unwrap();
            while let Some(mut chunk) = w.next_chunk().unwrap() {
                let at = chunk.range().start;
                let n = chunk.len();
                chunk.copy_from_slice(&sent[at..at + n]);
                chunk.commit().unwrap();
                chunks += 1;
            }
        }
        (c, chunks)
    });
    let mut c = Builder::new().ring_capacity(RING).connect(&path).unwrap();
    let mut piece = Vec::new();
    let mut lens = Vec::new();
    let mut got = Vec::new();
    {
        let mut r = c.receiver().read_message().unwrap();
        while r.next_chunk(&mut piece).unwrap() {
            lens.push(piece.len());
            got.extend_from_slice(&piece);
        }
    }
    assert_eq!(got, data);
    assert_eq!(lens[0], 20_000 - 8);
    assert!(
        lens[1..lens.len() - 1].iter().all(|&n| n == 20_000),
        "{lens:?}"
    );
    // The start header plus the message, 20,000 bytes a record.
    assert_eq!(lens.len(), (data.len() + 8).div_ceil(20_000));
    // write_message cuts the same fragments.
    let mut buf = Vec::new();
    assert_eq!(c.recv_into(&mut buf).unwrap(), data.len());
    assert_eq!(buf, data);
    let (_c, chunks) = sender.join().unwrap();
    assert_eq!(chunks, lens.len());
}

/// Pieces `read_message` sees of one message of `len` bytes sent with
/// `send` through a 4 MiB ring by a sender built by `opts`, and whether
/// the message came through intact.
fn pieces_of_send(name: &str, opts: Builder, len: usize) -> Vec<usize> {
    const RING: u64 = 4 << 20;
    let path = sock_path(name);
    let l = opts.ring_capacity(RING).bind(&path).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        c.send(&sent).unwrap();
        // And through the batch path, which splits the same way.
        assert_eq!(c.send_batch(&[&sent[..], b"tail"]).unwrap(), 2);
        c
    });
    let mut c = Builder::new().connect(&path).unwrap();
    let mut piece = Vec::new();
    let mut lens = Vec::new();
    let mut got = Vec::new();
    {
        let mut r = c.receiver().read_message().unwrap();
        while r.next_chunk(&mut piece).unwrap() {
            lens.push(piece.len());
            got.extend_from_slice(&piece);
        }
    }
    assert_eq!(got, data);
    let mut buf = Vec::new();
    assert_eq!(c.recv_into(&mut buf).unwrap(), len);
    assert_eq!(buf, data);
    assert_eq!(c.recv().unwrap().to_vec(), b"tail");
    drop(sender.join().unwrap());
    lens
}

#[test]
fn pipeline_threshold_splits_messages_that_fit_one_record() {
    // 1 MiB fits one record of a 4 MiB ring (2 MiB - 8).
    let len = 1 << 20;
    // Above the threshold: 128 KiB fragments (the first one 8 bytes short,
    // the start header), though a quarter ring would be 1 MiB.
    let lens = pieces_of_send("pipe-on", Builder::new().pipeline_threshold(256 << 10), len);
    assert_eq!(lens.len(), (len + 8).div_ceil(128 << 10), "{lens:?}");
    assert_eq!(lens[0], (128 << 10) - 8);
    // `fragment_size` sets them, if given.
    let lens = pieces_of_send(
        "pipe-frag",
        Builder::new()
            .pipeline_threshold(256 << 10)
            .fragment_size(300_000),
        len,
    );
    assert_eq!(lens.len(), (len + 8).div_ceil(300_000), "{lens:?}");
    // Off: one record, one piece.
    let lens = pieces_of_send(
        "pipe-off",
        Builder::new().pipeline_threshold(usize::MAX),
        len,
    );
    assert_eq!(lens, [len]);
    // At or below the threshold: one record.
    let lens = pieces_of_send("pipe-below", Builder::new().pipeline_threshold(len), len);
    assert_eq!(lens, [len]);
}

#[test]
fn block_fragments_both_ways_with_a_stalling_peer() {
    // `Block` halves spin for the next fragment (or its space) in the
    // middle of a message, then park: small fragments, a small ring, and a
    // peer that stalls mid-message (longer than any spin window), both ways.
    let path = sock_path("block-frags");
    let opts = Builder::new()
        .wait(WaitStrategy::Block)
        .ring_capacity(1 << 14)
        .fragment_size(1000);
    let l = opts.clone().bind(&path).unwrap();
    let len = 200_000;
    let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    let sent = data.clone();
    let echo = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        let mut buf = Vec::new();
        for round in 0..6 {
            // Stalls in the middle of the message it reads.
            let mut r = c.receiver().read_message().unwrap();
            let mut piece = Vec::new();
            buf.clear();
            let mut k = 0;
            while r.next_chunk(&mut piece).unwrap() {
                buf.extend_from_slice(&piece);
                k += 1;
                if round % 2 == 1 && k == 10 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            drop(r);
            assert_eq!(buf, sent);
            // Stalls in the middle of the message it writes.
            let mut w = c.write_message(len).unwrap();
            let mut k = 0;
            while let Some(mut chunk) = w.next_chunk().unwrap() {
                let at = chunk.range().start;
                let n = chunk.len();
                chunk.copy_from_slice(&buf[at..at + n]);
                chunk.commit().unwrap();
                k += 1;
                if round % 2 == 0 && k == 10 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    });
    let mut c = opts.connect(&path).unwrap();
    let mut back = Vec::new();
    for _ in 0..6 {
        c.send(&data).unwrap();
        assert_eq!(c.recv_into(&mut back).unwrap(), len);
        assert_eq!(back, data);
    }
    echo.join().unwrap();
}

#[test]
fn a_message_behind_a_backlog_is_not_split() {
    // Default threshold (256 KiB): 1 MiB through a 4 MiB ring is split only
    // if the receiver has consumed everything sent before.
    let path = sock_path("pipe-backlog");
    let l = Builder::new().ring_capacity(4 << 20).bind(&path).unwrap();
    let len: usize = 1 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i * 3 + 1) as u8).collect();
    let sent = data.clone();
    let sender = std::thread::spawn(move || {
        let mut c = l.accept().unwrap();
        c.send(b"unread").unwrap();
        c.send(&sent).unwrap();
        // Wait until the peer has read both, then send on an empty ring.
        assert_eq!(c.recv().unwrap().to_vec(), b"go");
        c.send(&sent).unwrap();
        c
    });
    let mut c = Builder::new().connect(&path).unwrap();
    let pieces = |c: &mut Connection| {
        let mut r = c.receiver().read_message().unwrap();
        let (mut piece, mut got, mut n) = (Vec::new(), Vec::new(), 0);
        while r.next_chunk(&mut piece).unwrap() {
            got.extend_from_slice(&piece);
            n += 1;
        }
        (got, n)
    };
    // Let the sender queue both messages before anything is read.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(c.recv().unwrap().to_vec(), b"unread");
    let (got, n) = pieces(&mut c);
    assert_eq!(got, data);
    assert_eq!(n, 1, "behind a backlog: one record");
    c.send(b"go").unwrap();
    let (got, n) = pieces(&mut c);
    assert_eq!(got, data);
    assert_eq!(
        n,
        (len + 8).div_ceil(128 << 10),
        "on an empty ring: fragments"
    );
    drop(sender.join().unwrap());
}
