//! Fuzz drivers shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and
//! the proptest run in CI (`tests/fuzz_props.rs`): each takes arbitrary
//! bytes and drives one untrusted-input entry point, asserting the
//! properties that must hold whatever the bytes are.

use crate::harness::fd_count;
use crate::peer::seqpacket_pair;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use shmsock::shm::ring::{
    self, initialize, max_record_len, segment_size, Consumer, HeapMemory, Producer, RingMemory,
};
use shmsock::wire::{Control, MAX_CONTROL_LEN};
use shmsock::Builder;

/// Control-message decoder: never panics; whatever decodes re-encodes to
/// the same bytes' meaning.
pub fn control_decode(data: &[u8]) {
    if let Ok(c) = Control::decode(data) {
        let mut b = [0u8; MAX_CONTROL_LEN];
        let n = c.encode(&mut b);
        assert_eq!(Control::decode(&b[..n]), Ok(c));
        assert_eq!(&b[..n], data, "decode accepted a non-canonical encoding");
    }
}

/// An fd of the kind `spec` names, for the handshake driver.
fn make_fd(spec: u8) -> OwnedFd {
    use nix::fcntl::SealFlag as S;
    // Fully backed, so that each case is refused for what it means
    // (seals, size, header), not for being sparse.
    let memfd = |len: u64, seals: S| crate::peer::memfd(len, len, seals);
    let all = crate::peer::RING_SEALS;
    match spec % 6 {
        0 => {
            let (seg, _prod) =
                ring::create_segment(c"fuzz", 4096, shmsock::shm::SegmentOptions::default())
                    .unwrap();
            seg.fd().try_clone_to_owned().unwrap()
        }
        1 => memfd(segment_size(4096), S::empty()),
        2 => memfd(segment_size(8192), all),
        3 => memfd(segment_size(4096), all), // zeroed header
        4 => seqpacket_pair().0,
        _ => nix::unistd::pipe().unwrap().0,
    }
}

fn send_raw(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[OwnedFd]) {
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        let _ = cmsg.push(SendAncillaryMessage::ScmRights(&borrowed));
    }
    let _ = sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut cmsg,
        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    );
}

/// Handshake state machine: arbitrary datagrams (with arbitrary fds) reach
/// a server (`server = true`) or client handshake through a real socket
/// pair. It must return (Ok or a typed error), never panic, and leave no fd
/// behind.
pub fn handshake(data: &[u8], server: bool) {
    // The fd count is process-wide: keep concurrent test threads out.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let before = fd_count();
    {
        let (ours, victim) = seqpacket_pair();
        // Input: up to 4 datagrams of [len][fd spec][bytes...]. The fd spec
        // holds the number of fds (0..=3) in its top bits and their kinds.
        let mut rest = data;
        for _ in 0..4 {
            let [len, spec, tail @ ..] = rest else { break };
            let len = (*len as usize).min(tail.len());
            let (msg, tail) = tail.split_at(len);
            let nfds = (spec >> 6) as usize;
            let fds: Vec<OwnedFd> = (0..nfds).map(|i| make_fd(spec >> (i * 2))).collect();
            send_raw(ours.as_fd(), msg, &fds);
            rest = tail;
        }
        // Hang up so the victim never waits for more than what is queued.
        drop(ours);
        let opts = Builder::new()
            .handshake_timeout(Duration::from_millis(200))
            .max_peer_ring(1 << 20);
        let r = if server {
            opts.accept_socket(victim)
        } else {
            opts.connect_socket(victim)
        };
        if let Ok(mut c) = r {
            // A successful handshake with a dead peer: calls end promptly.
            let _ = c.try_recv();
        }
    }
    assert_eq!(fd_count(), before, "fd leaked");
}

/// Ring reader: a producer and consumer over one heap ring while the input
/// scribbles on header and data words. The consumer must only ever return
/// records within bounds, or an error; never panic or read out of bounds.
/// (Across processes the peer can only write its own segment; one memory
/// here lets the input play both peers at once.)
pub fn ring_reader(data: &[u8]) {
    const CAP: u64 = 256;
    let mem = Arc::new(HeapMemory::new(segment_size(CAP) as usize).unwrap());
    initialize(&*mem, CAP).unwrap();
    let poke = |off: usize, v: u64| {
        let off = off & !7;
        assert!(off + 8 <= mem.size());
        // SAFETY: in bounds (asserted) and 8-aligned; shared words are
        // written atomically, as a hostile peer's writes would be.
        unsafe { AtomicU64::from_ptr(mem.base().add(off).cast()) }.store(v, Ordering::Relaxed);
    };
    // SAFETY: `mem` was allocated above; this is its only producer (the
    // re-attach below drops the old one first).
    let mut prod = unsafe { Producer::attach(mem.clone(), mem.clone()) }.ok();
    let mut cons = Consumer::attach(mem.clone(), mem.clone()).ok();
    let max = max_record_len(CAP) as usize;
    let mut buf = vec![0u8; max];
    let mut it = data.iter().copied();
    let word = |it: &mut dyn Iterator<Item = u8>| {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = it.next().unwrap_or(0);
        }
        u64::from_le_bytes(w)
    };
    while let Some(op) = it.next() {
        match op % 7 {
            0 => {
                // Header words: config, tail, closed, head, park words.
                let offs = [0usize, 8, 16, 128, 136, 256, 264, 384, 512];
                let off = offs[it.next().unwrap_or(0) as usize % offs.len()];
                let v = word(&mut it);
                poke(off, v);
            }
            1 => {
                let off = ring::HEADER_SIZE + (it.next().unwrap_or(0) as usize * 8) % CAP as usize;
                let v = word(&mut it);
                poke(off, v);
            }
            2 => {
                if let Some(p) = prod.as_mut() {
                    let len = it.next().unwrap_or(0) as usize % (max + 1);
                    let _ = p.try_push(&buf[..len]);
                }
            }
            3 => {
                if let Some(p) = prod.as_mut() {
                    let len = it.next().unwrap_or(0) as usize % (max + 1);
                    if let Ok(Some(g)) = p.try_reserve_tagged(len, u16::from(op)) {
                        g.commit_deferred();
                    }
                    p.publish();
                }
            }
            4 | 5 => {
                if let Some(c) = cons.as_mut() {
                    if let Ok(Some(g)) = c.try_read() {
                        assert!(g.len() <= max, "record longer than the ring allows");
                        assert_eq!(g.copy_to(&mut buf), g.len());
                    }
                }
            }
            _ => {
                // Re-attach: validation of whatever the header holds now.
                cons = Consumer::attach(mem.clone(), mem.clone()).ok();
                drop(prod.take());
                // SAFETY: the old producer was dropped just above: this is
                // the only one.
                prod = unsafe { Producer::attach(mem.clone(), mem.clone()) }.ok();
            }
        }
    }
}
