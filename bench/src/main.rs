//! The `shmsock` command: `shmsock bench` measures shmsock against Unix
//! sockets and pipes between two processes, next to this machine's floor
//! (cache-line round trip, `memcpy` bandwidth). See `docs/performance.md`.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;

use shmsock_bench::child::Result;
use shmsock_bench::run::{self, Budget, Plan, DEFAULT_SIZES};
use shmsock_bench::session::Options;
use shmsock_bench::watchdog::EXIT_HUNG;
use shmsock_bench::{fanin, fanout, idle, load, paced, pin, plot, report, spaced};

const USAGE: &str = "\
usage: shmsock bench [--quick] [--sizes LIST] [--json] [--no-pin] [--no-paced] [--no-fanin]
                     [--no-fanout] [--fanout-only] [--no-iceoryx2] [--load N] [--filter TEXT]
                     [--plot FILE.svg] [--timeout SECS]
       shmsock broker [--socket PATH] [--mode OCTAL]
       shmsock help

bench   Measures shmsock (wait strategies Spin, Adaptive, Block; copying send,
        zero-copy reserve/commit, at 64 B send_batch/recv_batch in batches
        of 32, and for fragmented messages write_message/read_message read
        piece by piece, 'frags, streamed') against a Unix SOCK_STREAM socket, a
        SOCK_SEQPACKET socket, a pipe (64 B) and iceoryx2 (publish-subscribe,
        busy-polling and event-driven, copy and loan), between two forked processes
        pinned to different cores: round-trip latency (p50/p99/p99.9) and
        one-way throughput, plus this machine's floor (cross-process cache-line
        round trip, single-thread memcpy). Every message is written and
        checksummed byte by byte; any verification failure exits non-zero.
        A transfer that hangs (no progress within --timeout) has its peer
        processes killed; its row is reported as hung (in the table, and
        as \"hung\": true in --json) and the run goes on (every scenario:
        main table, paced, spaced, idle wait, fan-in, fan-out). A hung iceoryx2 row
        does not fail the run; any other hung row makes it exit with
        status 3 once the tables are printed.

broker  Runs a service broker (shmsock-services): maps service names to live
        providers and introduces consumers to them; no payload passes through
        it. --socket PATH (default: $SHMSOCK_BROKER, else
        $XDG_RUNTIME_DIR/shmsock-broker.sock, else /tmp/shmsock-broker-UID.sock;
        @name for an abstract socket), --mode OCTAL: the socket file's mode
        (default 600; 666 lets every local user in, the per-name policies then
        decide who may look each name up). See docs/services.md.

options:
  --quick          shorter measurements; iceoryx2 at 64 B and 1 MiB only
  --sizes LIST     message sizes, comma-separated, with optional K/M suffix
                   (binary units); default 64,1K,16K,64K,1M,16M
  --json           one JSON object per line (rows, floors, targets) on stdout
  --no-pin         do not pin the two processes to different cores
  --no-paced       skip the paced request/response scenarios (64 B, not pinned):
                   one client with 200 us and 2 ms of think time before each
                   request; spaced requests at 1,000/s per client, 1 and 4
                   client processes against one server process that serves
                   each connection on its own thread (shmsock and the unix
                   stream alike), on an idle machine and with one busy
                   process; unix stream, Adaptive and Block (Spin would
                   spin a core per thread between requests); issue 10's
                   target judged for the default, Adaptive (about 15 s, 3 s
                   with --quick); and the idle-wait rows
                   (CPU of a receive blocked for 1 s)
  --load N         run N busy processes (not pinned) during the whole run, to
                   measure on a busy machine
  --no-fanin       skip the fan-in scenario (one server thread, poll(2) over 1, 8
                   and 32 client processes doing 64 B round trips, not pinned;
                   about 8 s, 2.5 s with --quick)
  --no-fanout      skip the fan-out scenario (publish/subscribe: one publisher,
                   1, 4 and 8 subscriber processes, 64 B and 1 MiB, copying
                   and in-place subscribers, against a Unix stream per
                   subscriber and iceoryx2 publish-subscribe, busy-polling
                   and event-driven; not pinned; about 25 s, 9 s with --quick)
  --fanout-only    run the fan-out scenario only (--filter, --no-iceoryx2 and
                   --sizes 64 or 1M choose its rows)
  --no-iceoryx2    skip the iceoryx2 rows
  --plot FILE.svg  also draw round trip and throughput by message size (one
                   line per transport, the unix stream and the floor marked)
                   into FILE.svg
  --timeout SECS   longest one transfer of the main table may take before
                   its row is declared hung and skipped (default 30); for a
                   paced, spaced, idle-wait or fan-in row: beyond its
                   planned time; for a fan-out row: beyond its planned time
                   (default: 3 min in all)
  --filter TEXT    only transports whose name contains TEXT (unix stream,
                   the baseline, is always kept), e.g. 'spin' or 'block send'
  -h, --help       this text
