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
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_ADD_SEALS(seals)).unwrap();
    }
    fd
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
