//! Unit tests of the ring: layout, wrap-around, edges, and a peer that
//! writes garbage into every field it can reach.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::layout::{pack, record_size, unpack, FLAG_PAD};
use super::*;
use crate::error::{Error, Violation};

/// Pays a wake-up token (as the transport would, without a socket) and
/// says whether one was owed.
fn paid(w: Wake) -> bool {
    let owed = w.is_owed();
    w.redeem(|| Ok::<(), ()>(())).unwrap();
    owed
}

fn ring_with_mem(cap: u64) -> (Producer, Consumer, Arc<HeapMemory>) {
    let mem = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
    initialize(&*mem, cap).unwrap();
    // SAFETY: `mem` was allocated just above: this is its only producer.
    let p = unsafe { Producer::attach(mem.clone(), mem.clone()) }.unwrap();
    let c = Consumer::attach(mem.clone(), mem.clone()).unwrap();
    (p, c, mem)
}

/// A view of memory that says it is not writable, as the peer's segment
/// mapped read-only is.
struct ReadOnly(Arc<HeapMemory>);

// SAFETY: forwards to HeapMemory, and claims less (not writable).
unsafe impl RingMemory for ReadOnly {
    fn base(&self) -> *mut u8 {
        self.0.base()
    }
    fn size(&self) -> usize {
        self.0.size()
    }
    fn writable(&self) -> bool {
        false
    }
}

/// Writes a word of the segment as a hostile peer would.
fn poke(mem: &HeapMemory, off: usize, val: u64) {
    // SAFETY: test helper; `off` is 8-aligned and inside the allocation.
    unsafe { AtomicU64::from_ptr(mem.base().add(off).cast()) }.store(val, Ordering::SeqCst);
}

fn peek(mem: &HeapMemory, off: usize) -> u64 {
    // SAFETY: as in `poke`.
    unsafe { AtomicU64::from_ptr(mem.base().add(off).cast()) }.load(Ordering::SeqCst)
}

