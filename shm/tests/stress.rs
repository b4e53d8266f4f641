//! Two threads, one ring, 10^6 records of random sizes (0 B up to the
//! record limit) carrying sequence numbers and checksums: nothing lost,
//! duplicated, reordered or corrupted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use shmsock_shm::ring::heap_ring;

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Record sizes: mostly small, one in 64 anywhere up to `max` (so every
/// size class, including the maximum, appears).
fn size(rng: &mut Rng, max: usize) -> usize {
    match rng.next() % 64 {
        0 => (rng.next() as usize) % (max + 1),
        1 => max,
        _ => (rng.next() as usize) % 200,
    }
}

#[test]
fn million_records_two_threads() {
    const N: u64 = 1_000_000;
    let (mut p, mut c) = heap_ring(1 << 16).unwrap();
    let max = p.max_record_len();
    let producer = std::thread::spawn(move || {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = vec![0u8; max];
        for seq in 0..N {
            let len = size(&mut rng, max).max(16);
            let body = &mut buf[..len];
            body[..8].copy_from_slice(&seq.to_le_bytes());
            for (i, b) in body[16..].iter_mut().enumerate() {
                *b = (seq as usize + i) as u8;
            }
            let sum = fnv(&body[16..]);
            body[8..16].copy_from_slice(&sum.to_le_bytes());
            loop {
                // Alternate between the copying and the zero-copy path.
                if seq % 2 == 0 {
                    if p.try_push(body).unwrap().is_some() {
                        break;
                    }
                } else if let Some(mut g) = p.try_reserve(len).unwrap() {
                    g.copy_from_slice(body);
                    let _ = g.commit();
                    break;
                }
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
        let _ = p.close();
    });
    let mut expect = 0u64;
    let mut buf = vec![0u8; max];
    loop {
        match c.try_read() {
            Ok(Some(g)) => {
                let n = g.copy_to(&mut buf);
                let body = &buf[..n];
                assert!(n >= 16, "record {expect} too short: {n}");
                let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
                assert_eq!(seq, expect, "lost, duplicated or reordered");
                let sum = u64::from_le_bytes(body[8..16].try_into().unwrap());
                assert_eq!(sum, fnv(&body[16..]), "record {seq} corrupted");
                expect += 1;
            }
            Ok(None) => std::thread::yield_now(),
            Err(shmsock_shm::Error::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(expect, N);
    producer.join().unwrap();
}
