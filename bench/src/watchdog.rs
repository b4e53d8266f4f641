//! A watchdog for measured transfers: `alarm(2)` with a handler that says
//! so on stderr.
//!
//! shmsock connections are measured in their default configuration, with
//! no call timeout (a timeout changes which wait path a `Block` reader
//! takes), so a peer that hangs would hang the run. Two kinds of guard:
//!
//! - [`Watchdog::arm`] / [`Watchdog::arm_for`]: the run cannot recover;
//!   the handler leaves with `_exit(3)` (forked peers die with us,
//!   `PR_SET_PDEATHSIG`).
//! - [`Watchdog::arm_killing`]: the guarded transfer's peer processes are
//!   known. The handler kills them (`SIGKILL`) and marks the guard
//!   [fired](Watchdog::fired); with its peers dead, the measuring side's
//!   blocked call fails (a closed socket, shmsock's `Disconnected`, the
//!   iceoryx2 link's own checks of [`fired`]), the caller reports the row
//!   as hung ([`Hung`]) and the run goes on. Should the measuring side
//!   still not come back within [`GRACE`], a second alarm leaves with
//!   `_exit(3)` as before.
//!
//! The handler only calls `write(2)`, `kill(2)`, `alarm(2)` and
//! `_exit(2)`, all async-signal-safe. It runs in the thread that armed it
//! (the bench's measuring process is single-threaded: it forks), so the
//! statics below are shared with it through plain atomics.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{alarm, Pid};

use super::child::{BoxError, Result};

/// Exit status of a run stopped by the watchdog.
pub const EXIT_HUNG: i32 = 3;

/// How long the measuring side has, after the peers of a hung transfer
/// were killed, to come back before the run is aborted.
pub const GRACE: Duration = Duration::from_secs(10);

