//! loom models of the fan-out ring (`shm/src/fanout/`): one writer and two
//! readers over a 64-byte ring, whose data area is made of loom atomics, so
//! that a too-weak ordering shows up as a stale, torn or lost message. Run
//! with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p shmsock-shm --test loom_fanout --release`.
//!
//! The ring: 64 bytes hold two records of 8 payload bytes (24 bytes each);
//! the third needs a padding record at the wrap and overwrites the first.
//! Each payload is derived from its sequence number, so a reader can tell a
//! stale or torn copy from the message as published.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread::{self, Thread};
use shmsock_shm::fanout::{loom_fanout, CursorView, Delivery, FanoutReader, FanoutWriter, Policy};
use shmsock_shm::Error;

const CAP: u64 = 64;
const LEN: usize = 8;

/// The payload of message `seq`: every byte non-zero and depending on
/// `seq`, so a copy of zeroed, older or newer bytes does not match.
fn payload(seq: u64) -> [u8; LEN] {
    (seq + 1).wrapping_mul(0x0102_0304_0506_0708).to_le_bytes()
}

/// Runs the model `f` at preemption bound `bound` (`None`: as the CI gate
/// sets `LOOM_MAX_PREEMPTIONS`, 3 if unset).
fn model_at<F: Fn() + Sync + Send + 'static>(bound: Option<usize>, f: F) {
    let mut b = loom::model::Builder::new();
    if bound.is_some() || b.preemption_bound.is_none() {
        b.preemption_bound = bound.or(Some(3));
    }
    // Three threads take more than loom's default 1000 branches in one
    // execution.
    b.max_branches = b.max_branches.max(20_000);
    b.check(f);
}

/// Runs `f(readers)` twice: with two readers at a preemption bound of 1,
/// and with one reader at the gate's bound. Three threads that exchange
/// several messages at bound 2 or more take longer than the CI gate can
/// spend (over 5 minutes each on the 2-core machine); loom still switches
/// threads at every blocking point (park, join) whatever the bound.
fn model<F: Fn(usize) + Sync + Send + Copy + 'static>(f: F) {
    model_at(Some(1), move || f(2));
    model_at(None, move || f(1));
}

/// Block: the lowest validated cursor of `views` (the publisher's floor).
fn floor(w: &FanoutWriter, views: &mut [CursorView]) -> u64 {
    let tail = w.position();
    views
        .iter_mut()
        .map(|v| v.load(tail).expect("honest cursor"))
        .min()
        .unwrap_or(tail)
}

/// A subscriber as the publisher sees it: its cursor view, and its thread,
/// whose loom park token stands for the wake-up byte on its socket
/// (`unpark` carries happens-before, as a socket does).
struct Sub {
    view: CursorView,
    thread: Thread,
}

/// After a publish: wakes every parked subscriber owed a wake-up.
fn wake_owed(subs: &mut [Sub]) {
    for s in subs {
        if s.view.wake_owed() {
            s.thread.unpark();
        }
    }
}

/// Publishes message `seq` under Block as the services layer does: reserve
/// against the floor; when short of space park, re-check, and sleep until
/// a subscriber's wake-up (a lost wake-up leaves every thread asleep, which
/// loom reports as a deadlock). `leave` runs before each try (it may drop
/// subscribers that said goodbye).
fn publish_block(
    w: &mut FanoutWriter,
    subs: &mut Vec<Sub>,
    seq: u64,
    mut leave: impl FnMut(&mut Vec<Sub>),
) {
    let need = w.floor_needed(LEN).unwrap();
    loop {
        leave(subs);
        let mut views: Vec<&mut CursorView> = subs.iter_mut().map(|s| &mut s.view).collect();
        let tail = w.position();
        let f = views
            .iter_mut()
            .map(|v| v.load(tail).expect("honest cursor"))
            .min()
            .unwrap_or(tail);
        if f >= need {
            let mut g = w.try_reserve(LEN, Some(f)).unwrap().expect("space");
            g.fill_from(&payload(seq));
            assert_eq!(g.publish(), seq);
            wake_owed(subs);
            return;
        }
        w.park();
        let tail = w.position();
        let f = views
            .iter_mut()
            .map(|v| v.load(tail).expect("honest cursor"))
            .min()
            .unwrap_or(tail);
        if f < need {
            thread::park();
        }
        w.unpark();
    }
}