fn pattern(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

#[test]
fn layout_helpers() {
    assert_eq!(record_size(0), 8);
    assert_eq!(record_size(1), 16);
    assert_eq!(record_size(8), 16);
    assert_eq!(record_size(9), 24);
    assert_eq!(unpack(pack(123, FLAG_PAD | 7)), (123, FLAG_PAD | 7));
    assert_eq!(max_record_len(4096), 2040);
    assert_eq!(segment_size(4096), 5120);
}

#[test]
fn rejects_bad_capacity() {
    for cap in [0, 1, 32, 100, 4095, MAX_CAPACITY * 2] {
        assert!(
            matches!(heap_ring(cap), Err(Error::BadCapacity(_))),
            "{cap}"
        );
    }
}

#[test]
fn empty_then_one_record() {
    let (mut p, mut c) = heap_ring(4096).unwrap();
    assert!(c.try_read().unwrap().is_none());
    assert!(p.try_push(b"abc").unwrap().is_some());
    let g = c.try_read().unwrap().unwrap();
    assert_eq!(g.to_vec(), b"abc");
    assert_eq!(g.tag(), 0);
    drop(g);
    assert!(c.try_read().unwrap().is_none());
}

#[test]
fn zero_length_records() {
    let (mut p, mut c) = heap_ring(64).unwrap();
    // 8 zero-length records fill a 64-byte ring exactly.
    for _ in 0..8 {
        assert!(p.try_push(&[]).unwrap().is_some());
    }
    assert!(p.try_push(&[]).unwrap().is_none());
    for _ in 0..8 {
        let g = c.try_read().unwrap().unwrap();
        assert!(g.is_empty());
    }
    assert!(c.try_read().unwrap().is_none());
}

#[test]
fn max_size_records_and_too_large() {
    let cap = 4096;
    let (mut p, mut c) = heap_ring(cap).unwrap();
    let max = p.max_record_len();
    assert!(matches!(
        p.try_reserve(max + 1),
        Err(Error::RecordTooLarge { .. })
    ));
    // Aligned at 0, two max records fill the ring exactly.
    assert!(p.try_push(&pattern(0, max)).unwrap().is_some());
    assert!(p.try_push(&pattern(1, max)).unwrap().is_some());
    assert!(p.try_push(&[]).unwrap().is_none(), "ring is full");
    for i in 0..2 {
        assert_eq!(c.try_read().unwrap().unwrap().to_vec(), pattern(i, max));
    }
    for seq in 0..100 {
        // Whatever the wrap point, a max record fits an empty ring.
        let data = pattern(seq, max);
        assert!(p.try_push(&data).unwrap().is_some(), "seq {seq}");
        assert_eq!(c.try_read().unwrap().unwrap().to_vec(), data);
        // Shift the wrap point by an odd number of records.
        assert!(p
            .try_push(&pattern(seq, (seq as usize * 8) % 200))
            .unwrap()
            .is_some());
        assert!(c.try_read().unwrap().is_some());
    }
}

#[test]
fn wrap_around_at_every_offset() {
    let cap = 256u64;
    for start in (0..cap).step_by(8) {
        for len in 0..=max_record_len(cap) as usize {
            let (mut p, mut c) = heap_ring(cap).unwrap();
            // Move both cursors to `start` with one record of the right size
            // (or none).
            while p.position() < start {
                assert!(p.try_push(&[]).unwrap().is_some());
                drop(c.try_read().unwrap().unwrap());
            }
            assert_eq!(p.position(), start);
            for seq in 0..3 {
                let data = pattern(seq, len);
                assert!(
                    p.try_push(&data).unwrap().is_some(),
                    "start {start} len {len}"
                );
                let g = c.try_read().unwrap().unwrap();
                assert_eq!(g.to_vec(), data, "start {start} len {len}");
            }
        }
    }
}

#[test]
fn full_and_empty_edges() {
    let (mut p, mut c) = heap_ring(128).unwrap();
    // Records of 24 bytes (16 payload): 5 fit in 128 (120 bytes), a sixth
    // needs 144.
    for i in 0..5 {
        assert!(p.try_push(&pattern(i, 16)).unwrap().is_some());
    }
    assert!(p.try_push(&pattern(9, 16)).unwrap().is_none());
    // A zero-length record (8 bytes) still fits exactly.
    assert!(p.try_push(&[]).unwrap().is_some());
    assert_eq!(p.free_space().unwrap(), 0);
    assert!(p.try_push(&[]).unwrap().is_none());
    // Free one, then exactly that much is writable again.
    drop(c.try_read().unwrap().unwrap());
    assert_eq!(p.free_space().unwrap(), 24);
    assert!(p.try_push(&pattern(5, 16)).unwrap().is_some());
    for i in 1..5 {
        assert_eq!(c.try_read().unwrap().unwrap().to_vec(), pattern(i, 16));
    }
    assert!(c.try_read().unwrap().unwrap().is_empty());
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), pattern(5, 16));
    assert!(c.try_read().unwrap().is_none());
}

#[test]
fn uncommitted_grant_publishes_nothing() {
    let (mut p, mut c) = heap_ring(256).unwrap();
    {
        let mut g = p.try_reserve(10).unwrap().unwrap();
        g.fill_from(b"0123456789");
    }
    assert!(c.try_read().unwrap().is_none());
    assert!(p.try_push(b"x").unwrap().is_some());
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"x");
}

