//! Publish/subscribe between real processes: one publisher, many forked
//! subscriber processes (honest, slow, killed, stopped, hostile).
//!
//! `harness = false`: the cases run one after another on the main thread,
//! and every fork happens while no other thread exists (testkit's
//! harness: checked exits, deadlines, kill on failure, fd-leak check per
//! case). Subscribers are forked *before* the publisher's segment exists,
//! so no child inherits the publisher's writable mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use shmsock_services::pubsub::wire::{Handshake, HANDSHAKE_LEN};
use shmsock_services::pubsub::{
    Error, Policy, Publisher, PublisherOptions, Subscriber, SubscriberOptions,
};
use shmsock_shm::fanout;
use shmsock_testkit::harness::{self as common, Child};

// ---------------------------------------------------------------- helpers

/// A forked child (testkit's helper: checked exit, killed on drop) and the
/// read end of the pipe it reports on.
struct Forked {
    child: Child,
    out: std::fs::File,
}

/// Forks; the child runs `f` with the write end of a result pipe (the
/// parent's copy closes when the closure is dropped in the parent).
fn spawn(f: impl FnOnce(&mut std::fs::File)) -> Forked {
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut w = std::fs::File::from(w);
    let child = common::spawn(move || {
        f(&mut w);
        w.flush().unwrap();
    });
    Forked {
        child,
        out: std::fs::File::from(r),
    }
}

impl Forked {
    /// Waits (asserting exit 0), returns what the child wrote.
    fn wait(mut self, timeout: Duration) -> String {
        self.child.wait(timeout);
        let mut s = String::new();
        self.out.read_to_string(&mut s).unwrap();
        s
    }

    fn signal(&self, sig: Signal) {
        kill(self.child.pid, sig).unwrap();
    }

    fn kill(self) {
        self.child.kill();
    }
}

fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("shmsock-pubsub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Subscribes, retrying until the publisher's path exists.
fn subscribe(path: &Path, opts: SubscriberOptions) -> Subscriber {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Subscriber::subscribe(path, opts.clone()) {
            Ok(s) => return s,
            Err(Error::Io { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("subscribe: {e}"),
        }
    }
}

fn connect(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("connect: {e}"),
        }
    }
}

/// The payload of message `seq`: its sequence number, then bytes derived
/// from it; 8 to 63 bytes long.
fn payload(seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    let extra = (seq.wrapping_mul(0x9e37_79b9) % 56) as usize;
    out.extend((0..extra).map(|k| (seq as u8).wrapping_mul(31).wrapping_add(k as u8)));
}

fn check(seq: u64, got: &[u8], scratch: &mut Vec<u8>) {
    payload(seq, scratch);
    assert!(got == &scratch[..], "message {seq} differs: {got:?}");
}