/// Closes the ring and wakes every subscriber (across processes the
/// socket's end does).
fn close(mut w: FanoutWriter, subs: &[Sub]) {
    w.close();
    for s in subs {
        s.thread.unpark();
    }
}

/// A subscriber's receive loop, as the services layer runs it: take what
/// is there; else park, re-check, and sleep until woken. Calls `check` on
/// each message; wakes the writer when a release owes it that. Ends at
/// `Closed`, or when `check` returns false.
fn subscriber(
    mut r: FanoutReader,
    writer: &Thread,
    mut check: impl FnMut(Delivery, &[u8]) -> bool,
) {
    let mut buf = Vec::new();
    loop {
        match r.try_recv(&mut buf) {
            Ok(Some(d)) => {
                if d.wake_publisher {
                    writer.unpark();
                }
                if !check(d, &buf) {
                    return;
                }
            }
            Ok(None) => {
                r.park();
                match r.has_data() {
                    Ok(true) => {}
                    Ok(false) => thread::park(),
                    Err(Error::Closed) => return,
                    Err(e) => panic!("reader: {e}"),
                }
                r.unpark();
            }
            Err(Error::Closed) => return,
            Err(e) => panic!("reader: {e}"),
        }
    }
}

/// A Block subscriber that checks every message is byte-exact, in order
/// and not lost, from `first` on; returns how many it read.
fn read_all_block(r: FanoutReader, writer: &Thread, first: u64) -> u64 {
    let mut next = first;
    subscriber(r, writer, |d, buf| {
        assert_eq!(d.seq, next, "out of order");
        assert_eq!(d.lost, 0, "a Block reader lost a message");
        assert_eq!(buf, payload(d.seq), "stale or torn message {}", d.seq);
        next += 1;
        true
    });
    next - first
}

/// Runs the publisher `f` on a thread of its own and returns what it
/// returns (the subscribers' join handles): the main thread only joins.
/// The publisher must not join its subscribers itself, because their
/// wake-ups (`unpark`) may reach it while it waits in `join`, where loom
/// 0.7 asserts (`Notify::wait`: "state.notified").
fn writer<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    thread::spawn(f).join().unwrap()
}

/// Spawns a subscriber thread running `f` and returns it with the
/// publisher's record of it.
fn spawn_sub<T: Send + 'static>(
    view: CursorView,
    f: impl FnOnce() -> T + Send + 'static,
) -> (Sub, thread::JoinHandle<T>) {
    let t = thread::spawn(f);
    let sub = Sub {
        view,
        thread: t.thread().clone(),
    };
    (sub, t)
}

/// (a) Block, 1 writer, 2 readers: three messages through a ring that
/// holds two, so the writer must wait for both readers to release the
/// first before the third (after a padding record) overwrites it. Every
/// reader sees every message byte-exact and in order. Everyone sleeps
/// when it cannot progress, so a lost wake-up either way is a deadlock.
#[test]
fn block_every_reader_sees_every_message() {
    model(|readers| {
        let joins = writer(move || {
            let mut w = loom_fanout(CAP, Policy::Block, 0);
            let me = thread::current();
            let mut subs = Vec::new();
            let mut joins = Vec::new();
            for _ in 0..readers {
                let (r, v) = w.loom_subscribe(0);
                let me = me.clone();
                let (sub, t) = spawn_sub(v, move || read_all_block(r, &me, 0));
                subs.push(sub);
                joins.push(t);
            }
            for seq in 0..3 {
                publish_block(&mut w, &mut subs, seq, |_| {});
            }
            close(w, &subs);
            joins
        });
        for t in joins {
            assert_eq!(t.join().unwrap(), 3);
        }
    });
}