/// Regression: an abandoned grant that needed wrap padding used to leave
/// the padding staged; the next publish (here: close) exposed a padding
/// record followed by nothing, which the consumer rightly rejected.
#[test]
fn abandoned_wrapping_grant_leaves_no_padding() {
    let setup = || {
        let (mut p, mut c) = heap_ring(256).unwrap();
        assert!(p.try_push(&[1; 120]).unwrap().is_some()); // 128 bytes
        assert!(p.try_push(&[1; 40]).unwrap().is_some()); // 48 bytes: offset 176
        drop(c.try_read().unwrap().unwrap());
        drop(c.try_read().unwrap().unwrap());
        (p, c)
    };
    let (mut p, mut c) = setup();
    {
        let g = p.try_reserve(96).unwrap().unwrap(); // 104 > 80 left: padding
        let _ = g; // abandoned
    }
    let _ = p.close();
    assert!(
        matches!(c.try_read(), Err(Error::Closed)),
        "consumer saw a stray padding record"
    );
    // And a committed wrapping record still works after an abandoned one.
    let (mut p, mut c) = setup();
    let abandoned = p.try_reserve(96).unwrap().unwrap();
    let _ = abandoned;
    assert!(p.try_push(&[2; 96]).unwrap().is_some());
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), vec![2; 96]);
}

#[test]
fn deferred_commits_publish_together() {
    let (mut p, mut c) = heap_ring(4096).unwrap();
    for i in 0..10u64 {
        let mut g = p.try_reserve_tagged(8, i as u16).unwrap().unwrap();
        g.fill_from(&i.to_le_bytes());
        g.commit_deferred();
    }
    assert!(c.try_read().unwrap().is_none(), "nothing published yet");
    let _ = p.publish();
    for i in 0..10u64 {
        let g = c.try_read().unwrap().unwrap();
        assert_eq!(g.tag(), i as u16);
        assert_eq!(g.to_vec(), i.to_le_bytes());
    }
}

#[test]
fn deferred_releases_free_space_together() {
    let (mut p, mut c) = heap_ring(128).unwrap();
    while p.try_push(&[5; 24]).unwrap().is_some() {}
    for _ in 0..3 {
        c.try_read().unwrap().unwrap().release_deferred();
    }
    assert!(
        p.try_push(&[5; 24]).unwrap().is_none(),
        "space not handed back yet"
    );
    p.park(WakeKind::Socket);
    assert!(
        paid(c.flush_releases()),
        "parked producer is owed a wake-up"
    );
    for _ in 0..3 {
        assert!(p.try_push(&[6; 24]).unwrap().is_some());
    }
    // Records read after deferred releases still come in order.
    for _ in 0..1 {
        assert_eq!(c.try_read().unwrap().unwrap().to_vec(), vec![5; 24]);
    }
    for _ in 0..3 {
        assert_eq!(c.try_read().unwrap().unwrap().to_vec(), vec![6; 24]);
    }
}

#[test]
fn truncate_shrinks_record() {
    let (mut p, mut c) = heap_ring(256).unwrap();
    let mut g = p.try_reserve(100).unwrap().unwrap();
    g.fill_from(b"hello world");
    g.truncate(5);
    let _ = g.commit();
    assert!(p.try_push(b"next").unwrap().is_some());
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"hello");
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"next");
}

#[test]
fn close_drains_then_reports_closed() {
    let (mut p, mut c) = heap_ring(256).unwrap();
    assert!(p.try_push(b"a").unwrap().is_some());
    let _ = p.close();
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"a");
    assert!(matches!(c.try_read(), Err(Error::Closed)));
}

#[test]
fn parking_reports_wakeups_once() {
    let (mut p, mut c) = heap_ring(64).unwrap();
    // Not parked: a commit owes nobody a wake-up.
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"x");
    assert!(!paid(g.commit()));
    drop(c.try_read().unwrap().unwrap());
    c.park(WakeKind::Socket);
    assert!(!c.has_data().unwrap());
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"y");
    assert!(paid(g.commit()), "reader parked: wake-up owed");
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"z");
    assert!(!paid(g.commit()), "flag consumed by the first commit");
    // Writer side: the wake-up is owed once at most half the ring is in
    // use (hysteresis), not at the first released record.
    while c.try_read().unwrap().is_some() {}
    while p.try_push(&[0; 8]).unwrap().is_some() {} // 4 records of 16 bytes
    p.park(WakeKind::Socket);
    let g = c.try_read().unwrap().unwrap();
    assert!(
        !paid(g.release()),
        "48 of 64 bytes still in use: no wake-up yet"
    );
    let g = c.try_read().unwrap().unwrap();
    assert!(paid(g.release()), "half the ring free: wake-up owed");
    let g = c.try_read().unwrap().unwrap();
    assert!(!paid(g.release()), "flag consumed by the first wake-up");
}

