//! Hostile and unlucky peers during the handshake, each a real process:
//! silent clients and hang-up floods must not keep good clients out (the
//! listener drives handshakes concurrently), `Duration::MAX` timeouts must
//! not panic, our own fd exhaustion must not be blamed on an honest peer,
//! and peers in different PID namespaces must connect.
//!
//! Runs on the main thread only (harness = false), so forking is safe; the
//! harness checks each case for leaked fds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::harness as common;
use shmsock_testkit::peer::{self, raw_connect, send_signal, signal_pair};

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use shmsock::wire::RejectReason;
use shmsock::{Builder, Connection, Error};

const WAIT: Duration = Duration::from_secs(30);

fn path() -> String {
    peer::unique_path("shmsock-hs")
}

fn wait_signal(s: &mut std::os::unix::net::UnixStream) {
    peer::wait_signal(s, WAIT);
}

/// CPU time of this thread: unlike wall time, not inflated when the
/// scheduler preempts us (the flooders compete for the same cores).
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A good client: connects, sends `hello`, waits for `bye`.
fn good_client(p: String, hs: Duration) -> common::Child {
    common::spawn(move || {
        let mut c = Builder::new().handshake_timeout(hs).connect(&p).unwrap();
        c.send(b"hello").unwrap();
        assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"bye");
    })
}

fn finish_good(mut s: Connection) {
    assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"hello");
    s.send(b"bye").unwrap();
}

/// Regression (audit A): four clients that connect and never speak sat in
/// the backlog before two good ones; `accept` ran each handshake inline,
/// so the good clients waited for every silent one to time out.
fn silent_clients_do_not_block_good_ones() {
    let hs = Duration::from_secs(3);
    let p = path();
    let l = Builder::new().handshake_timeout(hs).bind(&p).unwrap();
    let (mut ours, mut theirs) = signal_pair();
    let p2 = p.clone();
    let silent = common::spawn(move || {
        let _socks: Vec<OwnedFd> = (0..4).map(|_| raw_connect(&p2)).collect();
        send_signal(&mut theirs);
        std::thread::sleep(WAIT);
    });
    wait_signal(&mut ours);
    let t = Instant::now();
    let goods = [good_client(p.clone(), hs), good_client(p.clone(), hs)];
    for _ in 0..2 {
        let r = l.accept();
        let took = t.elapsed();
        let s = r.unwrap_or_else(|e| panic!("accept after {took:?}: {e:?}"));
        assert!(took < hs / 3, "good client accepted only after {took:?}");
        finish_good(s);
    }
    for g in goods {
        g.wait(WAIT);
    }
    silent.kill();
}

