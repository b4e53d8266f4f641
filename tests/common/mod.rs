//! Fork helpers shared by the integration tests.
//!
//! Every test binary that forks uses `harness = false` and runs its cases
//! one after another on the main thread: no other thread exists at fork
//! time, so the child cannot inherit a lock held elsewhere.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// A forked child running a closure; `wait` checks how it ended.
pub struct Child {
    pub pid: Pid,
    done: bool,
}

/// Forks; the child runs `f` and exits 0 if it returns, 101 if it panics.
pub fn spawn(f: impl FnOnce()) -> Child {
    // SAFETY: the test binaries using this helper are single-threaded
    // (harness = false, no threads alive at fork time), so the child cannot
    // inherit a lock held by another thread.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // _exit: skip atexit handlers and the parent's buffered output.
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(if r.is_ok() { 0 } else { 101 }) }
        }
        ForkResult::Parent { child } => Child {
            pid: child,
            done: false,
        },
    }
}

impl Child {
    /// Waits up to `timeout` for the child; kills it and panics if it does
    /// not finish, panics if it did not exit 0.
    pub fn wait(mut self, timeout: Duration) {
        let st = self.wait_status(timeout);
        assert!(
            matches!(st, WaitStatus::Exited(_, 0)),
            "child {} ended with {st:?}",
            self.pid
        );
    }

    /// Waits up to `timeout`, returns the status (kills on timeout, panics).
    pub fn wait_status(&mut self, timeout: Duration) -> WaitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                WaitStatus::StillAlive => {
                    if Instant::now() > deadline {
                        let _ = kill(self.pid, Signal::SIGKILL);
                        let _ = waitpid(self.pid, None);
                        self.done = true;
                        panic!("child {} timed out after {timeout:?}", self.pid);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                st => {
                    self.done = true;
                    return st;
                }
            }
        }
    }

    /// Reaps the child if it has ended; returns whether it has.
    pub fn try_reap(&mut self) -> bool {
        if self.done {
            return true;
        }
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => false,
            _ => {
                self.done = true;
                true
            }
        }
    }

    /// Kills the child with SIGKILL and reaps it (if not reaped already).
    pub fn kill(mut self) {
        if !self.done {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
        self.done = true;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.done {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
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