// ---- a lying peer -------------------------------------------------------

const TAIL: usize = 128;
const HEAD: usize = 256;

fn expect_violation(r: Result<bool, Error>) -> Violation {
    match r {
        Err(Error::Protocol(v)) => v,
        other => panic!("expected a protocol violation, got {other:?}"),
    }
}

#[test]
fn attach_rejects_bad_header_fields() {
    let cap = 4096u64;
    let cases: [(usize, u64, &str); 5] = [
        (0, 0xdead_beef, "magic"),
        (
            8,
            pack(1, HEADER_SIZE as u32),
            "version 1 (both rings in one segment)",
        ),
        (8, pack(RING_VERSION, 512), "header size"),
        (16, 4095, "capacity not pow2"),
        (16, 8192, "capacity vs size"),
    ];
    for (off, val, what) in cases {
        let mem = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
        initialize(&*mem, cap).unwrap();
        poke(&mem, off, val);
        assert!(
            matches!(
                Consumer::attach(mem.clone(), mem.clone()),
                Err(Error::Protocol(_))
            ),
            "{what}"
        );
        // SAFETY: no other producer of `mem` exists.
        let r = unsafe { Producer::attach(mem.clone(), mem) };
        assert!(matches!(r, Err(Error::Protocol(_))), "{what}");
    }
    // Cursors already inconsistent at attach time.
    for (head, tail) in [(8, 0), (0, 3), (0, cap + 8)] {
        let mem = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
        initialize(&*mem, cap).unwrap();
        poke(&mem, HEAD, head);
        poke(&mem, TAIL, tail);
        assert!(
            Consumer::attach(mem.clone(), mem.clone()).is_err(),
            "{head} {tail}"
        );
        // SAFETY: no other producer of `mem` exists.
        let r = unsafe { Producer::attach(mem.clone(), mem) };
        assert!(r.is_err(), "{head} {tail}");
    }
}

/// Each half writes only its own memory: a producer over read-only memory,
/// or a consumer whose cursor words are in read-only memory, is refused;
/// the other half's memory may be read-only.
#[test]
fn halves_refuse_read_only_memory_they_must_write() {
    let cap = 4096u64;
    let prod = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
    let cons = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
    initialize(&*prod, cap).unwrap();
    initialize(&*cons, cap).unwrap();
    let ro_prod: Arc<dyn RingMemory> = Arc::new(ReadOnly(prod.clone()));
    let ro_cons: Arc<dyn RingMemory> = Arc::new(ReadOnly(cons.clone()));
    // SAFETY: the attach is refused, so no producer comes to exist.
    let r = unsafe { Producer::attach(ro_prod.clone(), cons.clone()) };
    assert!(
        matches!(r, Err(Error::ReadOnly { half: "producer" })),
        "{r:?}"
    );
    let r = Consumer::attach(prod.clone(), ro_cons.clone());
    assert!(
        matches!(r, Err(Error::ReadOnly { half: "consumer" })),
        "{r:?}"
    );
    assert!(matches!(
        initialize(&*ro_prod, cap),
        Err(Error::ReadOnly { .. })
    ));
    // The split ring of two processes, in one: the producer writes `prod`
    // and reads the consumer's words read-only; the consumer the mirror.
    // SAFETY: the only producer of `prod`.
    let mut p = unsafe { Producer::attach(prod.clone(), ro_cons) }.unwrap();
    let mut c = Consumer::attach(ro_prod, cons.clone()).unwrap();
    for i in 0..1000u64 {
        if p.try_push(&i.to_le_bytes()).unwrap().is_none() {
            assert_eq!(c.try_read().unwrap().unwrap().len(), 8);
            assert!(p.try_push(&i.to_le_bytes()).unwrap().is_some());
        }
    }
    // The cursors went to their owners' memory: `tail` in `prod`, `head` in
    // `cons`; the other copies were never written.
    assert_eq!(peek(&prod, TAIL), p.position());
    assert_eq!(peek(&prod, HEAD), 0);
    assert!(peek(&cons, HEAD) > 0);
    assert_eq!(peek(&cons, TAIL), 0);
}