/// Regression (audit A): with the listener non-blocking, one `accept` call
/// kept looping over a connect-and-hang-up flood (372 ms in the audit)
/// instead of returning to the caller's event loop. Each call must return
/// promptly, and a good client connecting during the flood must get in.
fn hangup_flood_keeps_accept_prompt() {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(Duration::from_secs(2))
        .bind(&p)
        .unwrap();
    l.set_nonblocking(true).unwrap();
    let (mut ours, theirs) = signal_pair();
    let floods: Vec<common::Child> = (0..4)
        .map(|_| {
            let p2 = p.clone();
            let mut theirs = theirs.try_clone().unwrap();
            common::spawn(move || {
                let t = Instant::now();
                let mut n = 0u64;
                while t.elapsed() < Duration::from_secs(2) {
                    // The backlog may be full: ignore EAGAIN.
                    let s = rustix::net::socket_with(
                        AddressFamily::UNIX,
                        SocketType::SEQPACKET,
                        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                        None,
                    )
                    .unwrap();
                    let addr = SocketAddrUnix::new_abstract_name(&p2.as_bytes()[1..]).unwrap();
                    let _ = rustix::net::connect(&s, &addr);
                    n += 1;
                    if n == 200 {
                        send_signal(&mut theirs);
                    }
                }
            })
        })
        .collect();
    drop(theirs);
    wait_signal(&mut ours);
    let good = good_client(p.clone(), Duration::from_secs(10));
    let t = Instant::now();
    let mut longest = Duration::ZERO;
    let mut longest_cpu = Duration::ZERO;
    // Keep accepting until the flood ends, timing every call.
    let mut conn = None;
    let mut good_after = None;
    while conn.is_none() || !floods.iter().all(common::child_done) {
        let c = Instant::now();
        let cpu = thread_cpu_time();
        let r = l.accept();
        longest_cpu = longest_cpu.max(thread_cpu_time().saturating_sub(cpu));
        longest = longest.max(c.elapsed());
        match r {
            Ok(s) => {
                assert!(conn.is_none(), "only one client completes a handshake");
                good_after = Some(t.elapsed());
                conn = Some(s);
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "good client never got in"
        );
    }
    eprintln!(
        "  longest accept {longest:?} ({longest_cpu:?} of CPU), good client in after {good_after:?}"
    );
    finish_good(conn.unwrap());
    good.wait(WAIT);
    for f in floods {
        f.wait(WAIT);
    }
    assert!(
        longest_cpu < Duration::from_millis(10),
        "one non-blocking accept worked for {longest_cpu:?} of CPU ({longest:?})"
    );
}

/// Regression (audit A): the example's single-threaded poll server (a
/// non-blocking listener in the poll set, `accept` when it is readable)
/// stalled an established client for the handshake timeout whenever a
/// silent client connected.
fn poll_server_not_stalled_by_silent_clients() {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(Duration::from_millis(500))
        .bind(&p)
        .unwrap();
    l.set_nonblocking(true).unwrap();
    let (mut ours, mut theirs) = signal_pair();
    let p2 = p.clone();
    let good = common::spawn(move || {
        let mut c = Builder::new().connect(&p2).unwrap();
        c.send(b"x").unwrap();
        assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"x");
        send_signal(&mut theirs);
        let t = Instant::now();
        let mut worst = Duration::ZERO;
        while t.elapsed() < Duration::from_millis(1500) {
            let r = Instant::now();
            c.send(b"ping").unwrap();
            assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"ping");
            worst = worst.max(r.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            worst < Duration::from_millis(150),
            "round trip stalled for {worst:?}"
        );
    });
    let p3 = p.clone();
    let mut silent: Option<common::Child> = None;
    let mut conns: Vec<Connection> = Vec::new();
    while !common::child_done(&good) {
        let mut i = 0;
        while i < conns.len() {
            let keep = loop {
                let v = match conns[i].try_recv() {
                    Ok(Some(m)) => m.to_vec(),
                    Ok(None) => break true,
                    Err(_) => break false,
                };
                if conns[i].send(&v).is_err() {
                    break false;
                }
            };
            if keep {
                i += 1;
            } else {
                conns.swap_remove(i);
            }
        }
        let mut fds = vec![PollFd::new(&l, PollFlags::IN)];
        for c in &conns {
            fds.push(PollFd::from_borrowed_fd(c.as_fd(), PollFlags::IN));
        }
        let _ = poll(
            &mut fds,
            Some(&rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            }),
        );
        let accept_ready = !fds[0].revents().is_empty();
        drop(fds);
        if accept_ready {
            // Silent clients time out with an error: keep serving.
            if let Ok(c) = l.accept() {
                conns.push(c);
            }
        }
        if silent.is_none() && wait_ready(&mut ours) {
            // The good client is established: now the silent ones come,
            // a new pair every 200 ms.
            let p4 = p3.clone();
            silent = Some(common::spawn(move || {
                let mut held = Vec::new();
                for _ in 0..10 {
                    held.push(raw_connect(&p4));
                    held.push(raw_connect(&p4));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }));
        }
    }
    good.wait(WAIT);
    if let Some(s) = silent {
        s.kill();
    }
}

/// Whether the one-byte signal has arrived (non-blocking).
fn wait_ready(s: &mut UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = matches!(s.read(&mut b), Ok(1));
    s.set_nonblocking(false).unwrap();
    r
}

/// Regression (audit B): `handshake_timeout(Duration::MAX)` panicked with
/// "overflow when adding duration to instant" on both sides.
fn duration_max_handshake_timeout() {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(Duration::MAX)
        .bind(&p)
        .unwrap();
    let p2 = p.clone();
    let child = common::spawn(move || {
        let mut c = Builder::new()
            .handshake_timeout(Duration::MAX)
            .connect(&p2)
            .unwrap();
        c.send(b"hello").unwrap();
        assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"bye");
    });
    finish_good(l.accept().unwrap());
    child.wait(WAIT);
    // The socket-pair entry points as well.
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let child = common::spawn(move || {
        let mut c = Builder::new()
            .handshake_timeout(Duration::MAX)
            .connect_socket(b)
            .unwrap();
        c.send(b"hello").unwrap();
        assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"bye");
    });
    let s = Builder::new()
        .handshake_timeout(Duration::MAX)
        .accept_socket(a)
        .unwrap();
    finish_good(s);
    child.wait(WAIT);
}

/// Lowers `RLIMIT_NOFILE` and fills the fd table so that exactly `free`
/// more fds can be opened.
fn leave_free_fds(free: usize) {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let limit = highest + 1 + free as u64;
    let mut lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    lim.current = Some(limit);
    rustix::process::setrlimit(rustix::process::Resource::Nofile, lim).unwrap();
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    for _ in 0..free {
        filler.pop();
    }
    std::mem::forget(filler); // keep the table full until the child exits
}

