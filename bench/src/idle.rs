//! Idle waits: what a blocked receive costs while nothing arrives.
//!
//! A client process blocks in a receive for `IDLE` with nothing to read;
//! then the server sends one 64 B message (written and checked in full).
//! The client measures its own CPU time (user + system, `getrusage`) and
//! context switches across the receive, so a wait strategy that spins, or
//! wakes up now and then while parked, shows here. Not pinned.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use shmsock::{Builder, Listener};

use super::child::{fork_with, Result};
use super::fanin::Usage;
use super::link::{Framed, Link, ShmCopy};
use super::session::{
    accept_within, read_u64, ring_capacity, socket_name, test_hook, Api, Transport, Wait,
};
use super::watchdog::{is_hung, Hung, Watchdog, GRACE};

/// Message size.
pub const SIZE: usize = 64;
/// Transports measured, the baseline first.
pub const TRANSPORTS: [Transport; 3] = [
    Transport::Stream,
    Transport::Shm(Wait::Adaptive, Api::Copy),
    Transport::Shm(Wait::Block, Api::Copy),
];
/// Longest the client may take to exit once it has reported.
const SLACK: Duration = Duration::from_secs(30);

/// One measured transport.
#[derive(Debug, Clone)]
pub struct IdleRow {
    /// Transport.
    pub transport: Transport,
    /// How long the receive waited (the server's sleep).
    pub idle: Duration,
    /// CPU time the receiving process spent in the wait.
    pub cpu: Duration,
    /// Context switches of the receiving process in the wait.
    pub switches: u64,
}

impl IdleRow {
    /// CPU time over wall time, in percent of one core.
    pub fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.idle.as_secs_f64().max(1e-9)
    }
}

/// How long each receive idles.
pub fn idle_time(quick: bool) -> Duration {
    if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    }
}

/// What the client builds its end from.
enum End {
    Shm { name: String, builder: Builder },
    Stream(UnixStream),
}

/// The client: connects, says it is ready, receives one message (timing
/// its own CPU across the wait), checks it, reports on `ctl`. `hang`: the
/// test hook; it never receives and sleeps until killed.
fn client_main(end: End, mut ctl: UnixStream, hang: bool) -> Result<()> {
    let (cpu, switches) = match end {
        End::Shm { name, builder } => {
            let conn = builder
                .connect(&name)
                .map_err(|e| format!("connect {name}: {e}"))?;
            wait_one(ShmCopy::new(conn, SIZE), &mut ctl, hang)?
        }
        End::Stream(s) => wait_one(Framed::new(s.try_clone()?, s, SIZE), &mut ctl, hang)?,
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&cpu.to_le_bytes());
    out[8..].copy_from_slice(&switches.to_le_bytes());
    ctl.write_all(&out)?;
    Ok(())
}

fn wait_one<L: Link>(mut link: L, ctl: &mut UnixStream, hang: bool) -> Result<(u64, u64)> {
    let me = nix::sys::resource::UsageWho::RUSAGE_SELF;
    ctl.write_all(&[1])?;
    if hang {
        super::fanout::hang_forever();
    }
    let before = Usage::now(me)?;
    link.recv(0, SIZE)?;
    let used = Usage::now(me)?.since(before);
    Ok((used.cpu_ns, used.switches))
}

/// Measures one transport. Once the client is forked, a watchdog guards
/// the row: if it does not finish within `timeout` beyond its idle time,
/// the client is killed and the row fails with [`Hung`].
fn run_row(transport: Transport, idle: Duration, timeout: Duration) -> Result<IdleRow> {
    let (ctl, child_ctl) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let (listener, end, server_sock) = match transport {
        Transport::Shm(wait, _) => {
            let name = socket_name();
            let builder = Builder::new()
                .ring_capacity(ring_capacity(SIZE))
                .wait(wait.strategy());
            let l: Listener = builder
                .bind(&name)
                .map_err(|e| format!("bind {name}: {e}"))?;
            (Some(l), End::Shm { name, builder }, None)
        }
        _ => {
            let (a, b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
            (None, End::Stream(b), Some(a))
        }
    };
    let hang = test_hook(&format!("idle:{}", transport.id()));
    let (mut child, (listener, mut ctl, server_sock)) = fork_with(
        (listener, ctl, server_sock),
        (end, child_ctl),
        None,
        move |(end, ctl)| client_main(end, ctl, hang),
    )?;
    let what = format!("idle wait, {transport}");
    let limit = idle + timeout;
    let watchdog = Watchdog::arm_killing(limit, &what, &[child.pid()])?;
    // Past the watchdog's limit: a hang is the watchdog's to report.
    ctl.set_read_timeout(Some(limit + GRACE))?;
    let r = (|| -> Result<(u64, u64)> {
        let mut link: Box<dyn Link> = match (listener, server_sock) {
            (Some(l), _) => {
                let conn = accept_within(&l, &mut child, limit)?;
                Box::new(ShmCopy::new(conn, SIZE))
            }
            (None, Some(s)) => Box::new(Framed::new(s.try_clone()?, s, SIZE)),
            (None, None) => return Err("no server end".into()),
        };
        let mut ready = [0u8; 1];
        ctl.read_exact(&mut ready)
            .map_err(|e| format!("control channel (ready): {e}"))?;
        std::thread::sleep(idle);
        link.send(0, SIZE)?;
        let cpu = read_u64(&mut ctl).map_err(|e| format!("control channel (read): {e}"))?;
        let switches = read_u64(&mut ctl)?;
        Ok((cpu, switches))
    })();
    if watchdog.fired() {
        child.kill();
        return Err(Hung { what }.into());
    }
    drop(watchdog);
    let (cpu, switches) = r?;
    child.wait(SLACK)?;
    Ok(IdleRow {
        transport,
        idle,
        cpu: Duration::from_nanos(cpu),
        switches,
    })
}

/// An idle row that hung: the watchdog killed its client.
#[derive(Debug, Clone)]
pub struct IdleHung {
    /// Transport.
    pub transport: Transport,
    /// What the watchdog said.
    pub reason: String,
}

/// Runs the scenario: one row per transport. `timeout`: how long a row may
/// take beyond its idle time before it is declared hung; a hung row is
/// skipped (its client killed) and returned in the second list.
///
/// # Errors
/// The first failure other than a hang (setup, transport, verification,
/// the client's exit).
pub fn run(
    quick: bool,
    timeout: Duration,
    progress: &mut super::run::Progress,
) -> Result<(Vec<IdleRow>, Vec<IdleHung>)> {
    let idle = idle_time(quick);
    let mut rows = Vec::with_capacity(TRANSPORTS.len());
    let mut hung = Vec::new();
    for t in TRANSPORTS {
        progress.step(&format!("idle wait {idle:?}: {t}"));
        match run_row(t, idle, timeout) {
            Ok(r) => rows.push(r),
            Err(e) if is_hung(&e) => {
                eprintln!(
                    "bench: idle wait, {t}: {e}; row skipped (the run will exit with status 3)"
                );
                hung.push(IdleHung {
                    transport: t,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(format!("idle wait, {t}: {e}").into()),
        }
    }
    Ok((rows, hung))
}

/// Steps [`run`] reports to the progress display.
pub fn steps() -> usize {
    TRANSPORTS.len()
}
