//! The ring across two real processes, laid out as the transport lays it:
//! the producer's segment (the ring's data and producer words) and the
//! consumer's segment (its cursor words), each writable by its owner only
//! and attached read-only by the other through its fd (checked like any
//! received fd). The child streams 10^5 checksummed records.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use shmsock::shm::ring::{self, segment_size, Consumer};
use shmsock::shm::{Error, Segment, SegmentOptions};

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const N: u64 = 100_000;
const CAP: u64 = 1 << 16;

fn stream_records_across_fork() {
    // Both segments are made before the fork (no fd passing needed): the
    // producer's is the child's to write, the consumer's the parent's. The
    // child's mapping of the consumer's segment is never used: it attaches
    // that segment read-only through the fd.
    let (prod_seg, prod) =
        ring::create_segment(c"fork-prod", CAP, SegmentOptions::default()).unwrap();
    let (cons_seg, _reverse_ring) =
        ring::create_segment(c"fork-cons", ring::MIN_CAPACITY, SegmentOptions::default()).unwrap();
    let prod_fd: OwnedFd = prod_seg.fd().try_clone_to_owned().unwrap();
    let cons_fd: OwnedFd = cons_seg.fd().try_clone_to_owned().unwrap();
    let child = common::spawn(move || {
        // The consumer's words, read-only, as a peer would see them.
        let theirs =
            Segment::attach_read_only(cons_fd, segment_size(ring::MIN_CAPACITY), 1 << 30).unwrap();
        let mut p = prod.with_consumer_words(Arc::new(theirs)).unwrap();
        let max = p.max_record_len();
        let mut body = vec![0u8; max];
        for seq in 0..N {
            let len = 16 + (seq as usize * 7919) % 4096;
            let b = &mut body[..len];
            b[..8].copy_from_slice(&seq.to_le_bytes());
            for (i, x) in b[16..].iter_mut().enumerate() {
                *x = (seq as usize ^ i) as u8;
            }
            let sum = fnv(&b[16..]);
            b[8..16].copy_from_slice(&sum.to_le_bytes());
            while !p.try_push(b).unwrap() {
                std::hint::spin_loop();
            }
        }
        p.close();
    });
    let theirs = Segment::attach_read_only(prod_fd, segment_size(CAP), 1 << 30).unwrap();
    let mut c = Consumer::attach(Arc::new(theirs), cons_seg).unwrap();
    let mut expect = 0;
    let mut buf = vec![0u8; c.max_record_len()];
    loop {
        match c.try_read() {
            Ok(Some(g)) => {
                let n = g.copy_to(&mut buf);
                let b = &buf[..n];
                assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), expect);
                assert_eq!(
                    u64::from_le_bytes(b[8..16].try_into().unwrap()),
                    fnv(&b[16..])
                );
                expect += 1;
            }
            Ok(None) => std::hint::spin_loop(),
            Err(Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(expect, N);
    child.wait(Duration::from_secs(60));
}

fn main() {
    common::run(&[("stream_records_across_fork", stream_records_across_fork)]);
}
