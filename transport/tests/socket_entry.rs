//! The handshake over an already connected socket
//! (`Builder::connect_socket` / `Builder::accept_socket`), as a broker's
//! introduction uses it: round trip, non-blocking sockets, wrong socket
//! types, and the handshake timeout on a silent peer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use shmsock_transport::{Builder, Error};

fn pair(ty: SocketType, flags: SocketFlags) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::UNIX, ty, flags | SocketFlags::CLOEXEC, None).unwrap()
}

#[test]
fn round_trip_over_nonblocking_pair() {
    // Non-blocking ends (as a broker's event loop may hand them over): the
    // entry points switch them to blocking, so blocking recv works.
    let (a, b) = pair(SocketType::SEQPACKET, SocketFlags::NONBLOCK);
    let server = std::thread::spawn(move || {
        let mut s = Builder::new().accept_socket(a).unwrap();
        let m = s.recv_timeout(Duration::from_secs(20)).unwrap().to_vec();
        s.send(&m).unwrap();
    });
    let mut c = Builder::new().connect_socket(b).unwrap();
    c.send(b"over a socket pair").unwrap();
    assert_eq!(
        c.recv_timeout(Duration::from_secs(20)).unwrap().to_vec(),
        b"over a socket pair"
    );
    server.join().unwrap();
}

#[test]
fn stream_and_datagram_sockets_refused() {
    for ty in [SocketType::STREAM, SocketType::DGRAM] {
        let (a, b) = pair(ty, SocketFlags::empty());
        assert!(
            matches!(Builder::new().connect_socket(a), Err(Error::Config(_))),
            "{ty:?} accepted by connect_socket"
        );
        assert!(
            matches!(Builder::new().accept_socket(b), Err(Error::Config(_))),
            "{ty:?} accepted by accept_socket"
        );
    }
    // Not a socket at all.
    let f: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    assert!(matches!(
        Builder::new().connect_socket(f),
        Err(Error::Io { .. })
    ));
}

#[test]
fn silent_peer_times_out_on_both_sides() {
    let t = Duration::from_millis(200);
    // Server side: the client never says Hello.
    let (a, _silent) = pair(SocketType::SEQPACKET, SocketFlags::empty());
    let start = Instant::now();
    let r = Builder::new().handshake_timeout(t).accept_socket(a);
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(start.elapsed() >= t);
    // Client side: the server never answers.
    let (b, _silent) = pair(SocketType::SEQPACKET, SocketFlags::empty());
    let start = Instant::now();
    let r = Builder::new().handshake_timeout(t).connect_socket(b);
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(start.elapsed() >= t);
}

#[test]
fn peer_gone_is_disconnected() {
    let (a, b) = pair(SocketType::SEQPACKET, SocketFlags::empty());
    drop(b);
    assert!(matches!(
        Builder::new().accept_socket(a),
        Err(Error::Disconnected)
    ));
    let (a, b) = pair(SocketType::SEQPACKET, SocketFlags::empty());
    drop(b);
    let r = Builder::new().connect_socket(a);
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}
