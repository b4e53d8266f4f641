//! Waking a parked peer. A wake-up today is a control datagram on the
//! connection's socket (the peer sleeps in `recvmsg`/`poll` on it, or an
//! event loop polls the fd). Sent only when the ring's park flag said the
//! peer is parked (SYNC POINT `park-dekker`, `docs/design.md`), so a busy
//! stream costs no syscalls.

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

use crate::fdpass::send_control;
use crate::wire::Control;

/// Wakes the peer's reader parked on an empty ring. A full socket buffer
/// already holds wake-ups for it, which counts as success.
pub(crate) fn wake_data(sock: BorrowedFd<'_>) -> Result<(), Errno> {
    send_control(sock, &Control::WakeData, &[], true).map(drop)
}

/// Wakes the peer's writer parked on a full ring. Best effort: the callers
/// ignore a failure (a dead peer no longer waits, and shows on our next
/// call).
pub(crate) fn wake_space(sock: BorrowedFd<'_>) -> Result<(), Errno> {
    send_control(sock, &Control::WakeSpace, &[], true).map(drop)
}