/// Regression (audit C): a server that could not install the fds of an
/// honest client's `Hello` (EMFILE) reported the client's
/// `ProtocolViolation::ControlTruncated` and sent it `Reject(Malformed)`.
fn our_fd_exhaustion_is_not_the_peers_fault() {
    let p = path();
    let (mut ours, mut theirs) = signal_pair();
    let p2 = p.clone();
    let server = common::spawn(move || {
        let l = Builder::new()
            .handshake_timeout(Duration::from_secs(10))
            .bind(&p2)
            .unwrap();
        // Room for the accepted socket only: the Hello's two fds cannot be
        // installed.
        leave_free_fds(1);
        send_signal(&mut theirs);
        match l.accept() {
            Err(Error::Io {
                op: "recvmsg",
                source,
                ..
            }) if source.raw_os_error() == Some(libc::EMFILE) => {}
            other => panic!("server: expected Io(EMFILE), got {other:?}"),
        }
    });
    wait_signal(&mut ours);
    let r = Builder::new()
        .handshake_timeout(Duration::from_secs(10))
        .connect(&p);
    server.wait(WAIT);
    match r {
        Err(Error::Rejected(RejectReason::Resources)) => {}
        other => panic!("client: expected Rejected(Resources), got {other:?}"),
    }
}

/// Regression (audit D): a peer in another PID namespace is reported by
/// `SO_PEERCRED` with pid 0, which failed the handshake with
/// `Io { op: "SO_PEERCRED", .. }` on the side that cannot see the other.
/// Both directions: the client in a new PID namespace, then the server.
fn peers_in_different_pid_namespaces() {
    for server_inside in [false, true] {
        let p = path();
        let l = (!server_inside).then(|| Builder::new().bind(&p).unwrap());
        let (mut ours, mut theirs) = signal_pair();
        let p2 = p.clone();
        let child = common::spawn(move || {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
                theirs.write_all(b"s").unwrap();
                eprintln!("  skipped: unshare(CLONE_NEWPID) failed: {e}");
                return;
            }
            // The grandchild is pid 1 of the new namespace; it cannot see us.
            let inner = common::spawn(move || {
                assert_eq!(nix::unistd::getpid().as_raw(), 1);
                if server_inside {
                    let l = Builder::new().bind(&p2).unwrap();
                    send_signal(&mut theirs);
                    let mut s = l.accept().unwrap();
                    assert_eq!(s.peer_credentials().pid, None, "pid of an outside client");
                    assert_eq!(s.recv_timeout(WAIT).unwrap().to_vec(), b"hello");
                    s.send(b"bye").unwrap();
                    assert!(s.recv_timeout(WAIT).unwrap_err().is_disconnected());
                } else {
                    send_signal(&mut theirs);
                    let mut c = Builder::new().connect(&p2).unwrap();
                    assert_eq!(c.peer_credentials().pid, None, "pid of an outside server");
                    c.send(b"hello").unwrap();
                    assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"bye");
                }
            });
            inner.wait(WAIT);
        });
        let mut b = [0u8; 1];
        ours.set_read_timeout(Some(WAIT)).unwrap();
        ours.read_exact(&mut b).unwrap();
        if b == *b"s" {
            child.wait(WAIT);
            println!("  skipped (no permission for a PID namespace)");
            return;
        }
        if let Some(l) = l {
            let s = l.accept().unwrap();
            // We see the grandchild (our namespace is its parent's).
            assert!(s.peer_credentials().pid.is_some_and(|p| p > 1));
            finish_good(s);
        } else {
            let mut c = Builder::new().connect(&p).unwrap();
            assert!(c.peer_credentials().pid.is_some_and(|p| p > 1));
            c.send(b"hello").unwrap();
            assert_eq!(c.recv_timeout(WAIT).unwrap().to_vec(), b"bye");
        }
        child.wait(WAIT);
    }
}

/// Whether `fd` is readable within `timeout`.
fn readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    poll(&mut fds, Some(&ts)).unwrap() > 0
}

/// Reads one datagram from `s` (blocking up to `WAIT`) and decodes it.
fn recv_reject(s: &OwnedFd) -> Option<RejectReason> {
    if !readable(s.as_fd(), WAIT) {
        return None;
    }
    let mut buf = [0u8; 64];
    let (n, _) = rustix::net::recv(s, &mut buf, rustix::net::RecvFlags::DONTWAIT).ok()?;
    match shmsock::wire::Control::decode(&buf[..n]) {
        Ok(shmsock::wire::Control::Reject { reason, .. }) => Some(reason),
        _ => None,
    }
}