/// Reads until the publisher closes; verifies every message byte by byte;
/// returns (messages read, messages reported lost, last seq).
fn read_all(sub: &mut Subscriber, slow_every: u64) -> (u64, u64, u64) {
    let (mut read, mut lost, mut next) = (0u64, 0u64, None::<u64>);
    let mut buf = Vec::new();
    let mut scratch = Vec::new();
    loop {
        match sub.recv_timeout(&mut buf, Duration::from_secs(30)) {
            Ok(r) => {
                if let Some(n) = next {
                    assert_eq!(
                        r.seq,
                        n + r.lost,
                        "sequence numbers and loss count disagree"
                    );
                }
                check(r.seq, &buf, &mut scratch);
                read += 1;
                lost += r.lost;
                next = Some(r.seq + 1);
                if slow_every > 0 && read.is_multiple_of(slow_every) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(Error::Closed) => return (read, lost, next.map_or(0, |n| n - 1)),
            Err(e) => panic!("recv after {read}: {e}"),
        }
    }
}

/// As [`read_all`] (Block, no gaps), reading in place: each message is
/// checked through `Sample::copy_to` (copy, then the overwrite check) while
/// it still holds the publisher's space.
fn read_all_in_place(sub: &mut Subscriber) -> (u64, u64, u64) {
    let mut buf = vec![0u8; 64];
    let mut scratch = Vec::new();
    let mut read = 0u64;
    loop {
        match sub.read_timeout(Duration::from_secs(30)) {
            Ok(sample) => {
                assert_eq!(sample.seq(), read, "in-place reads skip nothing");
                let n = sample.copy_to(&mut buf).unwrap();
                check(sample.seq(), &buf[..n], &mut scratch);
                read += 1;
            }
            Err(Error::Closed) => return (read, 0, read.saturating_sub(1)),
            Err(e) => panic!("read after {read}: {e}"),
        }
    }
}

fn publish_all(p: &mut Publisher, n: u64) -> Duration {
    let mut buf = Vec::new();
    let mut longest = Duration::ZERO;
    for seq in 0..n {
        payload(seq, &mut buf);
        let t = Instant::now();
        let mut loan = p.loan_timeout(buf.len(), Duration::from_secs(30)).unwrap();
        loan.copy_from_slice(&buf);
        assert_eq!(loan.publish(), seq);
        longest = longest.max(t.elapsed());
    }
    longest
}

// ------------------------------------------------------------------ cases

const SUBS: usize = 8;

/// Messages for the two 1 → 8 cases: 10^6 as issue 12 asks
/// (`PUBSUB_FORK_N` overrides).
fn big_n() -> u64 {
    std::env::var("PUBSUB_FORK_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// 1 publisher → 8 subscriber processes under Block: every subscriber
/// gets every message, in order, byte for byte (half of them copying each
/// message out, half reading it in place).
fn block_one_to_eight_every_message() {
    let n = big_n();
    let path = sock_path("block8");
    let children: Vec<Forked> = (0..SUBS)
        .map(|i| {
            let path = path.clone();
            spawn(move |out| {
                let mut sub = subscribe(&path, SubscriberOptions::new());
                let (read, lost, last) = if i % 2 == 0 {
                    read_all(&mut sub, 0)
                } else {
                    read_all_in_place(&mut sub)
                };
                writeln!(out, "{read} {lost} {last}").unwrap();
            })
        })
        .collect();
    let mut p = Publisher::create(&path, PublisherOptions::new().capacity(1 << 20)).unwrap();
    p.wait_for_subscribers(SUBS, Duration::from_secs(30))
        .unwrap();
    let t = Instant::now();
    publish_all(&mut p, n);
    let elapsed = t.elapsed();
    p.close();
    for c in children {
        let out = c.wait(Duration::from_secs(120));
        assert_eq!(
            out.trim(),
            format!("{n} 0 {}", n - 1),
            "a subscriber missed messages"
        );
    }
    eprintln!("  {n} messages to {SUBS} subscribers in {elapsed:.2?}");
}

/// 1 → 8 under DropOldest, half of the subscribers slow: each counts its
/// gaps, and what it read plus what it was told it lost is exactly what
/// was published.
fn drop_oldest_one_to_eight_counts_gaps() {
    let n = big_n();
    let path = sock_path("drop8");
    let children: Vec<Forked> = (0..SUBS)
        .map(|i| {
            let path = path.clone();
            spawn(move |out| {
                let mut sub = subscribe(&path, SubscriberOptions::new());
                let slow = if i % 2 == 0 { 5_000 } else { 0 };
                let (read, lost, last) = read_all(&mut sub, slow);
                writeln!(out, "{read} {lost} {last}").unwrap();
            })
        })
        .collect();
    let mut p = Publisher::create(
        &path,
        PublisherOptions::new()
            .capacity(64 << 10)
            .policy(Policy::DropOldest),
    )
    .unwrap();
    p.wait_for_subscribers(SUBS, Duration::from_secs(30))
        .unwrap();
    publish_all(&mut p, n);
    p.close();
    let mut total_lost = 0;
    for c in children {
        let out = c.wait(Duration::from_secs(120));
        let v: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(
            v[0] + v[1],
            n,
            "read {} + lost {} != published {n}",
            v[0],
            v[1]
        );
        assert_eq!(v[2], n - 1, "the last message is always delivered");
        total_lost += v[1];
    }
    assert!(
        total_lost > 0,
        "no subscriber was lapped: the test did not test gaps"
    );
    eprintln!("  {total_lost} messages lost in total, each one reported");
}

/// Under Block, one subscriber is SIGKILLed mid-stream and another
/// SIGSTOPped (alive, no progress): the publisher drops the dead one at
/// once (socket end) and the stopped one after max_lag; no send waits much
/// longer than max_lag; the honest subscriber gets everything.
fn killed_and_stopped_subscribers_do_not_stall_the_publisher() {
    const N: u64 = 200_000;
    let max_lag = Duration::from_millis(300);
    let path = sock_path("kill");
    let honest = {
        let path = path.clone();
        spawn(move |out| {
            let mut sub = subscribe(&path, SubscriberOptions::new());
            let (read, lost, _) = read_all(&mut sub, 0);
            writeln!(out, "{read} {lost}").unwrap();
        })
    };
    let victims: Vec<Forked> = (0..2)
        .map(|_| {
            let path = path.clone();
            spawn(move |_| {
                let mut sub = subscribe(&path, SubscriberOptions::new());
                let mut buf = Vec::new();
                // Reads along until killed or stopped.
                loop {
                    match sub.recv(&mut buf) {
                        Ok(_) => {}
                        Err(Error::Closed | Error::Evicted) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let mut p = Publisher::create(
        &path,
        PublisherOptions::new().capacity(64 << 10).max_lag(max_lag),
    )
    .unwrap();
    p.wait_for_subscribers(3, Duration::from_secs(30)).unwrap();
    let mut buf = Vec::new();
    let mut longest = Duration::ZERO;
    let mut victims = victims.into_iter();
    let (killed, stopped) = (victims.next().unwrap(), victims.next().unwrap());
    let mut killed = Some(killed);
    for seq in 0..N {
        if seq == N / 4 {
            killed.take().unwrap().kill();
        }
        if seq == N / 2 {
            stopped.signal(Signal::SIGSTOP);
        }
        payload(seq, &mut buf);
        let t = Instant::now();
        p.send_timeout(&buf, Duration::from_secs(30)).unwrap();
        longest = longest.max(t.elapsed());
    }
    assert_eq!(
        p.subscriber_count(),
        1,
        "dead and stopped subscribers were dropped"
    );
    assert_eq!(p.evicted_count(), 1, "the stopped one by max_lag");
    // Generous slack for a busy machine; a publisher stalled by the dead
    // one would wait the full 30 s timeout (and fail above).
    assert!(
        longest < max_lag + Duration::from_secs(3),
        "a send waited {longest:?}"
    );
    p.close();
    assert_eq!(
        honest.wait(Duration::from_secs(60)).trim(),
        format!("{N} 0")
    );
    stopped.signal(Signal::SIGCONT);
    stopped.wait(Duration::from_secs(30));
    eprintln!("  longest send {longest:.2?} (max_lag {max_lag:?})");
}

/// The hostile subscriber's handshake, by hand: returns the socket, the
/// publisher's data segment fd and our cursor segment (writable: ours).
fn hostile_handshake(path: &Path) -> (UnixStream, OwnedFd, shmsock_shm::Segment) {
    let mut s = connect(path);
    send_hello(&mut s);
    let (data, cursor) = finish_handshake(&s);
    (s, data, cursor)
}

fn send_hello(s: &mut UnixStream) {
    s.write_all(&Handshake::Hello { history: 0 }.encode())
        .unwrap();
}

/// Reads the `Welcome` (blocking), answers `Ready` with a cursor segment.
fn finish_handshake(s: &UnixStream) -> (OwnedFd, shmsock_shm::Segment) {
    let mut buf = [0u8; HANDSHAKE_LEN];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let r = rustix::net::recvmsg(
        s,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut cmsg,
        rustix::net::RecvFlags::CMSG_CLOEXEC | rustix::net::RecvFlags::WAITALL,
    )
    .unwrap();
    assert_eq!(r.bytes, HANDSHAKE_LEN);
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    let Ok(Handshake::Welcome { start, .. }) = Handshake::decode(&buf) else {
        panic!("no Welcome")
    };
    let data: OwnedFd = fds.pop().unwrap();
    let cursor = fanout::create_cursor_segment(c"hostile", start).unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fd = [cursor.fd()];
    assert!(cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(&fd)));
    rustix::net::sendmsg(
        s,
        &[std::io::IoSlice::new(&Handshake::Ready.encode())],
        &mut cmsg,
        rustix::net::SendFlags::NOSIGNAL,
    )
    .unwrap();
    (data, cursor)
}

/// A word of our own cursor segment, as an atomic.
fn word(seg: &shmsock_shm::Segment, off: usize) -> &AtomicU64 {
    assert!(off + 8 <= seg.len() && off.is_multiple_of(8));
    // SAFETY: in bounds and 8-aligned (checked), our own writable mapping,
    // alive as long as the borrow of `seg`.
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(off).cast()) }
}

/// The publisher's `tail`, read through our read-only mapping of its data
/// segment.
fn their_tail(seg: &shmsock_shm::Segment) -> u64 {
    // SAFETY: a live mapping of more than 1024 bytes; offset 128 is
    // 8-aligned; an atomic load only (the mapping is read-only).
    unsafe { AtomicU64::from_ptr(seg.as_ptr().add(128).cast()) }.load(Ordering::Relaxed)
}

/// Tries every way to write the publisher's segment; all must fail.
fn try_to_write(fd: &OwnedFd) {
    use nix::errno::Errno;
    use nix::sys::mman::{mmap, mprotect, munmap, MapFlags, ProtFlags};
    use std::num::NonZeroUsize;
    let n = NonZeroUsize::new(4096).unwrap();
    // SAFETY: a fresh mapping at an address the kernel picks (refused).
    let r = unsafe {
        mmap(
            None,
            n,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
    };
    assert_eq!(
        r.err(),
        Some(nix::errno::Errno::EPERM),
        "mmap(PROT_WRITE, MAP_SHARED)"
    );
    // SAFETY: a fresh read-only mapping, unmapped below.
    let ro = unsafe { mmap(None, n, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, fd, 0) }.unwrap();
    // SAFETY: our own mapping of `n` bytes.
    let r = unsafe { mprotect(ro, n.get(), ProtFlags::PROT_READ | ProtFlags::PROT_WRITE) };
    assert_eq!(r, Err(Errno::EACCES), "mprotect(PROT_WRITE)");
    // SAFETY: our own mapping, not referenced any more.
    unsafe { munmap(ro, n.get()) }.unwrap();
    assert_eq!(
        nix::unistd::write(fd, &[0xff; 8]),
        Err(Errno::EPERM),
        "write(2)"
    );
    assert_eq!(
        nix::fcntl::fallocate(
            fd,
            nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            0,
            4096,
        ),
        Err(Errno::EPERM),
        "fallocate(PUNCH_HOLE)"
    );
    assert_eq!(
        nix::unistd::ftruncate(fd, 0),
        Err(Errno::EPERM),
        "ftruncate"
    );
}

/// Hostile subscribers next to two honest ones, under Block: one tries to
/// write the publisher's segment and then never reads (evicted after
/// max_lag), one claims a cursor beyond the tail (evicted at once), one
/// claims to have read everything while flooding park episodes (it hurts
/// only itself), one scribbles random words over its cursor segment. The
/// honest ones get every message; the publisher finishes.
fn hostile_subscribers_cannot_disturb_the_others() {
    const N: u64 = 200_000;
    const CAP: u64 = 64 << 10;
    let path = sock_path("hostile");
    let honest: Vec<Forked> = (0..2)
        .map(|_| {
            let path = path.clone();
            spawn(move |out| {
                let mut sub = subscribe(&path, SubscriberOptions::new());
                let (read, lost, _) = read_all(&mut sub, 0);
                writeln!(out, "{read} {lost}").unwrap();
            })
        })
        .collect();
    let mut hostile = Vec::new();
    for attack in 0..4u32 {
        let path = path.clone();
        hostile.push(spawn(move |out| {
            let (sock, data, cursor) = hostile_handshake(&path);
            let map = shmsock_shm::Segment::attach_read_only(
                data.try_clone().unwrap(),
                fanout::fanout_segment_size(CAP),
                1 << 30,
            )
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut x = 0x1234_5678_9abc_def1u64 ^ u64::from(attack);
            let mut rng = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            match attack {
                0 => try_to_write(&data),
                1 => word(&cursor, 128).store(u64::MAX - 7, Ordering::Relaxed),
                _ => {}
            }
            // Keep lying until the publisher closes or drops us.
            let mut b = [0u8; 64];
            sock.set_nonblocking(true).unwrap();
            while Instant::now() < deadline {
                match attack {
                    2 => {
                        let t = their_tail(&map);
                        word(&cursor, 128).store(t & !7, Ordering::Relaxed);
                        let p = word(&cursor, 256);
                        p.store((p.load(Ordering::Relaxed) | 1) + 2, Ordering::Relaxed);
                    }
                    3 => {
                        let off = (rng() % 48) as usize * 8;
                        word(&cursor, off).store(rng(), Ordering::Relaxed);
                    }
                    _ => {}
                }
                match (&sock).read(&mut b) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200))
                    }
                    Err(_) => break,
                }
            }
            writeln!(out, "done").unwrap();
        }));
    }
    let mut p = Publisher::create(
        &path,
        PublisherOptions::new()
            .capacity(CAP)
            .max_lag(Duration::from_millis(300)),
    )
    .unwrap();
    p.wait_for_subscribers(6, Duration::from_secs(30)).unwrap();
    publish_all(&mut p, N);
    // Attack 0 never reads (max_lag), 1 lies beyond the tail, 3 scribbles
    // its cursor (misaligned, backwards or beyond: evicted); 2 stays.
    assert!(p.evicted_count() >= 3, "evicted {}", p.evicted_count());
    p.close();
    for c in honest {
        assert_eq!(c.wait(Duration::from_secs(60)).trim(), format!("{N} 0"));
    }
    for c in hostile {
        assert_eq!(c.wait(Duration::from_secs(90)).trim(), "done");
    }
}

/// Subscribers join (some with history) and leave while messages flow;
/// each sees consecutive sequence numbers from where it started, with the
/// right bytes; the publisher never waits for one that left.
fn join_and_leave_while_messages_flow() {
    const N: u64 = 300_000;
    let path = sock_path("churn");
    let children: Vec<Forked> = (0..6u64)
        .map(|i| {
            let path = path.clone();
            spawn(move |out| {
                std::thread::sleep(Duration::from_millis(20 * i));
                let mut sub = subscribe(&path, SubscriberOptions::new().history(i as u32 * 10));
                // Tell the publisher we are in: it publishes until all are.
                writeln!(out, "joined").unwrap();
                out.flush().unwrap();
                let mut buf = Vec::new();
                let mut scratch = Vec::new();
                let first = sub.recv_timeout(&mut buf, Duration::from_secs(30)).unwrap();
                check(first.seq, &buf, &mut scratch);
                let mut next = first.seq + 1;
                for _ in 0..(5_000 * (i + 1)) {
                    match sub.recv_timeout(&mut buf, Duration::from_secs(30)) {
                        Ok(r) => {
                            assert_eq!((r.seq, r.lost), (next, 0));
                            check(r.seq, &buf, &mut scratch);
                            next += 1;
                        }
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                // Leave mid-stream.
                sub.unsubscribe();
            })
        })
        .collect();
    let mut p = Publisher::create(
        &path,
        PublisherOptions::new()
            .capacity(256 << 10)
            .history(100)
            .max_lag(Duration::from_secs(10)),
    )
    .unwrap();
    // At least N messages, and on until every subscriber has joined and
    // could read its share (at most 30,000) after joining: on a fast
    // machine N messages go out before the late joiners arrive (they then
    // found the topic closed: the test raced).
    let joined = |c: &Forked| {
        let mut fds = [rustix::event::PollFd::new(
            &c.out,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).unwrap() > 0
    };
    let mut buf = Vec::new();
    let mut until = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seq = 0u64;
    while seq < N || until.is_none_or(|u| seq < u) {
        if until.is_none() && children.iter().all(joined) {
            until = Some(seq + 30_001);
        }
        assert!(Instant::now() < deadline, "subscribers never joined");
        payload(seq, &mut buf);
        let mut loan = p.loan_timeout(buf.len(), Duration::from_secs(30)).unwrap();
        loan.copy_from_slice(&buf);
        assert_eq!(loan.publish(), seq);
        seq += 1;
    }
    p.close();
    for c in children {
        c.wait(Duration::from_secs(60));
    }
}

/// The publisher process is SIGKILLed: its subscriber reads everything it
/// published, then gets Disconnected (not a hang, not Closed).
fn killed_publisher_means_disconnected() {
    let path = sock_path("pubkill");
    let path2 = path.clone();
    let publisher = spawn(move |_| {
        let mut p = Publisher::create(&path2, PublisherOptions::new()).unwrap();
        p.wait_for_subscribers(1, Duration::from_secs(30)).unwrap();
        for i in 0..1000u64 {
            p.send(&i.to_le_bytes()).unwrap();
        }
        // Wait to be killed (an orderly close would say Closed).
        std::thread::sleep(Duration::from_secs(60));
    });
    let mut sub = subscribe(&path, SubscriberOptions::new());
    let mut buf = Vec::new();
    for i in 0..1000u64 {
        let r = sub.recv_timeout(&mut buf, Duration::from_secs(30)).unwrap();
        assert_eq!((r.seq, &buf[..]), (i, &i.to_le_bytes()[..]));
    }
    publisher.kill();
    let t = Instant::now();
    let r = sub.recv_timeout(&mut buf, Duration::from_secs(30));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(sub);
    let _ = std::fs::remove_file(&path);
}

/// Bad handshakes are refused or dropped (their fds closed), an unknown
/// control byte gets a subscriber evicted, subscribers over the limit are
/// refused (no fork needed: socket pairs).
fn bad_handshakes_and_control_bytes_are_dropped() {
    let mut p =
        Publisher::new(PublisherOptions::new().handshake_timeout(Duration::from_millis(200)))
            .unwrap();
    // Garbage instead of Hello: Refuse.
    let (a, mut b) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    b.write_all(&[0x55; HANDSHAKE_LEN]).unwrap();
    p.poll().unwrap();
    let mut r = [0u8; HANDSHAKE_LEN];
    b.read_exact(&mut r).unwrap();
    assert!(matches!(
        Handshake::decode(&r),
        Ok(Handshake::Refuse { reason: 1 })
    ));
    // Ready with a pipe instead of a cursor segment: dropped.
    let (a, mut b) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    b.write_all(&Handshake::Hello { history: 0 }.encode())
        .unwrap();
    p.poll().unwrap();
    b.read_exact(&mut r).unwrap();
    let (pr, _pw) = nix::unistd::pipe().unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fd = [pr.as_fd()];
    assert!(cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(&fd)));
    rustix::net::sendmsg(
        &b,
        &[std::io::IoSlice::new(&Handshake::Ready.encode())],
        &mut cmsg,
        rustix::net::SendFlags::NOSIGNAL,
    )
    .unwrap();
    p.poll().unwrap();
    assert_eq!(p.subscriber_count(), 0);
    // The Welcome's data-segment fd arrived with `r` above and was closed
    // by the read (no cmsg buffer); the socket ends.
    assert_eq!(b.read(&mut r).unwrap(), 0, "dropped: end of stream");
    // Silent: dropped at the handshake deadline.
    let (a, mut b) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    p.poll().unwrap();
    assert_eq!(b.read(&mut r).unwrap(), 0, "silent peer dropped");
    // Subscribed, then an unknown control byte: evicted, told so.
    let (a, mut b) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    send_hello(&mut b);
    p.poll().unwrap();
    let (data, cursor) = finish_handshake(&b);
    p.poll().unwrap();
    assert_eq!(p.subscriber_count(), 1);
    b.write_all(&[0x77]).unwrap();
    p.poll().unwrap();
    assert_eq!((p.subscriber_count(), p.evicted_count()), (0, 1));
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, [0x02], "EVICTED, then the end");
    drop((data, cursor));
    // Over the subscriber limit: Refuse (full).
    let mut p = Publisher::new(PublisherOptions::new().max_subscribers(1)).unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    send_hello(&mut b);
    p.poll().unwrap();
    let (_data, _cursor) = finish_handshake(&b);
    p.poll().unwrap();
    assert_eq!(p.subscriber_count(), 1);
    let (a, b2) = UnixStream::pair().unwrap();
    p.add_subscriber_stream(a).unwrap();
    match Subscriber::from_stream(b2, SubscriberOptions::new()) {
        Err(Error::Refused { reason: 2 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(p.subscriber_count(), 1);
}

/// What a lying publisher does (one child per attack).
#[derive(Debug, Clone, Copy)]
enum Lie {
    /// A pipe instead of a memfd as the data segment.
    Pipe,
    /// A memfd without a write seal (the publisher could also map it
    /// writable from elsewhere): refused before mapping.
    Unsealed,
    /// The header's policy disagrees with the `Welcome`.
    PolicyMismatch,
    /// `tail` not 8-aligned.
    TailMisaligned,
    /// `tail` more than a ring ahead under Block.
    TailBeyond,
    /// A record whose length exceeds the ring's limit.
    HugeRecord,
    /// A valid record with the wrong sequence number.
    WrongSeq,
    /// Random words all over the header and data area while `tail` grows.
    Scribbler,
}

const LIE_CAP: u64 = 4096;

/// Stores `v` at byte `off` of our own (writable) segment.
fn poke(seg: &shmsock_shm::Segment, off: usize, v: u64) {
    word(seg, off).store(v, Ordering::Relaxed);
}

/// The lying publisher: accepts one subscriber on `path`, hands it a bad
/// data segment or lies through a good one, then keeps the socket open
/// until the subscriber hangs up.
fn lying_publisher(path: &Path, lie: Lie) {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let mut hello = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hello).unwrap();
    let size = fanout::fanout_segment_size(LIE_CAP);
    let seg = shmsock_shm::Segment::create(c"liar", size, Default::default()).unwrap();
    // A valid header (Block), by hand.
    poke(&seg, 0, fanout::FANOUT_MAGIC);
    poke(&seg, 8, u64::from(fanout::FANOUT_VERSION) | (1024 << 32));
    poke(&seg, 16, LIE_CAP);
    poke(
        &seg,
        24,
        if matches!(lie, Lie::PolicyMismatch) {
            2
        } else {
            1
        },
    );
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    let unsealed =
        nix::sys::memfd::memfd_create(c"unsealed", nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING)
            .unwrap();
    nix::unistd::ftruncate(&unsealed, size as i64).unwrap();
    let fd = match lie {
        Lie::Pipe => pipe_r.as_fd(),
        Lie::Unsealed => unsealed.as_fd(),
        _ => seg.fd(),
    };
    let welcome = Handshake::Welcome {
        policy: Policy::Block,
        capacity: LIE_CAP,
        start: 0,
        start_seq: 0,
    };
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    assert!(cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
    rustix::net::sendmsg(
        &s,
        &[std::io::IoSlice::new(&welcome.encode())],
        &mut cmsg,
        rustix::net::SendFlags::NOSIGNAL,
    )
    .unwrap();
    let data = 1024;
    match lie {
        Lie::TailMisaligned => poke(&seg, 128, 12),
        Lie::TailBeyond => poke(&seg, 128, 4 * LIE_CAP),
        Lie::HugeRecord => {
            poke(&seg, data, LIE_CAP);
            poke(&seg, 128, 64);
        }
        Lie::WrongSeq => {
            poke(&seg, data, 8);
            poke(&seg, data + 8, 5);
            poke(&seg, 128, 24);
        }
        _ => {}
    }
    // Wake the subscriber if it sleeps; then lie on (scribbler) until it
    // hangs up.
    let _ = s.write_all(&[0x01]);
    s.set_nonblocking(true).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut tail = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut b = [0u8; 64];
    while Instant::now() < deadline {
        if matches!(lie, Lie::Scribbler) {
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = 128 + (x % ((size - 128) / 8)) as usize * 8;
                poke(&seg, off, x.rotate_left(17));
            }
            tail += 8 * (x % 64);
            poke(&seg, 128, tail);
            let _ = s.write_all(&[0x01]);
        }
        match (&s).read(&mut b) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(100))
            }
            Err(_) => break,
        }
    }
}

/// Lying publisher processes: each bad segment or bad word gives the
/// subscriber a typed error (at attach, or at the read that meets it), in
/// bounded time, with every fd closed; never a crash, a hang or a wrong
/// delivery.
fn lying_publishers_give_typed_errors() {
    use shmsock_shm::{Error as ShmError, Violation};
    let lies = [
        Lie::Pipe,
        Lie::Unsealed,
        Lie::PolicyMismatch,
        Lie::TailMisaligned,
        Lie::TailBeyond,
        Lie::HugeRecord,
        Lie::WrongSeq,
        Lie::Scribbler,
    ];
    for lie in lies {
        let path = sock_path("liar");
        let child = {
            let path = path.clone();
            spawn(move |_| lying_publisher(&path, lie))
        };
        let r = match Subscriber::subscribe(path_ready(&path), SubscriberOptions::new()) {
            Err(e) => Err(e),
            Ok(mut sub) => {
                let mut buf = Vec::new();
                let mut r;
                let t = Instant::now();
                loop {
                    r = sub
                        .recv_timeout(&mut buf, Duration::from_secs(5))
                        .map(|m| m.seq);
                    // A scribbler may forge a valid-looking message now and
                    // then; it must end in a violation within the time.
                    if r.is_err() || t.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                r
            }
        };
        let ok = match lie {
            Lie::Pipe => matches!(r, Err(Error::Shm(ShmError::NotMemfd(_)))),
            Lie::Unsealed => matches!(r, Err(Error::Shm(ShmError::MissingSeals { .. }))),
            Lie::PolicyMismatch => matches!(
                r,
                Err(Error::Shm(ShmError::Protocol(
                    Violation::BadGeometry { .. }
                )))
            ),
            Lie::TailMisaligned => matches!(
                r,
                Err(Error::Shm(ShmError::Protocol(Violation::Misaligned {
                    value: 12
                })))
            ),
            Lie::TailBeyond => matches!(
                r,
                Err(Error::Shm(ShmError::Protocol(
                    Violation::TailBeyondCapacity { .. }
                )))
            ),
            Lie::HugeRecord => matches!(
                r,
                Err(Error::Shm(ShmError::Protocol(Violation::BadRecord { .. })))
            ),
            Lie::WrongSeq => matches!(
                r,
                Err(Error::Shm(ShmError::Protocol(Violation::BadSequence {
                    found: 5,
                    ..
                })))
            ),
            Lie::Scribbler => matches!(r, Err(Error::Shm(ShmError::Protocol(_)))),
        };
        assert!(ok, "{lie:?}: {r:?}");
        child.wait(Duration::from_secs(40));
        let _ = std::fs::remove_file(&path);
    }
}

/// Waits until the lying publisher's socket exists; returns the path.
fn path_ready(path: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < deadline, "publisher never bound {path:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    path.to_path_buf()
}

fn main() {
    common::run(&[
        (
            "bad_handshakes_and_control_bytes_are_dropped",
            bad_handshakes_and_control_bytes_are_dropped,
        ),
        (
            "block_one_to_eight_every_message",
            block_one_to_eight_every_message,
        ),
        (
            "drop_oldest_one_to_eight_counts_gaps",
            drop_oldest_one_to_eight_counts_gaps,
        ),
        (
            "killed_and_stopped_subscribers_do_not_stall_the_publisher",
            killed_and_stopped_subscribers_do_not_stall_the_publisher,
        ),
        (
            "hostile_subscribers_cannot_disturb_the_others",
            hostile_subscribers_cannot_disturb_the_others,
        ),
        (
            "join_and_leave_while_messages_flow",
            join_and_leave_while_messages_flow,
        ),
        (
            "killed_publisher_means_disconnected",
            killed_publisher_means_disconnected,
        ),
        (
            "lying_publishers_give_typed_errors",
            lying_publishers_give_typed_errors,
        ),
    ]);
}
