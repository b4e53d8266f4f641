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

/// Runs the scenario: for each think time, `ROUNDS` rounds, each measuring
/// every transport once (in rotated order, so that a slow phase of the
/// machine hits all of them alike).
///
/// # Errors
/// The first session failure.
pub fn run(quick: bool, progress: &mut Progress) -> Result<Vec<PacedRow>> {
    let opts = Options::default();
    let per_round = if quick {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(250)
    };
    let rounds = if quick { 1 } else { ROUNDS };
    let mut rows = Vec::new();
    for think in THINKS {
        let n = requests(think, per_round);
        let mut samples = vec![Vec::new(); TRANSPORTS.len()];
        let mut cpu = vec![Duration::ZERO; TRANSPORTS.len()];
        for round in 0..rounds {
            progress.step(&format!(
                "paced 64 B, think {think:?}: round {}/{rounds}",
                round + 1
            ));
            for k in 0..TRANSPORTS.len() {
                let i = (k + round) % TRANSPORTS.len();
                let mut s = Session::start(TRANSPORTS[i], SIZE, &opts)?;
                // Warm-up: a few paced requests, not recorded.
                s.paced_round_trips(5, think, &mut Vec::new())?;
                let peer0 = s.peer_cpu()?;
                let own = s.paced_round_trips(n, think, &mut samples[i])?;
                let peer = s.peer_cpu()?.saturating_sub(peer0);
                cpu[i] += own + peer;
                s.finish()?;
            }
        }
        for (i, t) in TRANSPORTS.into_iter().enumerate() {
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
    Ok(rows)
}

/// Steps [`run`] reports to the progress display.
pub fn steps(quick: bool) -> usize {
    THINKS.len() * if quick { 1 } else { ROUNDS }
}
