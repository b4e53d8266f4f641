//! Asymmetric fences across processes: `membarrier(2)` with
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
//!
//! With [`Fences::Asymmetric`](crate::ring::Fences::Asymmetric) a ring's
//! hot path (publish, release) has no fence instruction; the side that
//! parks calls `global_barrier` (crate-private), which makes every CPU that runs a thread
//! of a *registered* process execute a full memory barrier before the call
//! returns. `MEMBARRIER_CMD_PRIVATE_EXPEDITED` would only reach our own
//! process; the waker is the peer, so both processes register
//! ([`register`]) and the parker uses the global command. The argument that
//! no wake-up is lost is in `docs/design.md` ("Asymmetric fences").
//!
//! Measured on the development VM (Linux 6.18, 2 vCPUs): see
//! `docs/performance.md`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};

/// The process id that registered (0: none yet). Keyed by pid because a
/// registration belongs to the address space: a child forked after it
/// inherits this memory but not the registration, and must register again.
static REGISTERED_PID: AtomicU32 = AtomicU32::new(0);
/// The kernel lacks the commands (true for children too).
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Registers this process for `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (once per
/// process; later calls return the first answer). Returns whether the
/// kernel supports the command and the registration succeeded: only then
/// may this process skip the hot-path fences.
pub fn register() -> bool {
    let pid = std::process::id();
    // Relaxed: the state only caches the answer of an idempotent syscall;
    // two threads racing here both register, which the kernel allows.
    if REGISTERED_PID.load(Ordering::Relaxed) == pid {
        return true;
    }
    // Relaxed: as above.
    if UNAVAILABLE.load(Ordering::Relaxed) {
        return false;
    }
    let q = membarrier_query();
    if !q.contains(MembarrierQuery::GLOBAL_EXPEDITED | MembarrierQuery::REGISTER_GLOBAL_EXPEDITED) {
        // Relaxed: as above.
        UNAVAILABLE.store(true, Ordering::Relaxed);
        return false;
    }
    if membarrier(MembarrierCommand::RegisterGlobalExpedited).is_err() {
        return false;
    }
    // Relaxed: as above.
    REGISTERED_PID.store(pid, Ordering::Relaxed);
    true
}

/// Whether [`register`] succeeded in this process (not in a parent it was
/// forked from).
pub fn registered() -> bool {
    // Relaxed: as in `register`.
    REGISTERED_PID.load(Ordering::Relaxed) == std::process::id()
}

/// The parking side's heavy barrier: `MEMBARRIER_CMD_GLOBAL_EXPEDITED`,
/// plus a SeqCst fence for this thread. Should the syscall fail (it cannot
/// once the kernel listed the command in its query), the fence alone is
/// what remains, and a lost wake-up is then bounded by the sleeper's slice.
pub(crate) fn global_barrier() {
    std::sync::atomic::fence(Ordering::SeqCst);
    let _ = membarrier(MembarrierCommand::GlobalExpedited);
}
