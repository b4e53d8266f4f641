//! A watchdog for measured transfers: `alarm(2)` with a handler that says
//! so on stderr and leaves with `_exit(3)`.
//!
//! shmsock connections are measured in their default configuration, with
//! no call timeout (a timeout changes which wait path a `Block` reader
//! takes), so a peer that hangs would hang the run. The alarm turns that
//! into a loud failure; forked peers die with us (`PR_SET_PDEATHSIG`).
//!
//! The handler only calls `write(2)` and `_exit(2)`, both async-signal-safe.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::alarm;

use super::child::Result;

/// Exit status of a run stopped by the watchdog.
const EXIT_HUNG: i32 = 3;

/// What the armed watchdog guards (a transport and size), for the message.
static WHAT: [AtomicU8; 96] = [const { AtomicU8::new(0) }; 96];
static WHAT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Writes `bytes` to stderr from the signal handler.
fn write_stderr(bytes: &[u8]) {
    // SAFETY: write(2) is async-signal-safe; `bytes` is valid for its
    // length. A failed write changes nothing: we exit next.
    let _ = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

extern "C" fn on_alarm(_: libc::c_int) {
    write_stderr(b"\nshmsock bench: watchdog: a transfer hung (");
    let mut what = [0u8; 96];
    // Relaxed: written before the alarm was armed, in this thread.
    let n = WHAT_LEN.load(Ordering::Relaxed).min(what.len());
    for (b, w) in what.iter_mut().zip(&WHAT).take(n) {
        // Relaxed: as above.
        *b = w.load(Ordering::Relaxed);
    }
    write_stderr(&what[..n]);
    write_stderr(b"); aborting\n");
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
        Self::arm_for(timeout, "")
    }

    /// [`Watchdog::arm`], naming what it guards in the message it prints.
    ///
    /// # Errors
    /// If the handler cannot be installed.
    pub fn arm_for(timeout: Duration, what: &str) -> Result<Watchdog> {
        let what = what.as_bytes();
        let n = what.len().min(WHAT.len());
        for (w, &b) in WHAT.iter().zip(&what[..n]) {
            // Relaxed: read by the handler in this same thread.
            w.store(b, Ordering::Relaxed);
        }
        // Relaxed: as above.
        WHAT_LEN.store(n, Ordering::Relaxed);
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