/// A DropOldest subscriber: every delivered message is byte-exact and in
/// order, and the gaps reported add up exactly: delivered + lost =
/// published - first.
fn read_all_drop(r: FanoutReader, writer: &Thread, first: u64, published: u64) {
    let mut next = first;
    let (mut delivered, mut lost) = (0, 0);
    subscriber(r, writer, |d, buf| {
        assert_eq!(d.seq, next + d.lost, "gap count wrong");
        assert_eq!(buf, payload(d.seq), "torn or stale message {}", d.seq);
        delivered += 1;
        lost += d.lost;
        next = d.seq + 1;
        true
    });
    assert_eq!(next, published, "the last message is never lost");
    assert_eq!(delivered + lost, published - first, "gap count not exact");
}

/// (b) DropOldest, 1 writer, 2 lagging readers: the writer publishes three
/// messages into a ring that holds two without waiting (the third, after
/// a padding record, overwrites the first); a reader either
/// copies a message intact or is told it lost it (exact gap count), never
/// given a torn or stale one.
#[test]
fn drop_oldest_never_delivers_a_torn_message() {
    model(|readers| {
        let joins = writer(move || {
            let mut w = loom_fanout(CAP, Policy::DropOldest, 0);
            let me = thread::current();
            let mut subs = Vec::new();
            let mut joins = Vec::new();
            for _ in 0..readers {
                let (r, v) = w.loom_subscribe(0);
                let me = me.clone();
                let (sub, t) = spawn_sub(v, move || read_all_drop(r, &me, 0, 3));
                subs.push(sub);
                joins.push(t);
            }
            for seq in 0..3 {
                let mut g = w.try_reserve(LEN, None).unwrap().expect("never waits");
                g.fill_from(&payload(seq));
                assert_eq!(g.publish(), seq);
                wake_owed(&mut subs);
            }
            close(w, &subs);
            joins
        });
        for t in joins {
            t.join().unwrap();
        }
    });
}

/// Publishes message `seq` into a ring known to have space for it.
fn publish_now(w: &mut FanoutWriter, views: &mut [CursorView], seq: u64) {
    let f = floor(w, views);
    let mut g = w.try_reserve(LEN, Some(f)).unwrap().expect("space");
    g.fill_from(&payload(seq));
    assert_eq!(g.publish(), seq);
}

/// (c1) No lost wake-up, publisher → parked readers: each reader parks
/// (odd park word, SeqCst fence) and re-checks; the writer publishes and
/// then checks each park word. For each reader: it sees the message, or
/// the writer owes it a wake-up; and never two for one park episode.
#[test]
fn parked_readers_are_always_woken_once() {
    model_at(None, || {
        let mut w = loom_fanout(CAP, Policy::Block, 0);
        let (r1, v1) = w.loom_subscribe(0);
        let (r2, v2) = w.loom_subscribe(0);
        let reader = |mut r: FanoutReader| {
            move || {
                r.park();
                r.has_data().unwrap()
            }
        };
        let t1 = thread::spawn(reader(r1));
        let t2 = thread::spawn(reader(r2));
        let mut views = [v1, v2];
        let mut owed = [[false; 2]; 2];
        for (seq, owed) in owed.iter_mut().enumerate() {
            publish_now(&mut w, &mut views, seq as u64);
            for (o, v) in owed.iter_mut().zip(views.iter_mut()) {
                *o = v.wake_owed();
            }
        }
        let saw = [t1.join().unwrap(), t2.join().unwrap()];
        for i in 0..2 {
            let (first, second) = (owed[0][i], owed[1][i]);
            assert!(saw[i] || first || second, "lost wake-up for reader {i}");
            assert!(!(first && second), "two wake-ups for one park episode");
        }
    });
}

