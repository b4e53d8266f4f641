//! Pinning the two benchmark processes to different cores.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use crate::fork::Result;

/// The first two cores this process may run on, if there are two.
///
/// # Errors
/// If `sched_getaffinity` fails.
pub fn two_cores() -> Result<Option<(usize, usize)>> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?;
    let mut allowed = (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
    Ok(match (allowed.next(), allowed.next()) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    })
}

/// Pins the calling process (its only thread) to `core`.
///
/// # Errors
/// If the core is out of range or `sched_setaffinity` fails.
pub fn pin_to(core: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(core)
        .map_err(|e| format!("core {core} out of range: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| format!("sched_setaffinity(core {core}): {e}"))?;
    Ok(())
}

/// The set of cores this process may run on now (to restore it later).
///
/// # Errors
/// If `sched_getaffinity` fails.
pub fn current() -> Result<CpuSet> {
    Ok(sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?)
}

/// Lets the calling process run on the cores of `set` again.
///
/// # Errors
/// If `sched_setaffinity` fails.
pub fn restore(set: &CpuSet) -> Result<()> {
    sched_setaffinity(Pid::from_raw(0), set).map_err(|e| format!("sched_setaffinity: {e}"))?;
    Ok(())
}
