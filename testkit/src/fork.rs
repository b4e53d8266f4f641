//! Forking the peer process: one helper, checked exits, a watchdog.
//!
//! [`fork_with`] refuses to fork unless this process has exactly one
//! thread (read from `/proc/self/status`), so the child cannot inherit a
//! lock another thread held. The child drops the parent's resources, runs
//! its closure and leaves with `_exit` (no atexit handlers, no flushing of
//! buffers it inherited); it asks the kernel to kill it if the parent dies.
//! The parent gets a [`Child`] that it must [`wait`](Child::wait) for: a
//! child that does not finish in time is killed, one that exits non-zero
//! is an error, and one still alive when the [`Child`] drops is killed.

use std::error::Error;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Error type of the harness code.
pub type BoxError = Box<dyn Error + Send + Sync>;
/// Result type of the harness code.
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

/// Exit status of a child whose closure returned an error.
const EXIT_ERROR: i32 = 1;
/// Exit status of a child whose closure panicked.
const EXIT_PANIC: i32 = 101;

/// Number of threads in this process, from `/proc/self/status`.
fn thread_count() -> Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no Threads: line in /proc/self/status".into())
}

/// A forked child process. Killed (SIGKILL) and reaped on drop unless it
/// was waited for.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    reaped: bool,
}

/// Forks. The child drops `parent_side`, pins itself (if `core` is set),
/// runs `child_main(child_side)` and exits 0 if it returns `Ok`, 1 if it
/// returns an error (printed to stderr), 101 if it panics. The parent drops
/// `child_side` and gets the [`Child`] and `parent_side` back.
///
/// # Errors
/// If this process has more than one thread, stdout cannot be flushed,
/// or `fork` fails.
pub fn fork_with<P, C>(
    parent_side: P,
    child_side: C,
    core: Option<usize>,
    child_main: impl FnOnce(C) -> Result<()>,
) -> Result<(Child, P)> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(format!("refusing to fork: this process has {threads} threads").into());
    }
    // Nothing buffered may be copied into the child.
    std::io::Write::flush(&mut std::io::stdout())?;
    let parent_pid = nix::unistd::getpid();
    // SAFETY: this process has a single thread (checked just above), so the
    // child cannot inherit a lock (allocator, stdio) held by another thread;
    // it runs ordinary Rust code and leaves with `_exit`.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(parent_side);
            let run = std::panic::AssertUnwindSafe(move || -> Result<()> {
                // Die with the parent; then make sure it did not die before
                // the request was in place.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                    .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))?;
                // A parent outside our PID namespace (the child of a
                // fork after `unshare(CLONE_NEWPID)`) shows as pid 0.
                let ppid = nix::unistd::getppid();
                if ppid != parent_pid && ppid.as_raw() != 0 {
                    return Err("parent died before the child started".into());
                }
                if let Some(core) = core {
                    crate::pin::pin_to(core)?;
                }
                child_main(child_side)
            });
            let code = match std::panic::catch_unwind(run) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("child {}: {e}", std::process::id());
                    EXIT_ERROR
                }
                Err(_) => EXIT_PANIC,
            };
            // SAFETY: `_exit` is async-signal-safe and never returns; it
            // skips atexit handlers and the stdio buffers copied from the
            // parent, which must not be flushed twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_side);
            Ok((
                Child {
                    pid: child,
                    reaped: false,
                },
                parent_side,
            ))
        }
    }
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Whether the child has been reaped (by a wait or a kill).
    pub fn reaped(&self) -> bool {
        self.reaped
    }

    /// Whether the child has exited; reaps it if so and returns how.
    ///
    /// # Errors
    /// If `waitpid` fails.
    pub fn try_wait(&mut self) -> Result<Option<WaitStatus>> {
        if self.reaped {
            return Err("child already reaped".into());
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG))
            .map_err(|e| format!("waitpid({}): {e}", self.pid))?
        {
            WaitStatus::StillAlive => Ok(None),
            st => {
                self.reaped = true;
                Ok(Some(st))
            }
        }
    }

    /// Waits up to `timeout` for the child to exit with status 0. A child
    /// still running then is killed.
    ///
    /// # Errors
    /// If the child times out, exits non-zero or is killed by a signal.
    pub fn wait(mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return check_status(self.pid, st);
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(
                    format!("child {} did not exit within {timeout:?}; killed", self.pid).into(),
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if !self.reaped {
            // Best effort: it may have exited already; waitpid reaps it
            // either way.
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
            self.reaped = true;
        }
    }
}

/// Turns a child's final status into a result.
///
/// # Errors
/// Unless the child exited with status 0.
pub fn check_status(pid: Pid, st: WaitStatus) -> Result<()> {
    match st {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, EXIT_ERROR) => {
            Err(format!("child {pid} failed (its error is printed above)").into())
        }
        WaitStatus::Exited(_, EXIT_PANIC) => Err(format!("child {pid} panicked").into()),
        other => Err(format!("child {pid} ended abnormally: {other:?}").into()),
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}