/// The safe way to point the only producer at the consumer's segment.
#[test]
fn producer_moves_to_the_consumers_words() {
    let cap = 4096u64;
    let cons = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
    initialize(&*cons, cap).unwrap();
    let (seg, p) = create_segment(c"split", cap, crate::SegmentOptions::default()).unwrap();
    let ro: Arc<dyn RingMemory> = Arc::new(ReadOnly(cons.clone()));
    let mut p = p.with_consumer_words(ro).unwrap();
    let mut c = Consumer::attach(seg, cons.clone()).unwrap();
    assert!(p.try_push(b"hi").unwrap().is_some());
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), b"hi");
    assert_eq!(p.consumed().unwrap(), 16);
    // A consumer cursor beyond what we published is refused.
    let bad = Arc::new(HeapMemory::new(segment_size(cap) as usize).unwrap());
    initialize(&*bad, cap).unwrap();
    poke(&bad, HEAD, 64);
    assert!(matches!(
        p.with_consumer_words(bad),
        Err(Error::Protocol(Violation::HeadBeyondTail { .. }))
    ));
}

/// A park episode is woken once; parking again, woken or not, is a new
/// episode that is owed its own wake-up.
#[test]
fn every_park_episode_gets_one_wakeup() {
    let (mut p, mut c, mem) = ring_with_mem(4096);
    c.park(WakeKind::Socket);
    assert_eq!(peek(&mem, 384) % 2, 1, "parked: odd");
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"a");
    assert!(paid(g.commit()), "parked: wake-up owed");
    c.park(WakeKind::Socket); // re-armed without unparking (try_recv does this)
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"c");
    assert!(paid(g.commit()), "a new episode is owed a wake-up");
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"d");
    assert!(!paid(g.commit()), "but only one");
    c.unpark();
    assert_eq!(peek(&mem, 384) % 2, 0, "unparked: even");
    let mut g = p.try_reserve(1).unwrap().unwrap();
    g.fill_from(b"e");
    assert!(!paid(g.commit()), "not parked");
    // The consumer closing wakes a parked producer once, without hysteresis.
    p.park(WakeKind::Socket);
    assert!(paid(c.close()));
    assert!(!paid(c.close()));
}

#[test]
fn consumer_rejects_bad_tail() {
    let cap = 256u64;
    for (bad, what) in [
        (cap + 8, "beyond capacity"),
        (u64::MAX - 7, "huge"),
        (13, "misaligned"),
    ] {
        let (_p, mut c, mem) = ring_with_mem(cap);
        poke(&mem, TAIL, bad);
        let v = expect_violation(c.has_data());
        assert!(
            matches!(
                v,
                Violation::TailBeyondCapacity { .. } | Violation::Misaligned { .. }
            ),
            "{what}: {v:?}"
        );
        assert!(matches!(c.try_read(), Err(Error::Poisoned)));
    }
    // Backwards.
    let (mut p, mut c, mem) = ring_with_mem(cap);
    assert!(p.try_push(b"abc").unwrap().is_some());
    drop(c.try_read().unwrap().unwrap());
    poke(&mem, TAIL, 0);
    assert!(matches!(
        expect_violation(c.has_data()),
        Violation::TailBackwards { .. }
    ));
}

