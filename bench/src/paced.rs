//! The paced request/response scenario: what a client that does something
//! between requests meets. Both processes are **not pinned** (as
//! applications run), and the client sleeps `think` before each 64 B
//! request, so the server is asleep when the request arrives. Reports the
//! round trip (p50/p99/p99.9) and the CPU time both processes spend per
//! request, against a Unix stream socket doing the same, rounds interleaved.

use std::time::Duration;

use super::child::Result;
use super::run::{Progress, RttStats};
use super::session::{Api, Options, Session, Transport, Wait};
use super::watchdog::is_hung;

/// Think times measured.
pub const THINKS: [Duration; 2] = [Duration::from_micros(200), Duration::from_millis(2)];
/// Message size of the scenario.
pub const SIZE: usize = 64;
/// Interleaved rounds (each transport once per round).
pub const ROUNDS: usize = 3;

/// Transports compared, the baseline first.
pub const TRANSPORTS: [Transport; 6] = [
    Transport::Stream,
    Transport::Shm(Wait::Adaptive, Api::Copy),
    Transport::Shm(Wait::Block, Api::Copy),
    Transport::Shm(Wait::Spin, Api::Copy),
    Transport::TokioStream,
    Transport::TokioShm,
];

/// One measured (think time, transport).
#[derive(Debug, Clone)]
pub struct PacedRow {
    /// Sleep before each request.
    pub think: Duration,
    /// Transport.
    pub transport: Transport,
    /// Round trip of each request.
    pub rtt: RttStats,
    /// CPU time of both processes per request, nanoseconds.
    pub cpu_per_req_ns: f64,
}

/// Requests per round for `think`: about `per_round` of sleeping.
fn requests(think: Duration, per_round: Duration) -> u64 {
    (per_round.as_nanos() / think.as_nanos().max(1)).clamp(20, 5_000) as u64
}

/// A paced row that hung: the watchdog killed its peer; the transport is
/// measured no further at that think time.
#[derive(Debug, Clone)]
pub struct PacedHung {
    /// Sleep before each request.
    pub think: Duration,
    /// Transport.
    pub transport: Transport,
    /// What the watchdog said.
    pub reason: String,
}

/// Runs the scenario: for each think time, `ROUNDS` rounds, each measuring
/// every transport once (in rotated order, so that a slow phase of the
/// machine hits all of them alike). `timeout`: how long a row may take
/// beyond its planned sleeps before it is declared hung. A transport
/// whose transfer hangs is skipped (its peer killed) and returned in the
/// second list; the others go on.
///
/// # Errors
/// The first session failure other than a hang.
pub fn run(
    quick: bool,
    timeout: Duration,
    progress: &mut Progress,
) -> Result<(Vec<PacedRow>, Vec<PacedHung>)> {
    let opts = Options {
        cores: None,
        timeout,
    };
    let per_round = if quick {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(250)
    };
    let rounds = if quick { 1 } else { ROUNDS };
    let mut rows = Vec::new();
    let mut hung = Vec::new();
    for think in THINKS {
        let n = requests(think, per_round);
        let mut samples = vec![Vec::new(); TRANSPORTS.len()];
        let mut cpu = vec![Duration::ZERO; TRANSPORTS.len()];
        let mut hung_here: Vec<Option<String>> = vec![None; TRANSPORTS.len()];
        for round in 0..rounds {
            progress.step(&format!(
                "paced 64 B, think {think:?}: round {}/{rounds}",
                round + 1
            ));
            for k in 0..TRANSPORTS.len() {
                let i = (k + round) % TRANSPORTS.len();
                if hung_here[i].is_some() {
                    continue;
                }
                let t = TRANSPORTS[i];
                match measure(t, think, n, &opts, &mut samples[i]) {
                    Ok(c) => cpu[i] += c,
                    Err(e) if is_hung(&e) => {
                        eprintln!(
                            "bench: paced 64 B, think {think:?}, {t}: {e}; row skipped \
                             (the run will exit with status 3)"
                        );
                        hung_here[i] = Some(e.to_string());
                    }
                    Err(e) => return Err(format!("paced, think {think:?}, {t}: {e}").into()),
                }
            }
        }
        for (i, t) in TRANSPORTS.into_iter().enumerate() {
            if let Some(reason) = hung_here[i].take() {
                hung.push(PacedHung {
                    think,
                    transport: t,
                    reason,
                });
                continue;
            }
            let count = samples[i].len().max(1) as f64;
            let rtt = RttStats::from_samples(&mut samples[i]).ok_or("no paced samples")?;
            rows.push(PacedRow {
                think,
                transport: t,
                rtt,
                cpu_per_req_ns: cpu[i].as_nanos() as f64 / count,
            });
        }
    }
    Ok((rows, hung))
}

/// One session of `transport`: a few unrecorded paced requests, then `n`
/// recorded ones into `samples`; returns the CPU time of both processes
/// over the recorded ones.
fn measure(
    transport: Transport,
    think: Duration,
    n: u64,
    opts: &Options,
    samples: &mut Vec<u64>,
) -> Result<Duration> {
    let mut s = Session::start(transport, SIZE, opts)?;
    // Warm-up: a few paced requests, not recorded.
    s.paced_round_trips(5, think, &mut Vec::new())?;
    let peer0 = s.peer_cpu()?;
    let own = s.paced_round_trips(n, think, samples)?;
    let peer = s.peer_cpu()?.saturating_sub(peer0);
    s.finish()?;
    Ok(own + peer)
}

/// Steps [`run`] reports to the progress display.
pub fn steps(quick: bool) -> usize {
    THINKS.len() * if quick { 1 } else { ROUNDS }
}
