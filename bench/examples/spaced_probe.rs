//! One cell of `bench`'s spaced-request scenario (`bench/src/spaced.rs`:
//! 64 B requests at 1,000/s per client, one server thread per connection,
//! nothing pinned), with longer rows than `bench` has time for and with
//! the client's and the server's wait strategies chosen apart, to find
//! where a tail comes from.
//!
//! ```text
//! cargo run --release -p shmsock-bench --example spaced_probe -- \
//!     [--clients 4] [--load 1] [--n 2000] [--rounds 5] [--variants stream,aa,bb,ab,ba]
//! ```
//!
//! Variants: `stream` (the Unix stream baseline); otherwise two letters,
//! the **server**'s strategy then the **client**'s: `a` Adaptive (the
//! default), `b` Block, `s` Spin. `--load N` runs N busy processes (not
//! pinned) for the whole probe. Rounds are interleaved (every variant once
//! per round, in rotated order). Every request and reply is written and
//! checked byte by byte.
//!
//! Prints per variant: samples, p50/p90/p99/p99.9/max of the round trip,
//! how many samples exceed 100 µs, 250 µs and 1 ms, each round's p99 (to
//! show the spread), CPU per request (server threads plus clients), and the
//! clients' voluntary and involuntary context switches per request (a
//! client sleeps once per request until its next one is due, so a
//! voluntary count above 1 is a park in the wait for the reply; an
//! involuntary one is a preemption).

use std::time::Duration;

use shmsock::WaitStrategy;
use shmsock_bench::child::Result;
use shmsock_bench::load::Load;
use shmsock_bench::spaced::{run_row, Measured, Pair};

fn strategy(c: char) -> Result<WaitStrategy> {
    Ok(match c {
        'a' => WaitStrategy::default(),
        'b' => WaitStrategy::Block,
        's' => WaitStrategy::Spin,
        _ => return Err(format!("unknown strategy letter {c:?}").into()),
    })
}

fn pair(v: &str) -> Result<Pair> {
    if v == "stream" {
        return Ok(Pair::Stream);
    }
    let c: Vec<char> = v.chars().collect();
    if c.len() != 2 {
        return Err(format!("variant {v:?}: `stream` or two letters (server, client)").into());
    }
    Ok(Pair::Shm {
        server: strategy(c[0])?,
        client: strategy(c[1])?,
    })
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1e3
}

fn main() -> Result<()> {
    let mut clients = 4usize;
    let mut load = 1usize;
    let mut n = 2000u64;
    let mut rounds = 5usize;
    let mut variants = "stream,aa,bb,ab,ba".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--clients" => clients = val()?.parse()?,
            "--load" => load = val()?.parse()?,
            "--n" => n = val()?.parse()?,
            "--rounds" => rounds = val()?.parse()?,
            "--variants" => variants = val()?,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let names: Vec<&str> = variants.split(',').collect();
    let pairs = names.iter().map(|v| pair(v)).collect::<Result<Vec<_>>>()?;
    let _busy = if load > 0 {
        let l = Load::start(load)?;
        std::thread::sleep(Duration::from_millis(50));
        Some(l)
    } else {
        None
    };
    let mut acc: Vec<Measured> = vec![Measured::default(); pairs.len()];
    let mut round_p99: Vec<Vec<f64>> = vec![Vec::new(); pairs.len()];
    for r in 0..rounds {
        for k in 0..pairs.len() {
            let i = (k + r) % pairs.len();
            let mut m = run_row(pairs[i], clients, n, Duration::from_secs(30))?;
            let mut s = m.samples.clone();
            s.sort_unstable();
            round_p99[i].push(pct(&s, 0.99));
            m.samples.shrink_to_fit();
            acc[i].add(m);
        }
        eprintln!("round {}/{rounds} done", r + 1);
    }
    println!(
        "{clients} clients x 1,000/s, {load} busy, {n} requests per client per round, {rounds} rounds"
    );
    println!(
        "{:<8} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>6} {:>6} {:>6} {:>8} {:>6} {:>6}  p99 per round",
        "variant", "samples", "p50", "p90", "p99", "p99.9", "max", ">100", ">250", ">1ms", "cpu/req", "vcsw", "icsw"
    );
    for (i, m) in acc.iter_mut().enumerate() {
        m.samples.sort_unstable();
        let s = &m.samples;
        let over = |us: u64| s.iter().filter(|&&v| v > us * 1000).count();
        let req = m.requests.max(1) as f64;
        let rp: Vec<String> = round_p99[i].iter().map(|v| format!("{v:.0}")).collect();
        println!(
            "{:<8} {:>7} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>8.1} {:>6} {:>6} {:>6} {:>8.1} {:>6.2} {:>6.3}  {}",
            names[i],
            s.len(),
            pct(s, 0.5),
            pct(s, 0.9),
            pct(s, 0.99),
            pct(s, 0.999),
            pct(s, 1.0),
            over(100),
            over(250),
            over(1000),
            (m.server_cpu_ns + m.clients_cpu_ns) as f64 / req / 1e3,
            m.clients_csw[0] as f64 / req,
            m.clients_csw[1] as f64 / req,
            rp.join(" "),
        );
    }
    Ok(())
}
