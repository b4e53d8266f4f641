//! Building blocks of hostile peers: they speak the protocol by hand, so
//! they can lie. Raw `SOCK_SEQPACKET` sockets, raw `SCM_RIGHTS`, memfds
//! with chosen seals and backing, control messages encoded with the crate's
//! own `wire` types, and a one-byte signal between processes.

use std::io::{IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::fcntl::SealFlag;
use rustix::net::{
    sendmsg, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use shmsock::wire::{Control, MAX_CONTROL_LEN};

/// The size seals alone: a ring segment needs a write seal on top.
pub const SIZE_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);
/// The seals of a good ring segment.
pub const RING_SEALS: SealFlag = SIZE_SEALS.union(SealFlag::F_SEAL_FUTURE_WRITE);

/// A fresh abstract socket name (`@prefix-pid-n`), unique in this process.
pub fn unique_path(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "@{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The abstract address of `p` (`@name`).
fn abstract_addr(p: &str) -> SocketAddrUnix {
    let name = p.strip_prefix('@').expect("an abstract name starts with @");
    SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap()
}

fn seqpacket_socket() -> OwnedFd {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

/// A raw `SOCK_SEQPACKET` connection to the abstract socket `p`.
pub fn raw_connect(p: &str) -> OwnedFd {
    let s = seqpacket_socket();
    rustix::net::connect(&s, &abstract_addr(p)).unwrap();
    s
}

/// A raw listening `SOCK_SEQPACKET` socket bound to the abstract name `p`.
pub fn raw_listen(p: &str) -> OwnedFd {
    let l = seqpacket_socket();
    rustix::net::bind(&l, &abstract_addr(p)).unwrap();
    rustix::net::listen(&l, 16).unwrap();
    l
}

/// A connected `SOCK_SEQPACKET` pair.
pub fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

/// Sends `bytes` with `fds` (up to 16) as one datagram, no SIGPIPE.
pub fn raw_send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(fds)));
    }
    sendmsg(sock, &[IoSlice::new(bytes)], &mut cmsg, SendFlags::NOSIGNAL).unwrap();
}

/// The bytes of control message `c`.
pub fn encode(c: Control) -> Vec<u8> {
    let mut b = [0u8; MAX_CONTROL_LEN];
    let n = c.encode(&mut b);
    b[..n].to_vec()
}

/// A memfd of `len` bytes of which the first `backed` are allocated, with
/// `seals` (a ring must be fully backed: pass `backed == len` so that a
/// case is refused for what it means, not for being sparse).
pub fn memfd(len: u64, backed: u64, seals: SealFlag) -> OwnedFd {
    let fd = nix::sys::memfd::memfd_create(
        c"hostile",
        nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING | nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, len as i64).unwrap();
    if backed > 0 {
        nix::fcntl::fallocate(&fd, nix::fcntl::FallocateFlags::empty(), 0, backed as i64).unwrap();
    }
    if !seals.is_empty() {
        add_seals(&fd, seals);
    }
    fd
}

/// Adds `seals`, retrying `EBUSY`: `F_SEAL_WRITE` fails with it while the
/// kernel still holds a transient reference to a page (a per-CPU LRU batch
/// after `fallocate`, for one), which a busy machine makes last longer. A
/// hostile peer that panics here is a peer that disconnects, and the case
/// under test would be refused for the wrong reason (seen in CI, 2026-11-27).
pub fn add_seals(fd: &OwnedFd, seals: SealFlag) {
    let mut backoff = Duration::from_millis(1);
    loop {
        match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)) {
            Ok(_) => return,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EBUSY) if backoff < Duration::from_secs(2) => {
                std::thread::sleep(backoff);
                backoff *= 2;
            }
            Err(e) => panic!("F_ADD_SEALS({seals:?}): {e}"),
        }
    }
}

/// A pair for one-byte "ready" signals between a child and its parent.
pub fn signal_pair() -> (UnixStream, UnixStream) {
    UnixStream::pair().unwrap()
}

/// Waits up to `timeout` for a signal from [`send_signal`].
pub fn wait_signal(s: &mut UnixStream, timeout: Duration) {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
}

/// Sends a one-byte signal.
pub fn send_signal(s: &mut UnixStream) {
    s.write_all(b"!").unwrap();
}

/// A client that completes the handshake by hand and keeps raw access to
/// both segments, to attack the server through shared memory. It can write
/// only its own segment (`ours`: its ring to the server and its consumer
/// words of the server's ring); the server's segment it maps read-only, as
/// the kernel leaves it no other choice.
#[derive(Debug)]
pub struct RawClient {
    /// The connection's socket (data wake-ups go out here).
    pub sock: OwnedFd,
    /// Our end of the back channel (space wake-ups go out here).
    pub back: OwnedFd,
    /// Our segment: our ring and our consumer words of theirs.
    pub ours: std::sync::Arc<shmsock::shm::Segment>,
    /// Our ring's producer.
    pub prod: shmsock::shm::ring::Producer,
    /// The server's ring, read as a consumer.
    pub theirs: shmsock::shm::ring::Consumer,
    /// The server's segment, mapped read-only.
    pub theirs_seg: std::sync::Arc<shmsock::shm::Segment>,
}

/// Connects to `p` and completes the client handshake by hand with a ring
/// of `cap` bytes.
pub fn raw_handshake(p: &str, cap: u64) -> RawClient {
    use shmsock::shm::ring::{self, segment_size, Consumer};
    use shmsock::shm::{Segment, SegmentOptions};
    use shmsock::wire::Hello;
    use std::os::fd::AsFd;
    use std::sync::Arc;

    let sock = raw_connect(p);
    let (ours, prod) = ring::create_segment(c"hostile", cap, SegmentOptions::default()).unwrap();
    let (back, bc) = seqpacket_pair();
    let hello = encode(Control::Hello(Hello {
        ring_capacity: cap,
        max_message: 1 << 30,
        flags: 0,
    }));
    raw_send(sock.as_fd(), &hello, &[ours.fd(), bc.as_fd()]);
    drop(bc);
    // Receive the welcome and the server's ring.
    let mut buf = [0u8; 64];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let r = rustix::net::recvmsg(
        &sock,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut cmsg,
        rustix::net::RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let Control::Welcome(w) = Control::decode(&buf[..r.bytes]).unwrap() else {
        panic!("no welcome")
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    let theirs_seg = Arc::new(
        Segment::attach_read_only(fds.pop().unwrap(), segment_size(w.ring_capacity), 1 << 30)
            .unwrap(),
    );
    RawClient {
        sock,
        back,
        prod: prod.with_consumer_words(theirs_seg.clone()).unwrap(),
        theirs: Consumer::attach(theirs_seg.clone(), ours.clone()).unwrap(),
        ours,
        theirs_seg,
    }
}

impl RawClient {
    /// Writes a word of our own segment (the only one we can write).
    pub fn poke(&self, off: usize, val: u64) {
        assert!(off + 8 <= self.ours.len() && off.is_multiple_of(8));
        // SAFETY: in bounds and 8-aligned (checked); the word is shared
        // memory, so it is written atomically.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ours.as_ptr().add(off).cast()) }
            .store(val, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sends the server a data wake-up datagram (never blocks).
    pub fn wake(&self) {
        let _ = rustix::net::send(
            &self.sock,
            &encode(Control::WakeData),
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        );
    }
}