#[test]
fn producer_rejects_bad_head() {
    let cap = 256u64;
    for bad in [8u64, 3, u64::MAX - 7] {
        let (mut p, _c, mem) = ring_with_mem(cap);
        while p.try_push(&[1; 40]).unwrap().is_some() {}
        let tail = p.position();
        // beyond tail, misaligned, huge
        poke(&mem, HEAD, if bad == 8 { tail + 8 } else { bad });
        let r = p.try_reserve(40).map(|g| g.is_some());
        assert!(matches!(r, Err(Error::Protocol(_))), "{bad}: {r:?}");
        assert!(p.is_poisoned());
    }
    // Backwards.
    let (mut p, mut c, mem) = ring_with_mem(cap);
    while p.try_push(&[1; 40]).unwrap().is_some() {}
    drop(c.try_read().unwrap().unwrap());
    assert!(p.try_push(&[1; 40]).unwrap().is_some());
    poke(&mem, HEAD, 0);
    while let Ok(Some(_)) = p.try_push(&[1; 40]) {}
    let r = p.try_push(&[1; 40]);
    assert!(
        matches!(
            r,
            Err(Error::Protocol(Violation::HeadBackwards { .. })) | Err(Error::Poisoned)
        ),
        "{r:?}"
    );
}

#[test]
fn consumer_rejects_bad_record_headers() {
    let cap = 256u64;
    let data_off = HEADER_SIZE;
    let cases: [(u64, u64, &str); 7] = [
        (pack(200, 0), 24, "length exceeds record limit"),
        (pack(100, 0), 24, "extends past tail"),
        (pack(0, 1 << 20), 24, "reserved flags"),
        (pack(16, FLAG_PAD), 24, "pad not to end"),
        (pack(248, FLAG_PAD), 256, "pad not followed by record"),
        (pack(248, FLAG_PAD | 1), 256, "pad with flags"),
        (pack(u32::MAX, 0), 24, "huge length"),
    ];
    for (word, tail, what) in cases {
        let (_p, mut c, mem) = ring_with_mem(cap);
        poke(&mem, data_off, word);
        poke(&mem, TAIL, tail);
        let r = c.try_read().map(|g| g.is_some());
        assert!(
            matches!(r, Err(Error::Protocol(Violation::BadRecord { .. }))),
            "{what}: {r:?}"
        );
    }
    // A record that crosses the end of the data area.
    let (mut p, mut c, mem) = ring_with_mem(cap);
    for _ in 0..2 {
        assert!(p.try_push(&[0; 96]).unwrap().is_some());
        drop(c.try_read().unwrap().unwrap());
    } // head = tail = 208
    poke(&mem, data_off + 208, pack(64, 0));
    poke(&mem, TAIL, 208 + 72);
    let r = c.try_read().map(|g| g.is_some());
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
}

#[test]
fn random_scribbling_never_panics() {
    // A peer that writes random words over the header's cursors and the
    // data area while we keep producing and consuming: every call returns,
    // and nothing is delivered that was not either sent or reported.
    let cap = 1024u64;
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _round in 0..200 {
        let (mut p, mut c, mem) = ring_with_mem(cap);
        for step in 0..200 {
            match rnd() % 4 {
                0 => {
                    let off = [TAIL, HEAD, (HEADER_SIZE + (rnd() % cap) as usize) & !7]
                        [(rnd() % 3) as usize];
                    let val = if rnd() % 2 == 0 {
                        rnd()
                    } else {
                        rnd() % (2 * cap)
                    };
                    poke(&mem, off, val);
                }
                1 => {
                    let _ = p.try_push(&pattern(step, (rnd() % 300) as usize));
                }
                _ => {
                    if let Ok(Some(g)) = c.try_read() {
                        assert!(g.len() <= c_max(cap));
                        let _ = g.to_vec();
                    }
                }
            }
        }
        let _ = peek(&mem, TAIL);
    }
}

