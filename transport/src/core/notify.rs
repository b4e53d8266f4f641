//! Waking a parked peer: redeeming the ring's [`Wake`] token. A peer that
//! parked for a futex wake-up (a blocking call) gets a `FUTEX_WAKE` on our
//! wake word, which the token does itself; one that parked for a socket
//! wake-up (it sleeps in `recvmsg`/`poll`, or an event loop or tokio polls
//! the fd) gets a control datagram on the connection's socket. Owed only
//! when the ring's park word said the peer is parked (SYNC POINT
//! `park-dekker`, `docs/design.md`), so a busy stream costs no syscalls.

use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use shmsock_shm::ring::Wake;

use crate::fdpass::send_control;
use crate::wire::Control;

/// Pays the wake-up owed to the peer's reader parked on an empty ring, if
/// any. A full socket buffer already holds wake-ups for it, which counts
/// as success.
pub(crate) fn wake_data(wake: Wake, sock: BorrowedFd<'_>) -> Result<(), Errno> {
    wake.redeem(|| send_control(sock, &Control::WakeData, &[], true).map(drop))
}

/// Wakes the peer's writer parked on a full ring. Best effort: the callers
/// ignore a failure (a dead peer no longer waits, and shows on our next
/// call).
pub(crate) fn wake_space(wake: Wake, sock: BorrowedFd<'_>) -> Result<(), Errno> {
    wake.redeem(|| send_control(sock, &Control::WakeSpace, &[], true).map(drop))
}