";

/// Parses `64`, `1K`, `16KiB`, `1M`, `1MB` (binary units).
fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num
        .parse()
        .map_err(|_| format!("bad size {s:?}: expected a number with optional K or M"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("bad size {s:?}: unknown unit {unit:?}").into()),
    };
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))?;
    if !(1..=64 << 20).contains(&size) {
        return Err(format!("size {s:?} out of range (1 B ..= 64 MiB)").into());
    }
    Ok(size)
}

struct BenchArgs {
    plan: Plan,
    json: bool,
    quick: bool,
    paced: bool,
    load: usize,
    fanin: bool,
    fanout: bool,
    fanout_only: bool,
    fanout_plan: fanout::FanoutPlan,
    plot: Option<std::path::PathBuf>,
}

/// Parses the `bench` options; `Ok(None)` means help was asked for.
fn parse_bench(args: &[String]) -> Result<Option<BenchArgs>> {
    let mut quick = false;
    let mut json = false;
    let mut pin = true;
    let mut paced = true;
    let mut load = 0;
    let mut fanin = true;
    let mut fanout = true;
    let mut fanout_only = false;
    let mut sizes = DEFAULT_SIZES.to_vec();
    let mut sizes_given = false;
    let mut filter = None;
    let mut iceoryx2 = true;
    let mut plot = None;
    let mut timeout = Options::default().timeout;
    let mut timeout_given = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "--json" => json = true,
            "--no-pin" => pin = false,
            "--no-paced" => paced = false,
            "--load" => {
                let n = it.next().ok_or("--load needs a number of processes")?;
                load = n
                    .parse()
                    .ok()
                    .filter(|&n| n <= 64)
                    .ok_or_else(|| format!("--load {n:?}: expected 0..=64"))?;
            }
            "--no-fanin" => fanin = false,
            "--no-fanout" => fanout = false,
            "--fanout-only" => fanout_only = true,
            "--no-iceoryx2" => iceoryx2 = false,
            "--plot" => {
                let f = it
                    .next()
                    .ok_or("--plot needs a file name, e.g. bench.svg")?;
                plot = Some(std::path::PathBuf::from(f));
            }
            "--sizes" => {
                let list = it.next().ok_or("--sizes needs a list, e.g. 64,1K,1M")?;
                sizes = list
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(parse_size)
                    .collect::<Result<_>>()?;
                if sizes.is_empty() {
                    return Err("--sizes: empty list".into());
                }
                sizes_given = true;
            }
            "--timeout" => {
                let t = it.next().ok_or("--timeout needs a number of seconds")?;
                timeout = t
                    .parse()
                    .ok()
                    .filter(|&s| (1..=3600).contains(&s))
                    .map(std::time::Duration::from_secs)
                    .ok_or_else(|| format!("--timeout {t:?}: expected 1..=3600 seconds"))?;
                timeout_given = true;
            }
            "--filter" => filter = Some(it.next().ok_or("--filter needs a text")?.clone()),
            other => return Err(format!("unknown option {other:?}").into()),
        }
    }
    if fanout_only && !fanout {
        return Err("--fanout-only and --no-fanout exclude each other".into());
    }
    let fanout_plan = fanout::FanoutPlan {
        quick,
        no_iceoryx2: !iceoryx2,
        filter: filter.clone(),
        sizes: sizes_given.then(|| sizes.clone()),
        timeout: timeout_given.then_some(timeout),
    };
    let cores = if pin && !fanout_only {
        pin::two_cores()?
    } else {
        None
    };
    let iceoryx2_sizes = if !iceoryx2 {
        Vec::new()
    } else if quick {
        sizes
            .iter()
            .copied()
            .filter(|s| run::ICEORYX2_QUICK_SIZES.contains(s))
            .collect()
    } else {
        sizes.clone()
    };
    Ok(Some(BenchArgs {
        plan: Plan {
            sizes,
            budget: if quick {
                Budget::QUICK
            } else {
                Budget::DEFAULT
            },
            cores,
            filter,
            iceoryx2_sizes,
            timeout,
        },
        json,
        quick,
        paced,
        load,
        fanin,
        fanout,
        fanout_only,
        fanout_plan,
        plot,
    }))
}