fn c_max(cap: u64) -> usize {
    max_record_len(cap) as usize
}

#[test]
fn read_takes_the_peeked_record_without_reloading_it() {
    let (mut p, mut c, mem) = ring_with_mem(4096);
    assert!(p.try_push(&[7u8; 40]).unwrap().is_some());
    assert!(p.try_push(&[8u8; 16]).unwrap().is_some());
    let head = c.peek_record().unwrap().unwrap();
    assert_eq!((head.tag(), head.len()), (0, 40));
    // The peer rewrites the header after our look: the record taken is the
    // one we checked (the header is not loaded again).
    poke(&mem, HEADER_SIZE, 4000);
    let g = c.read(head).unwrap();
    assert_eq!(g.len(), 40);
    let mut v = Vec::new();
    assert_eq!(g.append_to(8, &mut v), 32);
    assert_eq!(v, [7u8; 32]);
    drop(g);
    // A stale head (the record was taken already) is refused.
    assert!(matches!(c.read(head), Err(Error::StaleRecord)));
    let next = c.peek_record().unwrap().unwrap();
    assert_eq!(next.len(), 16);
    // A head from another ring does not match our cursor either.
    let (mut p2, mut c2) = heap_ring(4096).unwrap();
    assert!(p2.try_push(&[1u8; 200]).unwrap().is_some());
    assert!(p2.try_push(&[1u8; 200]).unwrap().is_some());
    let _ = c2.try_read().unwrap();
    let foreign = c2.peek_record().unwrap().unwrap();
    assert!(matches!(c.read(foreign), Err(Error::StaleRecord)));
    assert_eq!(c.read(next).unwrap().to_vec(), [8u8; 16]);
}

/// A record is validated once however often it is looked at before it is
/// taken: `has_data` keeps the copy it validated for the `peek_record` /
/// `try_read` that follows, and `ReadGuard::unread` leaves the record at
/// the head with its validated copy. A peer rewriting the header in
/// between changes nothing (before, the second look loaded the rewritten
/// header again and poisoned the ring on it).
#[test]
fn a_record_is_validated_once_across_has_data_and_unread() {
    let (mut p, mut c, mem) = ring_with_mem(4096);
    assert!(p.try_push(&[7u8; 40]).unwrap().is_some());
    assert!(p.try_push(&[8u8; 16]).unwrap().is_some());
    assert!(c.has_data().unwrap());
    // Longer than the ring's record limit: refused if it were loaded.
    poke(&mem, HEADER_SIZE, 4000);
    let head = c.peek_record().unwrap().unwrap();
    assert_eq!((head.tag(), head.len()), (0, 40));
    assert!(c.has_data().unwrap());
    let g = c.try_read().unwrap().unwrap();
    assert_eq!(g.len(), 40);
    g.unread();
    poke(&mem, HEADER_SIZE, 3000);
    // Still the same record at our cursor: the copy from the first look.
    assert_eq!(c.peek().unwrap(), Some((0, 40)));
    let g = c.read(head).unwrap();
    let mut v = Vec::new();
    assert_eq!(g.append_to(0, &mut v), 40);
    assert_eq!(v, [7u8; 40]);
    drop(g);
    assert!(!c.is_poisoned());
    // The next record is loaded and validated afresh.
    assert_eq!(c.try_read().unwrap().unwrap().to_vec(), [8u8; 16]);
    assert!(!c.has_data().unwrap());
    // A rewrite of a header no look has seen yet is caught.
    assert!(p.try_push(&[9u8; 8]).unwrap().is_some());
    poke(&mem, HEADER_SIZE + 72, 4000);
    assert!(matches!(c.has_data(), Err(Error::Protocol(_))));
    assert!(c.is_poisoned());
}

