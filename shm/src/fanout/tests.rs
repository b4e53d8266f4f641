//! In-process tests of the fan-out ring (the cross-process and hostile
//! cases are in `services/tests/pubsub_fork.rs`).

use std::os::fd::OwnedFd;

use super::*;
use crate::{Error, SegmentOptions, Violation};

fn dup(fd: std::os::fd::BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().unwrap()
}

fn pair(cap: u64, policy: Policy, history: usize) -> (FanoutWriter, FanoutReader, CursorView) {
    let w = FanoutWriter::create(c"t", cap, policy, history, SegmentOptions::default()).unwrap();
    let (pos, seq) = w.start_point(0);
    let (r, v) = join(&w, pos, seq);
    (w, r, v)
}

fn join(w: &FanoutWriter, pos: u64, seq: u64) -> (FanoutReader, CursorView) {
    let cur = create_cursor_segment(c"c", pos).unwrap();
    let v = CursorView::attach(dup(cur.fd()), pos).unwrap();
    let r = FanoutReader::attach(dup(w.fd()), w.capacity(), w.policy(), cur, pos, seq).unwrap();
    (r, v)
}

fn send(w: &mut FanoutWriter, floor: Option<u64>, msg: &[u8]) -> bool {
    match w.try_reserve(msg.len(), floor).unwrap() {
        Some(mut g) => {
            g.fill_from(msg);
            g.publish();
            true
        }
        None => false,
    }
}