fn bench(args: &[String]) -> Result<ExitCode> {
    let b = match parse_bench(args) {
        Ok(Some(b)) => b,
        Ok(None) => {
            print!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            eprintln!("shmsock bench: {e} (see `shmsock bench --help`)");
            return Ok(ExitCode::from(2));
        }
    };
    // The paced scenario runs unpinned: keep the set of cores to go back to.
    let all_cores = pin::current()?;
    // Before pinning: the busy processes may run on every core.
    let _load = load::Load::start(b.load)?;
    if b.load > 0 {
        eprintln!("bench: {} busy processes running (not pinned)", b.load);
    }
    match b.plan.cores {
        Some((parent, child)) => {
            // Before any fork: children inherit it, then move to their core.
            pin::pin_to(parent)?;
            eprintln!("bench: pinned to cores {parent} (measuring side) and {child} (peer)");
        }
        None => eprintln!("bench: not pinned"),
    }
    let mut out = String::new();
    // Hung rows that are ours to fix (not iceoryx2's): the run fails, once
    // every table is printed.
    let mut failed_hung = Vec::new();
    if !b.fanout_only {
        let res = run::run(&b.plan)?;
        failed_hung.extend(
            res.skipped
                .iter()
                .filter(|s| s.fails_run())
                .map(|s| format!("{} {}", run::size_name(s.size), s.transport)),
        );
        if let Some(path) = &b.plot {
            plot::svg(&res, path)?;
            eprintln!("bench: chart written to {}", path.display());
        }
        out = if b.json {
            report::json(&res)
        } else {
            report::text(&res)
        };
    }
    if b.paced && !b.fanout_only {
        pin::restore(&all_cores)?;
        let timeout = b.plan.timeout;
        let mut progress = run::Progress::new(paced::steps(b.quick));
        let (rows, hung) = paced::run(b.quick, timeout, &mut progress)?;
        progress.finish();
        out.push_str(&if b.json {
            report::paced_json(&rows, &hung, b.load)
        } else {
            report::paced_text(&rows, &hung)
        });
        failed_hung.extend(
            hung.iter()
                .map(|h| format!("paced think {:?} {}", h.think, h.transport)),
        );
        // Spaced requests at 1,000/s, 1 and 4 clients, idle and one core
        // busy (not pinned either).
        let plan = spaced::Plan {
            quick: b.quick,
            timeout,
            base_load: b.load,
        };
        let mut progress = run::Progress::new(spaced::steps(&plan));
        let (rows, hung) = spaced::run(&plan, &mut progress)?;
        progress.finish();
        out.push_str(&if b.json {
            report::spaced_json(&rows, &hung)
        } else {
            report::spaced_text(&rows, &hung)
        });
        failed_hung.extend(hung.iter().map(|h| {
            format!(
                "spaced {} clients {} busy {}",
                h.clients, h.load, h.transport
            )
        }));
        // What a parked receive costs while nothing arrives (not pinned).
        let mut progress = run::Progress::new(idle::steps());
        let (rows, hung) = idle::run(b.quick, timeout, &mut progress)?;
        progress.finish();
        out.push_str(&if b.json {
            report::idle_json(&rows, &hung)
        } else {
            report::idle_text(&rows, &hung)
        });
        failed_hung.extend(hung.iter().map(|h| format!("idle wait {}", h.transport)));
    }
    if b.fanin && !b.fanout_only {
        // Not pinned either.
        pin::restore(&all_cores)?;
        let mut progress = run::Progress::new(fanin::steps());
        let (rows, hung) = fanin::run(b.quick, b.plan.timeout, &mut progress)?;
        progress.finish();
        out.push_str(&if b.json {
            report::fanin_json(&rows, &hung)
        } else {
            report::fanin_text(&rows, &hung, fanin::measured(b.quick))
        });
        failed_hung.extend(
            hung.iter()
                .map(|h| format!("fan-in {} clients {}", h.clients, h.transport)),
        );
    }
    if b.fanout {
        // Not pinned either.
        pin::restore(&all_cores)?;
        let mut progress = run::Progress::new(fanout::steps(&b.fanout_plan));
        let (rows, hung) = fanout::run(&b.fanout_plan, &mut progress)?;
        progress.finish();
        out.push_str(&if b.json {
            report::fanout_json(&rows) + &report::fanout_hung_json(&hung)
        } else {
            report::fanout_text(&rows) + &report::fanout_hung_text(&hung)
        });
        failed_hung.extend(hung.iter().filter(|h| h.fails_run()).map(|h| {
            format!(
                "fan-out {} {} subscribers {}",
                run::size_name(h.size),
                h.subscribers,
                h.transport.name()
            )
        }));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    if !failed_hung.is_empty() {
        eprintln!(
            "\nshmsock bench: error: transfers hung in: {} (rows skipped; see above)",
            failed_hung.join(", ")
        );
        return Ok(ExitCode::from(EXIT_HUNG as u8));
    }
    Ok(ExitCode::SUCCESS)
}

/// `shmsock broker`: runs a broker until killed.
fn broker(args: &[String]) -> std::result::Result<ExitCode, Box<dyn Error + Send + Sync>> {
    let mut socket = shmsock_services::broker::default_socket_path();
    let mut opts = shmsock_services::broker::BrokerOptions::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => match it.next() {
                Some(p) => socket = p.into(),
                None => return Err("--socket needs a path".into()),
            },
            "--mode" => match it.next().map(|m| u32::from_str_radix(m, 8)) {
                Some(Ok(m)) if m <= 0o777 => opts = opts.socket_mode(m),
                _ => return Err("--mode needs octal permission bits such as 600".into()),
            },
            other => {
                eprint!("shmsock broker: unknown option {other:?}\n\n{USAGE}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let mut b = opts.bind(&socket)?;
    eprintln!("shmsock broker: listening on {}", socket.display());
    b.run()?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(load::SPIN_COMMAND) {
        load::spin_forever();
    }
    let r: std::result::Result<ExitCode, Box<dyn Error + Send + Sync>> =
        match args.first().map(String::as_str) {
            Some("bench") => bench(&args[1..]),
            Some("broker") => broker(&args[1..]),
            Some("help" | "-h" | "--help") => {
                print!("{USAGE}");
                Ok(ExitCode::SUCCESS)
            }
            Some(other) => {
                eprint!("shmsock: unknown command {other:?}\n\n{USAGE}");
                Ok(ExitCode::from(2))
            }
            None => {
                eprint!("{USAGE}");
                Ok(ExitCode::from(2))
            }
        };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("\nshmsock: error: {e}");
            ExitCode::FAILURE
        }
    }
}