/// (c2) No lost wake-up, readers' release → parked writer (Block): the
/// ring is full (two records, both readers at 0); the writer parks and
/// re-checks the floor; each reader takes both messages (the first frees
/// the space the writer needs). The writer sees the space, or a reader
/// owes it a wake-up. Each reader owes at most one per park episode (each
/// sends its own wake-up byte: the publisher polls every subscriber's
/// socket, so two readers may both owe one).
#[test]
fn parked_writer_is_always_woken() {
    model_at(None, || {
        let mut w = loom_fanout(CAP, Policy::Block, 0);
        let (r1, v1) = w.loom_subscribe(0);
        let (r2, v2) = w.loom_subscribe(0);
        let mut views = [v1, v2];
        publish_now(&mut w, &mut views, 0);
        publish_now(&mut w, &mut views, 1);
        let need = w.floor_needed(LEN).unwrap();
        assert!(floor(&w, &mut views) < need, "the ring should be full");
        let reader = |mut r: FanoutReader| {
            move || {
                let mut buf = Vec::new();
                let mut take = |seq| {
                    let d = r.try_recv(&mut buf).unwrap().expect("a message");
                    assert_eq!((d.seq, &buf[..]), (seq, &payload(seq)[..]));
                    d.wake_publisher
                };
                let first = take(0);
                let second = take(1);
                assert!(!(first && second), "two wake-ups for one park episode");
                first || second
            }
        };
        let t1 = thread::spawn(reader(r1));
        let t2 = thread::spawn(reader(r2));
        w.park();
        let space = floor(&w, &mut views) >= need;
        let woken = [t1.join().unwrap(), t2.join().unwrap()];
        assert!(space || woken[0] || woken[1], "lost wake-up for the writer");
    });
}

/// (d) Join and leave while the writer publishes (Block): reader A reads
/// one message and leaves (its `bye` flag and wake-up stand for the BYE
/// byte; the writer then drops A's view, so A no longer holds it back);
/// reader B joins after the first message with a history of one, so it
/// starts at message 0, and must then see messages 0..3 byte-exact and in
/// order: the writer's floor includes B from the moment it joined.
#[test]
fn join_and_leave_while_publishing() {
    model_at(Some(2), || {
        let (ta, tb) = writer(|| {
            let mut w = loom_fanout(CAP, Policy::Block, 1);
            let me = thread::current();
            let bye = Arc::new(AtomicBool::new(false));
            let (ra, va) = w.loom_subscribe(0);
            let (bye_a, me_a) = (bye.clone(), me.clone());
            let (sub_a, ta) = spawn_sub(va, move || {
                subscriber(ra, &me_a, |d, buf| {
                    assert_eq!((d.seq, buf), (0, &payload(0)[..]));
                    false
                });
                // Release: across processes the BYE byte's send and receive
                // order it.
                bye_a.store(true, Ordering::Release);
                me_a.unpark();
            });
            let mut subs = vec![sub_a];
            let mut a_in = true;
            let mut leave = |subs: &mut Vec<Sub>| {
                if a_in && bye.load(Ordering::Acquire) {
                    subs.remove(0);
                    a_in = false;
                }
            };
            publish_block(&mut w, &mut subs, 0, &mut leave);
            let (rb, vb) = w.loom_subscribe(1);
            assert_eq!(rb.expected_seq(), 0, "a history of one starts at message 0");
            let me_b = me.clone();
            let (sub_b, tb) = spawn_sub(vb, move || read_all_block(rb, &me_b, 0));
            subs.push(sub_b);
            for seq in 1..3 {
                publish_block(&mut w, &mut subs, seq, &mut leave);
            }
            close(w, &subs);
            (ta, tb)
        });
        ta.join().unwrap();
        assert_eq!(tb.join().unwrap(), 3);
    });
}
