//! The runner of the fork-based test binaries, and its child handle.
//!
//! Every test binary that forks uses `harness = false` and runs its cases
//! one after another on the main thread ([`run`]): no other thread exists
//! at fork time, so the child cannot inherit a lock held elsewhere (the
//! fork helper, [`crate::fork`], refuses to fork otherwise). Test code
//! panics on failure, so [`Child`] here panics where [`crate::fork::Child`]
//! returns an error.

use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::fork;

/// A forked child running a test closure; [`Child::wait`] checks how it
/// ended. Killed (SIGKILL) and reaped on drop unless it was waited for.
#[derive(Debug)]
pub struct Child {
    /// The child's process id.
    pub pid: Pid,
    inner: fork::Child,
}

/// Forks; the child runs `f` and exits 0 if it returns, 101 if it panics.
/// It dies with this process (`PR_SET_PDEATHSIG`).
///
/// # Panics
/// If this process has more than one thread, or `fork` fails.
pub fn spawn(f: impl FnOnce()) -> Child {
    let (inner, ()) = fork::fork_with((), (), None, |()| {
        f();
        Ok(())
    })
    .unwrap_or_else(|e| panic!("fork: {e}"));
    Child {
        pid: inner.pid(),
        inner,
    }
}

impl Child {
    /// Waits up to `timeout` for the child; kills it and panics if it does
    /// not finish, panics if it did not exit 0.
    pub fn wait(self, timeout: Duration) {
        let pid = self.pid;
        if let Err(e) = self.inner.wait(timeout) {
            panic!("child {pid}: {e}");
        }
    }

    /// Waits up to `timeout` and returns how the child ended; kills it and
    /// panics if it does not end in time.
    pub fn wait_status(&mut self, timeout: Duration) -> WaitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.inner.try_wait() {
                Ok(Some(st)) => return st,
                Ok(None) if Instant::now() > deadline => {
                    self.inner.kill();
                    panic!("child {} timed out after {timeout:?}", self.pid);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => panic!("child {}: {e}", self.pid),
            }
        }
    }

    /// Reaps the child if it has ended; returns whether it has.
    pub fn try_reap(&mut self) -> bool {
        self.inner.reaped() || !matches!(self.inner.try_wait(), Ok(None))
    }

    /// Kills the child with SIGKILL and reaps it (if not reaped already).
    pub fn kill(mut self) {
        self.inner.kill();
    }
}

/// Whether the child has exited (without reaping it).
pub fn child_done(c: &Child) -> bool {
    let st = format!("/proc/{}/stat", c.pid);
    match std::fs::read_to_string(st) {
        // Field 3 is the state; Z = exited, not yet reaped.
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Number of open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs named test cases in order, each checked for fd leaks; exits non-zero
/// if any fails. Arguments: an optional substring filter (libtest flags such
/// as `--nocapture` are ignored).
pub fn run(cases: &[(&str, fn())]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in cases {
            println!("{name}: test");
        }
        return;
    }
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in cases {
        if !filter.is_empty() && !filter.iter().any(|s| name.contains(s.as_str())) {
            continue;
        }
        ran += 1;
        let before = fd_count();
        let start = Instant::now();
        let r = std::panic::catch_unwind(f);
        let after = fd_count();
        let ok = r.is_ok() && after == before;
        if r.is_ok() && after != before {
            eprintln!("{name}: fd leak: {before} fds before, {after} after");
        }
        println!(
            "test {name} ... {} ({:.2?})",
            if ok { "ok" } else { "FAILED" },
            start.elapsed()
        );
        if !ok {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}
