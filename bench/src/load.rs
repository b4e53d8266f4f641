//! `bench --load N`: N busy processes for the whole run, so that a user can
//! measure what a busy machine does to each transport (a spinning peer
//! loses its core, a wake-up waits for one). The processes are this binary
//! run again with a hidden command, so nothing is forked from a process
//! that may hold locks.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::child::Result;

/// The hidden command line argument that makes the binary spin.
pub const SPIN_COMMAND: &str = "__spin";
/// A busy process gives up on its own after this long, should the bench
/// die without killing it.
const SPIN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Spins until killed (or `SPIN_LIMIT` passes), then exits.
pub fn spin_forever() -> ! {
    let start = Instant::now();
    let mut x = 0u64;
    loop {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        if start.elapsed() > SPIN_LIMIT {
            std::process::exit(0);
        }
    }
}

/// The running busy processes; killed and reaped on drop.
pub struct Load {
    children: Vec<Child>,
}

impl Load {
    /// Starts `n` busy processes.
    ///
    /// # Errors
    /// If this binary cannot be run again.
    pub fn start(n: usize) -> Result<Load> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut load = Load {
            children: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let child = Command::new(&exe)
                .arg(SPIN_COMMAND)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting a busy process: {e}"))?;
            load.children.push(child);
        }
        Ok(load)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.children {
            // Best effort: a process that already exited is fine.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