/// The event-loop API: `try_accept` never waits, `accept_timeout` gives
/// up, and the listener's fd becomes readable when a client connects and
/// when a pending handshake's deadline passes (the silent client is then
/// rejected and reported as a timeout).
fn try_accept_accept_timeout_and_readiness() {
    let hs = Duration::from_millis(300);
    let p = path();
    let l = Builder::new().handshake_timeout(hs).bind(&p).unwrap();
    assert!(l.try_accept().unwrap().is_none());
    let t = Instant::now();
    let r = l.accept_timeout(Duration::from_millis(100));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(t.elapsed() >= Duration::from_millis(100) && t.elapsed() < Duration::from_secs(2));
    assert!(
        !readable(l.as_fd(), Duration::ZERO),
        "idle listener readable"
    );
    let (mut ours, mut theirs) = signal_pair();
    let p2 = p.clone();
    let silent = common::spawn(move || {
        let s = raw_connect(&p2);
        send_signal(&mut theirs);
        assert_eq!(recv_reject(&s), Some(RejectReason::Malformed));
    });
    wait_signal(&mut ours);
    let connected = Instant::now();
    assert!(
        readable(l.as_fd(), WAIT),
        "a waiting client does not wake the loop"
    );
    assert!(l.try_accept().unwrap().is_none());
    assert!(
        !readable(l.as_fd(), Duration::ZERO),
        "nothing to do, yet readable"
    );
    // The deadline wakes the loop.
    assert!(
        readable(l.as_fd(), WAIT),
        "the deadline does not wake the loop"
    );
    assert!(connected.elapsed() >= hs - Duration::from_millis(20));
    let r = loop {
        match l.try_accept() {
            Ok(None) => assert!(connected.elapsed() < WAIT),
            other => break other,
        }
    };
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    silent.wait(WAIT);
    assert!(
        !readable(l.as_fd(), Duration::ZERO),
        "readable after the expiry"
    );
    // A good client through the event-loop API.
    let good = good_client(p.clone(), WAIT);
    let conn = loop {
        assert!(readable(l.as_fd(), WAIT));
        if let Some(c) = l.try_accept().unwrap() {
            break c;
        }
    };
    finish_good(conn);
    good.wait(WAIT);
}

/// A hundred silent clients: at most 64 handshakes are kept pending (the
/// oldest are dropped with a Reject), and a good client behind them all
/// is still accepted at once.
fn pending_handshakes_are_bounded() {
    let p = path();
    let l = Builder::new()
        .handshake_timeout(Duration::from_secs(20))
        .bind(&p)
        .unwrap();
    let (mut ours, mut theirs) = signal_pair();
    let p2 = p.clone();
    let hoarder = common::spawn(move || {
        let socks: Vec<OwnedFd> = (0..100).map(|_| raw_connect(&p2)).collect();
        send_signal(&mut theirs);
        // Wait until the parent has accepted the good client.
        let mut b = [0u8; 1];
        theirs.read_exact(&mut b).unwrap();
        let rejected = socks
            .iter()
            .filter(|s| readable(s.as_fd(), Duration::ZERO))
            .count();
        assert!(rejected >= 36, "only {rejected} of 100 were dropped");
        assert_eq!(recv_reject(&socks[0]), Some(RejectReason::Malformed));
    });
    wait_signal(&mut ours);
    let before = common::fd_count();
    let good = good_client(p.clone(), WAIT);
    let t = Instant::now();
    let s = l.accept_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    let held = common::fd_count() - before;
    assert!(held <= 64 + 8, "{held} fds held for pending handshakes");
    finish_good(s);
    good.wait(WAIT);
    send_signal(&mut ours);
    hoarder.wait(WAIT);
}

fn main() {
    common::run(&[
        (
            "silent_clients_do_not_block_good_ones",
            silent_clients_do_not_block_good_ones,
        ),
        (
            "hangup_flood_keeps_accept_prompt",
            hangup_flood_keeps_accept_prompt,
        ),
        (
            "poll_server_not_stalled_by_silent_clients",
            poll_server_not_stalled_by_silent_clients,
        ),
        (
            "try_accept_accept_timeout_and_readiness",
            try_accept_accept_timeout_and_readiness,
        ),
        (
            "pending_handshakes_are_bounded",
            pending_handshakes_are_bounded,
        ),
        (
            "duration_max_handshake_timeout",
            duration_max_handshake_timeout,
        ),
        (
            "our_fd_exhaustion_is_not_the_peers_fault",
            our_fd_exhaustion_is_not_the_peers_fault,
        ),
        (
            "peers_in_different_pid_namespaces",
            peers_in_different_pid_namespaces,
        ),
    ]);
}