fn msg(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

#[test]
fn block_delivers_everything_in_order_across_wraps() {
    let (mut w, mut r, mut v) = pair(1024, Policy::Block, 0);
    let mut buf = Vec::new();
    let mut sent = 0u64;
    let mut got = 0u64;
    while got < 2000 {
        let len = (sent as usize * 7) % 200;
        let tail = w.position();
        let floor = v.load(tail).unwrap();
        if sent < 2000 && send(&mut w, Some(floor), &msg(sent, len)) {
            sent += 1;
            continue;
        }
        let d = r
            .try_recv(&mut buf)
            .unwrap()
            .expect("data when the ring is full");
        assert_eq!((d.seq, d.lost), (got, 0));
        assert_eq!(buf, msg(got, (got as usize * 7) % 200));
        got += 1;
    }
    assert!(r.try_recv(&mut buf).unwrap().is_none());
}

#[test]
fn block_never_overwrites_the_slowest_reader() {
    let (mut w, _r, mut v) = pair(256, Policy::Block, 0);
    let mut n = 0;
    loop {
        let floor = v.load(w.position()).unwrap();
        if !send(&mut w, Some(floor), &[1; 40]) {
            break;
        }
        n += 1;
    }
    // 256 bytes, 56-byte records: 4 fit, the 5th would overwrite unread data.
    assert_eq!(n, 4);
}

#[test]
fn drop_oldest_counts_losses_exactly() {
    let (mut w, mut r, _v) = pair(1024, Policy::DropOldest, 0);
    let mut buf = Vec::new();
    for i in 0..100 {
        assert!(send(&mut w, None, &msg(i, 24)));
    }
    // 40-byte records, 1024-byte ring: the last 25 are intact (25*40=1000).
    let d = r.try_recv(&mut buf).unwrap().unwrap();
    assert_eq!(d.lost, d.seq);
    assert!(d.seq >= 75, "{d:?}");
    assert_eq!(buf, msg(d.seq, 24));
    let mut total = d.lost + 1;
    let mut last = d.seq;
    while let Some(d) = r.try_recv(&mut buf).unwrap() {
        assert_eq!(d.seq, last + 1);
        assert_eq!(d.lost, 0);
        assert_eq!(buf, msg(d.seq, 24));
        total += 1;
        last = d.seq;
    }
    assert_eq!((last, total), (99, 100));
}

#[test]
fn drop_oldest_with_wrapping_variable_sizes() {
    let (mut w, mut r, _v) = pair(4096, Policy::DropOldest, 0);
    let mut buf = Vec::new();
    let mut seen = 0u64;
    let mut next = 0u64;
    for round in 0..200u64 {
        for _ in 0..(round % 13) {
            let len = (next as usize * 13) % 900;
            assert!(send(&mut w, None, &msg(next, len)));
            next += 1;
        }
        for _ in 0..(round % 5) {
            if let Some(d) = r.try_recv(&mut buf).unwrap() {
                assert_eq!(d.seq, seen + d.lost);
                assert_eq!(buf, msg(d.seq, (d.seq as usize * 13) % 900));
                seen = d.seq + 1;
            }
        }
    }
    while let Some(d) = r.try_recv(&mut buf).unwrap() {
        assert_eq!(d.seq, seen + d.lost);
        seen = d.seq + 1;
    }
    assert_eq!(seen, next);
}

#[test]
fn late_joiner_gets_history_then_live() {
    let mut w =
        FanoutWriter::create(c"t", 4096, Policy::Block, 8, SegmentOptions::default()).unwrap();
    for i in 0..20 {
        assert!(send(&mut w, None, &msg(i, 10)));
    }
    let (pos, seq) = w.start_point(3);
    assert_eq!(seq, 17);
    let (mut r, _v) = join(&w, pos, seq);
    let mut buf = Vec::new();
    for i in 17..20 {
        assert_eq!(r.try_recv(&mut buf).unwrap().unwrap().seq, i);
        assert_eq!(buf, msg(i, 10));
    }
    assert!(r.try_recv(&mut buf).unwrap().is_none());
    // No history asked: live head.
    assert_eq!(w.start_point(0), (w.position(), 20));
}

#[test]
fn closed_after_drain() {
    let (mut w, mut r, _v) = pair(1024, Policy::Block, 0);
    send(&mut w, None, b"last");
    w.close();
    let mut buf = Vec::new();
    assert!(r.try_recv(&mut buf).unwrap().is_some());
    assert!(matches!(r.try_recv(&mut buf), Err(Error::Closed)));
}

#[test]
fn cursor_view_rejects_lies() {
    let (mut w, r, mut v) = pair(1024, Policy::Block, 0);
    for i in 0..4 {
        send(&mut w, None, &msg(i, 8));
    }
    // The reader's own segment is writable in this process: play a liar.
    let cur = r.cur();
    cur.cursor.store(12, crate::sync::Ordering::Relaxed);
    assert!(matches!(
        v.load(w.position()),
        Err(Violation::Misaligned { value: 12 })
    ));
    cur.cursor
        .store(w.position() + 8, crate::sync::Ordering::Relaxed);
    assert!(matches!(
        v.load(w.position()),
        Err(Violation::HeadBeyondTail { .. })
    ));
    cur.cursor.store(48, crate::sync::Ordering::Relaxed);
    assert_eq!(v.load(w.position()), Ok(48));
    cur.cursor.store(24, crate::sync::Ordering::Relaxed);
    assert!(matches!(
        v.load(w.position()),
        Err(Violation::HeadBackwards { .. })
    ));
}

#[test]
fn park_word_owes_one_wake_per_episode() {
    let (mut w, r, mut v) = pair(1024, Policy::Block, 0);
    assert!(!v.wake_owed());
    r.park();
    send(&mut w, None, b"x");
    assert!(v.wake_owed());
    assert!(!v.wake_owed());
    r.unpark();
    r.park();
    assert!(v.wake_owed());
}

#[test]
fn reader_rejects_a_foreign_segment() {
    let w = FanoutWriter::create(c"t", 1024, Policy::Block, 0, SegmentOptions::default()).unwrap();
    let cur = create_cursor_segment(c"c", 0).unwrap();
    // Wrong policy in the handshake.
    assert!(matches!(
        FanoutReader::attach(dup(w.fd()), 1024, Policy::DropOldest, cur, 0, 0),
        Err(Error::Protocol(Violation::BadGeometry { .. }))
    ));
    // A cursor segment is not a data segment (wrong size).
    let cur = create_cursor_segment(c"c", 0).unwrap();
    let other = create_cursor_segment(c"c", 0).unwrap();
    assert!(matches!(
        FanoutReader::attach(dup(other.fd()), 1024, Policy::Block, cur, 0, 0),
        Err(Error::WrongSize { .. })
    ));
    // A data segment is not a cursor segment.
    assert!(matches!(
        CursorView::attach(dup(w.fd()), 0),
        Err(Error::WrongSize { .. })
    ));
}

/// The seqlock check under real concurrency: a writer thread laps a slow
/// reader thread over and over; every message the reader accepts must be
/// intact (its bytes derive from its sequence number), and the losses it is
/// told about plus what it read must add up to what was sent.
#[test]
fn drop_oldest_torn_reads_are_never_delivered() {
    const N: u64 = 200_000;
    let (mut w, mut r, _v) = pair(4096, Policy::DropOldest, 0);
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            let len = 8 + (i as usize % 300);
            let mut g = w.try_reserve(len, None).unwrap().unwrap();
            let bytes = msg(i, len);
            g.fill_from(&bytes);
            g.publish();
        }
        w.close();
        w
    });
    let mut buf = Vec::new();
    let (mut read, mut lost, mut next) = (0u64, 0u64, 0u64);
    loop {
        match r.try_recv(&mut buf) {
            Ok(Some(d)) => {
                assert_eq!(d.seq, next + d.lost);
                assert_eq!(buf.len(), 8 + (d.seq as usize % 300));
                assert!(buf == msg(d.seq, buf.len()), "torn message {}", d.seq);
                read += 1;
                lost += d.lost;
                next = d.seq + 1;
                if read % 64 == 0 {
                    std::thread::yield_now();
                }
            }
            Ok(None) => std::hint::spin_loop(),
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let _w = writer.join().unwrap();
    assert_eq!(read + lost, N, "read {read}, lost {lost}");
}

/// A lying publisher, played in-process through the writer's own mapping:
/// each bad value the reader loads gives a typed violation (and poisons
/// the reader), never an out-of-bounds access or a wrong delivery.
mod lying_publisher {
    use super::*;
    use crate::sync::Ordering::Relaxed;

    fn h(w: &FanoutWriter) -> &super::super::layout::FanoutHeader {
        w.hdr()
    }

    fn data_word(w: &FanoutWriter, off: usize, v: u64) {
        w.data.store_word(off, v);
    }

    fn poisoned(r: &mut FanoutReader) {
        let mut buf = Vec::new();
        assert!(matches!(r.try_recv(&mut buf), Err(Error::Poisoned)));
    }

    fn expect(r: &mut FanoutReader, check: impl Fn(&Violation) -> bool) {
        let mut buf = Vec::new();
        match r.try_recv(&mut buf) {
            Err(Error::Protocol(v)) if check(&v) => {}
            other => panic!("{other:?}"),
        }
        poisoned(r);
    }

    #[test]
    fn misaligned_or_backwards_tail() {
        let (w, mut r, _v) = pair(1024, Policy::Block, 0);
        h(&w).tail.store(12, Relaxed);
        expect(&mut r, |v| matches!(v, Violation::Misaligned { value: 12 }));

        let (mut w, mut r, _v) = pair(1024, Policy::Block, 0);
        send(&mut w, None, b"12345678");
        let mut buf = Vec::new();
        r.try_recv(&mut buf).unwrap().unwrap();
        h(&w).tail.store(0, Relaxed);
        expect(&mut r, |v| matches!(v, Violation::TailBackwards { .. }));
    }

    #[test]
    fn tail_more_than_a_ring_ahead_under_block() {
        let (w, mut r, _v) = pair(1024, Policy::Block, 0);
        h(&w).tail.store(4096, Relaxed);
        expect(&mut r, |v| {
            matches!(v, Violation::TailBeyondCapacity { .. })
        });
    }

    #[test]
    fn bad_record_headers() {
        let cases: [(u64, &str); 4] = [
            (5 | (1 << 40), "flag bits"),
            (4000, "limit"),
            (400 | (u64::from(FLAG_PAD_TEST) << 32), "padding"),
            (200, "past the publisher's tail"),
        ];
        for (word, what) in cases {
            let (mut w, mut r, _v) = pair(1024, Policy::Block, 0);
            send(&mut w, None, b"12345678");
            data_word(&w, 0, word);
            let mut buf = Vec::new();
            match r.try_recv(&mut buf) {
                Err(Error::Protocol(Violation::BadRecord { what: got, .. })) => {
                    assert!(got.contains(what), "{what}: {got}")
                }
                other => panic!("{what}: {other:?}"),
            }
            poisoned(&mut r);
        }
    }

    #[test]
    fn wrong_sequence_number() {
        let (mut w, mut r, _v) = pair(1024, Policy::Block, 0);
        send(&mut w, None, b"a");
        send(&mut w, None, b"b");
        data_word(&w, 24 + 8, 7);
        let mut buf = Vec::new();
        r.try_recv(&mut buf).unwrap().unwrap();
        expect(&mut r, |v| {
            matches!(
                v,
                Violation::BadSequence {
                    expected: 1,
                    found: 7,
                    ..
                }
            )
        });
        // DropOldest without a lap: the number due, exactly.
        let (mut w, mut r, _v) = pair(1024, Policy::DropOldest, 0);
        send(&mut w, None, b"a");
        data_word(&w, 8, 3);
        expect(&mut r, |v| matches!(v, Violation::BadSequence { .. }));
    }

    #[test]
    fn oldest_that_does_not_move_past_us() {
        let (mut w, mut r, _v) = pair(1024, Policy::DropOldest, 0);
        for i in 0..100 {
            send(&mut w, None, &msg(i, 24));
        }
        // Lapped, and `oldest` points back at our own position.
        h(&w).oldest.store(0, Relaxed);
        expect(&mut r, |v| {
            matches!(v, Violation::HeadBeyondTail { head: 0, .. })
        });
    }

    #[test]
    fn endless_lapping_is_bounded_per_call() {
        let (mut w, mut r, _v) = pair(1024, Policy::DropOldest, 0);
        for i in 0..100 {
            send(&mut w, None, &msg(i, 24));
        }
        // `oldest` stale (inconsistent with `intent`): every resync retries.
        h(&w).oldest.store(8, Relaxed);
        let mut buf = Vec::new();
        assert!(
            r.try_recv(&mut buf).unwrap().is_none(),
            "gives up for this call"
        );
    }

    const FLAG_PAD_TEST: u32 = 1 << 31;
}

#[test]
fn in_place_reads_hold_the_space_until_released() {
    let (mut w, mut r, mut v) = pair(256, Policy::Block, 0);
    for i in 0..4 {
        let floor = v.load(w.position()).unwrap();
        assert!(send(&mut w, Some(floor), &msg(i, 40)));
    }
    {
        let s = r.try_read().unwrap().unwrap();
        assert_eq!((s.seq(), s.len()), (0, 40));
        let mut b = [0u8; 40];
        assert_eq!(s.copy_to(&mut b).unwrap(), 40);
        assert_eq!(&b[..], &msg(0, 40)[..]);
        // SAFETY: an honest publisher in this thread, which does not write
        // while the borrow lives.
        assert_eq!(unsafe { s.as_slice_unchecked() }, &msg(0, 40)[..]);
        // Not released yet: the publisher still may not overwrite it.
        let floor = v.load(w.position()).unwrap();
        assert_eq!(floor, 0);
        assert!(s.is_intact());
        assert!(!s.release());
    }
    let floor = v.load(w.position()).unwrap();
    assert!(send(&mut w, Some(floor), &msg(4, 40)));
    // Dropping a sample releases it too.
    drop(r.try_read().unwrap().unwrap());
    let mut buf = Vec::new();
    for i in 2..5 {
        assert_eq!(r.try_recv(&mut buf).unwrap().unwrap().seq, i);
        assert_eq!(buf, msg(i, 40));
    }
    assert!(r.try_read().unwrap().is_none());
}

#[test]
fn in_place_reads_need_block() {
    let (mut w, mut r, _v) = pair(1024, Policy::DropOldest, 0);
    send(&mut w, None, b"x");
    assert!(matches!(r.try_read(), Err(Error::WrongPolicy(_))));
    let mut buf = Vec::new();
    assert_eq!(r.try_recv(&mut buf).unwrap().unwrap().seq, 0);
}

#[test]
fn in_place_copy_reports_an_overwrite() {
    let (mut w, mut r, _v) = pair(256, Policy::Block, 0);
    send(&mut w, None, &msg(0, 40));
    let s = r.try_read().unwrap().unwrap();
    // The publisher (after evicting us, say) writes more than a ring.
    for i in 1..8 {
        send(&mut w, None, &msg(i, 40));
    }
    assert!(!s.is_intact());
    let mut b = [0u8; 40];
    assert!(matches!(
        s.copy_to(&mut b),
        Err(Error::Protocol(Violation::TailBeyondCapacity { .. }))
    ));
}

/// Block under real concurrency: a writer thread and three reader threads
/// (one of them pausing now and then) over a small ring; the writer's
/// floor is the minimum of the readers' validated cursors. Every reader
/// gets every message intact: the writer never overwrote unread bytes
/// (SYNC POINT `fanout-released`).
#[test]
fn block_concurrent_readers_get_everything() {
    const N: u64 = 20_000;
    let mut w =
        FanoutWriter::create(c"t", 8192, Policy::Block, 0, SegmentOptions::default()).unwrap();
    let (pos, seq) = w.start_point(0);
    let mut views = Vec::new();
    let mut readers = Vec::new();
    for k in 0..3u64 {
        let (mut r, v) = join(&w, pos, seq);
        views.push(v);
        readers.push(std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut next = 0u64;
            loop {
                match r.try_recv(&mut buf) {
                    Ok(Some(d)) => {
                        assert_eq!((d.seq, d.lost), (next, 0));
                        assert!(buf == msg(d.seq, (d.seq as usize * 7) % 300), "torn {next}");
                        next += 1;
                        if k == 2 && next.is_multiple_of(1000) {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                    }
                    // Yield, not spin: 4 threads may share 2 busy cores.
                    Ok(None) => std::thread::yield_now(),
                    Err(Error::Closed) => return next,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let mut i = 0u64;
    while i < N {
        let tail = w.position();
        let floor = views
            .iter_mut()
            .map(|v| v.load(tail).unwrap())
            .min()
            .unwrap();
        let bytes = msg(i, (i as usize * 7) % 300);
        match w.try_reserve(bytes.len(), Some(floor)).unwrap() {
            Some(mut g) => {
                g.fill_from(&bytes);
                g.publish();
                i += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    w.close();
    for r in readers {
        assert_eq!(r.join().unwrap(), N);
    }
}
