//! Asymmetric fences across processes: `membarrier(2)` with
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
//!
//! With [`Fences::Asymmetric`](crate::ring::Fences::Asymmetric) a ring's
//! hot path (publish, release) has no fence instruction; the side that
//! parks calls [`global_barrier`], which makes every CPU that runs a thread
//! of a *registered* process execute a full memory barrier before the call
//! returns. `MEMBARRIER_CMD_PRIVATE_EXPEDITED` would only reach our own
//! process; the waker is the peer, so both processes register
//! ([`register`]) and the parker uses the global command. The argument that
//! no wake-up is lost is in `docs/design.md` ("Asymmetric fences").
//!
//! Measured on the development VM (Linux 6.18, 2 vCPUs): see
//! `docs/performance.md`.

use std::sync::atomic::{AtomicU8, Ordering};

use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};

/// 0: not tried yet; 1: registered; 2: not available.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Registers this process for `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (once per
/// process; later calls return the first answer). Returns whether the
/// kernel supports the command and the registration succeeded: only then
/// may this process skip the hot-path fences.
pub fn register() -> bool {
    // Relaxed: the state only caches the answer of an idempotent syscall;
    // two threads racing here both register, which the kernel allows.
    match STATE.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let q = membarrier_query();
    let ok = q
        .contains(MembarrierQuery::GLOBAL_EXPEDITED | MembarrierQuery::REGISTER_GLOBAL_EXPEDITED)
        && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok();
    // Relaxed: as above.
    STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    ok
}

/// Whether [`register`] succeeded in this process.
pub fn registered() -> bool {
    // Relaxed: as in `register`.
    STATE.load(Ordering::Relaxed) == 1
}

/// The parking side's heavy barrier: `MEMBARRIER_CMD_GLOBAL_EXPEDITED`,
/// plus a SeqCst fence for this thread. Should the syscall fail (it cannot
/// once the kernel listed the command in its query), the fence alone is
/// what remains, and a lost wake-up is then bounded by the sleeper's slice.
pub(crate) fn global_barrier() {
    std::sync::atomic::fence(Ordering::SeqCst);
    let _ = membarrier(MembarrierCommand::GlobalExpedited);
}
