//! loom model of the ring: producer and consumer threads over a tiny ring,
//! with the data area made of loom atomics so that a too-weak ordering shows
//! up as a stale or torn payload. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmsock-shm --test loom --release`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![cfg(loom)]

use loom::thread;
use shmsock_shm::ring::loom_ring;

fn payload(i: u8) -> [u8; 3] {
    [i, i.wrapping_mul(7), i ^ 0x5a]
}

#[test]
fn records_arrive_intact_and_in_order() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        // 64 bytes hold four 16-byte records: three records of 3 bytes plus
        // a wrap exercise padding on the second lap.
        let (mut p, mut c) = loom_ring(64);
        let t = thread::spawn(move || {
            let mut i = 0u8;
            while i < 5 {
                if p.try_push(&payload(i)).unwrap() {
                    i += 1;
                } else {
                    thread::yield_now();
                }
            }
            p.close();
        });
        let mut next = 0u8;
        loop {
            match c.try_read() {
                Ok(Some(g)) => {
                    let mut buf = [0u8; 3];
                    assert_eq!(g.copy_to(&mut buf), 3);
                    assert_eq!(buf, payload(next));
                    next += 1;
                }
                Ok(None) => thread::yield_now(),
                Err(shmsock_shm::Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(next, 5);
        t.join().unwrap();
    });
}

#[test]
fn parked_reader_is_always_woken() {
    // The Dekker handshake: the consumer parks and re-checks; the producer
    // publishes and checks the flag. Either the consumer sees the record or
    // the producer owes a wake-up: never neither.
    loom::model(|| {
        let (mut p, mut c) = loom_ring(64);
        let t = thread::spawn(move || {
            let mut g = p.try_reserve(1).unwrap().unwrap();
            g.fill_from(&[9]);
            g.commit()
        });
        c.park();
        let saw = c.has_data().unwrap();
        let woken = t.join().unwrap();
        assert!(saw || woken, "lost wake-up");
    });
}

#[test]
fn parked_writer_is_always_woken() {
    // The consumer wakes a parked producer once at most half the ring is in
    // use (hysteresis). It releases two of four records here, reaching that
    // point: the producer must then see space or be owed a wake-up.
    loom::model(|| {
        let (mut p, mut c) = loom_ring(64);
        // Fill the ring: four 16-byte records.
        for i in 0..4 {
            assert!(p.try_push(&payload(i)).unwrap());
        }
        let t = thread::spawn(move || {
            let first = c.try_read().unwrap().unwrap().release();
            let second = c.try_read().unwrap().unwrap().release();
            first || second
        });
        p.park();
        let space = p.try_reserve(3).unwrap().is_some();
        let woken = t.join().unwrap();
        assert!(space || woken, "lost wake-up");
    });
}