/// What the armed watchdog guards (a transport and size), for the message.
static WHAT: [AtomicU8; 96] = [const { AtomicU8::new(0) }; 96];
static WHAT_LEN: AtomicUsize = AtomicUsize::new(0);
/// Peer processes the armed watchdog kills when it fires (0: none).
static VICTIMS: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];
/// Whether the armed watchdog kills peers (else it aborts the run).
static RECOVERABLE: AtomicBool = AtomicBool::new(false);
/// Whether the armed watchdog has fired.
static FIRED: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` to stderr from the signal handler.
fn write_stderr(bytes: &[u8]) {
    // SAFETY: write(2) is async-signal-safe; `bytes` is valid for its
    // length. A failed write changes nothing.
    let _ = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// Writes what the watchdog guards to stderr from the signal handler.
fn write_what() {
    let mut what = [0u8; 96];
    // Relaxed: written before the alarm was armed, in this thread.
    let n = WHAT_LEN.load(Ordering::Relaxed).min(what.len());
    for (b, w) in what.iter_mut().zip(&WHAT).take(n) {
        // Relaxed: as above.
        *b = w.load(Ordering::Relaxed);
    }
    write_stderr(&what[..n]);
}

fn abort_run() -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(EXIT_HUNG) }
}

extern "C" fn on_alarm(_: libc::c_int) {
    // Relaxed (all the loads and stores here): the handler runs in the
    // thread that armed the watchdog and stored these.
    let recoverable = RECOVERABLE.load(Ordering::Relaxed);
    if !recoverable || FIRED.swap(true, Ordering::Relaxed) {
        write_stderr(b"\nshmsock bench: watchdog: a transfer hung (");
        write_what();
        if recoverable {
            write_stderr(b") and did not come back after its peers were killed; aborting\n");
        } else {
            write_stderr(b"); aborting\n");
        }
        abort_run();
    }
    write_stderr(b"\nshmsock bench: watchdog: a transfer hung (");
    write_what();
    write_stderr(b"); killing its peer processes, skipping the row\n");
    for v in &VICTIMS {
        let pid = v.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe. The pid is a child of
            // ours that has not been reaped (the guard that registered it
            // is alive), so it cannot name another process.
            let _ = unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // SAFETY: alarm(2) is async-signal-safe. The second alarm aborts the
    // run if the measuring side does not come back.
    unsafe { libc::alarm(GRACE.as_secs() as libc::c_uint) };
}

static INSTALL: Once = Once::new();

/// An armed alarm; disarmed on drop.
#[must_use = "the watchdog is disarmed when dropped"]
pub struct Watchdog(());

impl Watchdog {
    /// Arms the alarm for `timeout` (whole seconds, at least 1), installing
    /// the handler the first time. When it fires, the run is aborted.
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
        Self::arm_with(timeout, what, &[])
    }

    /// Arms the alarm for `timeout`; when it fires, the processes `peers`
    /// are killed (`SIGKILL`), [`Watchdog::fired`] turns true and the run
    /// goes on (for [`GRACE`] at most, if the caller does not come back).
    /// The caller must not reap `peers` while the guard lives.
    ///
    /// # Errors
    /// If the handler cannot be installed, or `peers` is empty or too long.
    pub fn arm_killing(timeout: Duration, what: &str, peers: &[Pid]) -> Result<Watchdog> {
        if peers.is_empty() || peers.len() > VICTIMS.len() {
            return Err(format!(
                "watchdog: {} peer processes (1..={} supported)",
                peers.len(),
                VICTIMS.len()
            )
            .into());
        }
        Self::arm_with(timeout, what, peers)
    }

    fn arm_with(timeout: Duration, what: &str, peers: &[Pid]) -> Result<Watchdog> {
        // No alarm may be pending while the statics change.
        alarm::cancel();
        let what = what.as_bytes();
        let n = what.len().min(WHAT.len());
        // Relaxed (every store here): read by the handler in this same
        // thread.
        for (w, &b) in WHAT.iter().zip(&what[..n]) {
            w.store(b, Ordering::Relaxed);
        }
        WHAT_LEN.store(n, Ordering::Relaxed);
        for (i, v) in VICTIMS.iter().enumerate() {
            v.store(peers.get(i).map_or(0, |p| p.as_raw()), Ordering::Relaxed);
        }
        RECOVERABLE.store(!peers.is_empty(), Ordering::Relaxed);
        FIRED.store(false, Ordering::Relaxed);
        let mut err = None;
        INSTALL.call_once(|| {
            // No SA_RESTART: a blocking call the alarm interrupts returns
            // EINTR (std's read_exact/write_all and shmsock retry it; the
            // iceoryx2 link fails and checks `fired`).
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

    /// Whether this guard's alarm fired (its peers were killed).
    pub fn fired(&self) -> bool {
        fired()
    }
}

/// Whether the armed watchdog has fired: the transfer it guards hung and
/// its peers were killed. Loops that wait for a peer without a syscall
/// the alarm interrupts (busy-polling, iceoryx2's publisher retrying on a
/// full queue) check it to give up.
pub fn fired() -> bool {
    // Relaxed: set by the signal handler in this thread.
    FIRED.load(Ordering::Relaxed)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        alarm::cancel();
        // Relaxed (all): as in `arm_with`; no alarm is pending now. Cleared,
        // so that a process forked later does not start out `fired`.
        RECOVERABLE.store(false, Ordering::Relaxed);
        FIRED.store(false, Ordering::Relaxed);
        for v in &VICTIMS {
            v.store(0, Ordering::Relaxed);
        }
    }
}

/// A transfer that hung: the watchdog fired and killed its peers. The row
/// is reported as hung, the run goes on.
#[derive(Debug)]
pub struct Hung {
    /// What hung (transport, size, phase).
    pub what: String,
}

impl fmt::Display for Hung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hung: {} did not finish within the watchdog's timeout; its peer processes were killed",
            self.what
        )
    }
}

impl std::error::Error for Hung {}

/// Whether `e` is a [`Hung`] transfer.
pub fn is_hung(e: &BoxError) -> bool {
    e.downcast_ref::<Hung>().is_some()
}