/// The futex a parked consumer sleeps on is the producer's `data_wake`
/// word, which it maps read-only; the producer wakes it through its own
/// writable mapping. Shared futexes are keyed by the page, so the two
/// meet: the sleeper is woken long before its timeout.
#[test]
fn futex_across_read_only_mapping() {
    use std::time::{Duration, Instant};
    let opts = crate::SegmentOptions::default();
    let (seg, prod) = create_segment(c"futex-a", 4096, opts).unwrap();
    let (cseg, _other) = create_segment(c"futex-b", 4096, opts).unwrap();
    let fd = seg.fd().try_clone_to_owned().unwrap();
    let ro = Arc::new(crate::Segment::attach_read_only(fd, segment_size(4096), 1 << 20).unwrap());
    assert!(!ro.is_writable());
    let cmem: Arc<dyn RingMemory> = cseg;
    let mut prod = prod.with_consumer_words(cmem.clone()).unwrap();
    let mut cons = Consumer::attach(ro, cmem).unwrap();
    let word = cons.wake_word();
    let snap = cons.park(WakeKind::Futex);
    assert!(!cons.has_data().unwrap());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let w = prod.try_push(b"x").unwrap().unwrap();
        assert_eq!(w.kind(), Some(WakeKind::Futex));
        w.redeem(|| Ok::<(), ()>(())).unwrap();
        prod
    });
    let start = Instant::now();
    // A lost wake-up (or a word the kernel did not match) sleeps 20 s.
    let mut slept = word.sleep(snap, Duration::from_secs(20)).unwrap();
    while slept == Slept::Woken && start.elapsed() < Duration::from_secs(20) {
        // A spurious return before the wake-up (EINTR): park and sleep
        // again, as a real sleeper does.
        let snap = cons.park(WakeKind::Futex);
        if cons.has_data().unwrap() {
            break;
        }
        slept = word.sleep(snap, Duration::from_secs(20)).unwrap();
    }
    assert_eq!(slept, Slept::Woken);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "woken by the timeout, not the peer"
    );
    cons.unpark();
    assert!(cons.has_data().unwrap());
    let _prod = t.join().unwrap();
}

/// A `Wake` dropped unredeemed is not lost: a socket wake-up is owed again
/// by the next check; a ReadGuard dropped while the producer is parked
/// hands its wake-up back, and `owed_wake` (or the next release) returns
/// it. Fails if Drop discards the token (as `ReadGuard`'s Drop once did).
#[test]
fn dropped_wakeups_are_owed_again() {
    let (mut p, mut c) = heap_ring(64).unwrap();
    c.park(WakeKind::Socket);
    let w = p.try_push(b"a").unwrap().unwrap();
    assert_eq!(w.kind(), Some(WakeKind::Socket));
    drop(w);
    let again = p.owed_wake();
    assert_eq!(
        again.kind(),
        Some(WakeKind::Socket),
        "a dropped wake-up was lost"
    );
    assert!(paid(again));
    assert!(!p.owed_wake().is_owed(), "paid: owed once only");
    c.unpark();
    // Writer side, through ReadGuard's Drop.
    while c.try_read().unwrap().is_some() {}
    while p.try_push(&[0; 8]).unwrap().is_some() {}
    p.park(WakeKind::Socket);
    drop(c.try_read().unwrap().unwrap());
    drop(c.try_read().unwrap().unwrap()); // half the ring free: owed, handed back
    assert!(paid(c.owed_wake()), "ReadGuard's Drop lost the wake-up");
    assert!(!paid(c.owed_wake()));
    // hand_back is explicit and has the same effect.
    let (mut p, c) = heap_ring(64).unwrap();
    c.park(WakeKind::Socket);
    p.try_push(b"b").unwrap().unwrap().hand_back();
    assert!(
        paid(p.publish()),
        "handed back, owed again at the next publish"
    );
}
