//! A watchdog for measured transfers: `alarm(2)` with a handler that says
//! so on stderr and leaves with `_exit(3)`.
//!
//! shmsock connections are measured in their default configuration, with
//! no call timeout (a timeout changes which wait path a `Block` reader
//! takes), so a peer that hangs would hang the run. The alarm turns that
//! into a loud failure; forked peers die with us (`PR_SET_PDEATHSIG`).
//!
//! The handler only calls `write(2)` and `_exit(2)`, both async-signal-safe.

use std::sync::Once;
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::alarm;

use super::child::Result;

/// Exit status of a run stopped by the watchdog.
const EXIT_HUNG: i32 = 3;

extern "C" fn on_alarm(_: libc::c_int) {
    const MSG: &[u8] = b"\nshmsock bench: watchdog: a transfer hung; aborting\n";
    // SAFETY: write(2) is async-signal-safe; MSG is a static buffer of
    // MSG.len() bytes. A failed write changes nothing: we exit next.
    let _ = unsafe { libc::write(2, MSG.as_ptr().cast(), MSG.len()) };
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(EXIT_HUNG) }
}

static INSTALL: Once = Once::new();

/// An armed alarm; disarmed on drop.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Watchdog(());

impl Watchdog {
    /// Arms the alarm for `timeout` (whole seconds, at least 1), installing
    /// the handler the first time.
    ///
    /// # Errors
    /// If the handler cannot be installed.
    pub fn arm(timeout: Duration) -> Result<Watchdog> {
        let mut err = None;
        INSTALL.call_once(|| {
            let action = SigAction::new(
                SigHandler::Handler(on_alarm),
                SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: the handler only calls async-signal-safe functions
            // (see `on_alarm`), and SIGALRM is used for nothing else here.
            if let Err(e) = unsafe { sigaction(Signal::SIGALRM, &action) } {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(format!("sigaction(SIGALRM): {e}").into());
        }
        let secs = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX).max(1);
        alarm::set(secs);
        Ok(Watchdog(()))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        alarm::cancel();
    }
}
