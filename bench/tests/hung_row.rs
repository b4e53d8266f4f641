//! A transfer that hangs skips its row instead of ending the run.
//!
//! The peer of a session is made to hang with the test hook
//! `SHMSOCK_BENCH_TEST_HANG` (its peer stops serving at its first one-way
//! stream and sleeps until killed). Then:
//! - a session's stream fails with `Hung` once the watchdog fires, for
//!   each kind of wait the measuring side can be stuck in (a Unix socket,
//!   shmsock spinning or parked on a full ring, iceoryx2's publisher
//!   retrying on a full queue or its listener waiting), and the peer is
//!   killed and reaped;
//! - the `shmsock bench` binary goes on after a hung iceoryx2 row,
//!   reports it (table and JSON) and exits 0; after a hung shmsock row it
//!   prints the tables too, and exits 3;
//! - the same for the fan-out scenario's iceoryx2 rows (hook value: the
//!   fan-out id, `iceoryx2-event`: its subscribers stop once subscribed);
//! - a paced session's round trips fail with `Hung` (hook `paced:ID`), and
//!   the binary skips and reports hung paced, spaced, idle-wait and fan-in
//!   rows (hooks `paced:`, `spaced:`, `idle:`, `fanin:`), measures the
//!   others, prints every table and exits 3.
//!
//! Its own test binary (`harness = false`): sessions fork, which needs a
//! single-threaded process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag};
use shmsock_bench::iox::{IoxApi, IoxWait};
use shmsock_bench::session::{Api, Options, Session, Transport, Wait, TEST_HANG_ENV};
use shmsock_bench::watchdog::is_hung;
use shmsock_testkit::harness as common;

/// Asserts that this process has no child left, running or unreaped.
fn assert_no_children() {
    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        Err(Errno::ECHILD) => {}
        other => panic!("a child process is left: waitpid gave {other:?}"),
    }
}

fn hung_stream_fails_with_hung_and_reaps_the_peer() {
    let opts = Options {
        cores: None,
        // Long enough for a busy machine's round trips, short for a test.
        timeout: Duration::from_secs(2),
    };
    for t in [
        Transport::Stream,
        Transport::Shm(Wait::Spin, Api::Copy),
        Transport::Shm(Wait::Block, Api::ZeroCopy),
        Transport::Iceoryx2(IoxWait::Event, IoxApi::Copy),
        Transport::Iceoryx2(IoxWait::Poll, IoxApi::Loan),
    ] {
        // Read by the peer right after the fork.
        std::env::set_var(TEST_HANG_ENV, t.id());
        let mut s = Session::start(t, 64, &opts).unwrap_or_else(|e| panic!("{t}: {e}"));
        std::env::remove_var(TEST_HANG_ENV);
        // The peer serves round trips; it hangs at the first stream.
        s.round_trips(10, None)
            .unwrap_or_else(|e| panic!("{t} round trips: {e}"));
        // More than any of these links holds in flight (a 64 KiB shmsock
        // ring, 256 iceoryx2 samples, a socket buffer): the sender is stuck
        // in its own wait for space, not only in waiting for the reply.
        let e = s
            .stream(200_000)
            .expect_err(&format!("{t}: a stream to a hung peer finished"));
        assert!(is_hung(&e), "{t}: not reported as hung: {e}");
        drop(s);
        assert_no_children();
    }
}

fn hung_paced_session_fails_with_hung_and_reaps_the_peer() {
    let opts = Options {
        cores: None,
        timeout: Duration::from_secs(2),
    };
    for t in [Transport::Stream, Transport::Shm(Wait::Adaptive, Api::Copy)] {
        std::env::set_var(TEST_HANG_ENV, format!("paced:{}", t.id()));
        let mut s = Session::start(t, 64, &opts).unwrap_or_else(|e| panic!("{t}: {e}"));
        std::env::remove_var(TEST_HANG_ENV);
        // Unpaced round trips are served: the hook is the paced one's.
        s.round_trips(10, None)
            .unwrap_or_else(|e| panic!("{t} round trips: {e}"));
        let e = s
            .paced_round_trips(5, Duration::from_micros(200), &mut Vec::new())
            .expect_err(&format!("{t}: paced round trips with a hung peer finished"));
        assert!(is_hung(&e), "{t}: not reported as hung: {e}");
        drop(s);
        assert_no_children();
    }
}

/// The line of `json` that has every one of `fields` (`"key":value`).
fn find_line<'a>(json: &'a str, fields: &[&str]) -> Option<&'a str> {
    json.lines().find(|l| fields.iter().all(|f| l.contains(f)))
}

fn hung_paced_spaced_idle_fanin_rows_are_skipped_and_the_run_exits_3() {
    let hooks = "paced:shmsock_adaptive_send,spaced:shmsock_block_send,\
                 idle:shmsock_adaptive_send,fanin:shmsock_block_send";
    let out = Command::new(env!("CARGO_BIN_EXE_shmsock"))
        .args([
            "bench",
            "--quick",
            "--sizes",
            "64",
            "--no-fanout",
            "--no-iceoryx2",
            "--no-pin",
            // Beyond each row's planned time; every other row must finish
            // within it, even on a busy machine.
            "--timeout",
            "2",
            "--json",
            "--filter",
            "block send",
        ])
        .env(TEST_HANG_ENV, hooks)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "exit status; stderr:\n{err}");
    let hung = |fields: &[&str]| {
        let mut all = fields.to_vec();
        all.push("\"hung\":true");
        all.push("\"fails_run\":true");
        find_line(&json, &all)
            .unwrap_or_else(|| panic!("no hung line {fields:?} in:\n{json}\nstderr:\n{err}"));
    };
    let measured = |fields: &[&str]| {
        let mut all = fields.to_vec();
        all.push("\"p50_ns\":");
        find_line(&json, &all)
            .unwrap_or_else(|| panic!("no row {fields:?} in:\n{json}\nstderr:\n{err}"));
    };
    for think in ["\"think_us\":200,", "\"think_us\":2000,"] {
        hung(&[
            "\"kind\":\"paced\"",
            think,
            "\"id\":\"shmsock_adaptive_send\"",
        ]);
        measured(&["\"kind\":\"paced\"", think, "\"id\":\"unix_stream\""]);
    }
    for clients in ["\"clients\":1,", "\"clients\":4,"] {
        for load in ["\"load\":0,", "\"load\":1,"] {
            let cell = ["\"kind\":\"paced\"", "\"rate_per_s\":1000,", clients, load];
            hung(&[&cell[..], &["\"id\":\"shmsock_block_send\""]].concat());
            for id in ["\"id\":\"unix_stream\"", "\"id\":\"shmsock_adaptive_send\""] {
                measured(&[&cell[..], &[id]].concat());
            }
            assert!(
                find_line(&json, &["\"kind\":\"paced_target\"", clients, load]).is_some(),
                "no target line for {clients} {load}:\n{json}"
            );
        }
    }
    hung(&["\"kind\":\"idle\"", "\"id\":\"shmsock_adaptive_send\""]);
    assert!(
        find_line(
            &json,
            &["\"kind\":\"idle\"", "\"id\":\"unix_stream\"", "cpu_ns"]
        )
        .is_some(),
        "{json}"
    );
    for clients in ["\"clients\":1,", "\"clients\":8,", "\"clients\":32,"] {
        hung(&[
            "\"kind\":\"fanin\"",
            clients,
            "\"id\":\"shmsock_block_send\"",
        ]);
        measured(&["\"kind\":\"fanin\"", clients, "\"id\":\"unix_stream\""]);
    }
    // The main table ran, unaffected (its hook is the bare id).
    assert!(line(&json, "row", "shmsock_block_send").is_some(), "{json}");
    for what in [
        "paced think 200µs shmsock Adaptive send",
        "spaced 4 clients 1 busy shmsock Block send",
        "idle wait shmsock Adaptive send",
        "fan-in 32 clients shmsock Block send",
    ] {
        assert!(err.contains(what), "{what:?} not in stderr:\n{err}");
    }
    assert!(err.contains("transfers hung in:"), "{err}");
}

fn bench(hang: &str, filter: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmsock"))
        .args([
            "bench",
            "--quick",
            "--sizes",
            "64",
            "--no-paced",
            "--no-fanin",
            "--no-fanout",
            "--no-pin",
            // Every other transfer of the run must finish within it, even
            // on a busy machine (else it is reported hung too).
            "--timeout",
            "3",
            "--json",
            "--filter",
            filter,
        ])
        .env(TEST_HANG_ENV, hang)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON line of kind `kind` about transport `id`, if any.
fn line<'a>(json: &'a str, kind: &str, id: &str) -> Option<&'a str> {
    json.lines().find(|l| {
        l.contains(&format!("\"kind\":\"{kind}\"")) && l.contains(&format!("\"id\":\"{id}\""))
    })
}

fn hung_iceoryx2_row_is_reported_and_the_run_succeeds() {
    let (code, json, err) = bench("iceoryx2_event_copy", "iceoryx2 event copy");
    assert_eq!(code, Some(0), "exit status; stderr:\n{err}");
    let hung = line(&json, "skipped", "iceoryx2_event_copy")
        .unwrap_or_else(|| panic!("no hung line in:\n{json}\nstderr:\n{err}"));
    assert!(hung.contains("\"hung\":true"), "{hung}");
    assert!(hung.contains("\"fails_run\":false"), "{hung}");
    // The run went on: the baseline row and the floor are there.
    assert!(line(&json, "row", "unix_stream").is_some(), "{json}");
    assert!(json.contains("\"kind\":\"floor\""), "{json}");
    assert!(err.contains("hung"), "{err}");
}

fn hung_shmsock_row_fails_the_run_after_the_tables() {
    let (code, json, err) = bench("shmsock_block_send", "block send");
    assert_eq!(code, Some(3), "exit status; stderr:\n{err}");
    let hung = line(&json, "skipped", "shmsock_block_send")
        .unwrap_or_else(|| panic!("no hung line in:\n{json}\nstderr:\n{err}"));
    assert!(hung.contains("\"hung\":true"), "{hung}");
    assert!(hung.contains("\"fails_run\":true"), "{hung}");
    assert!(line(&json, "row", "unix_stream").is_some(), "{json}");
    assert!(json.contains("\"kind\":\"target\""), "{json}");
    assert!(
        err.contains("transfers hung in: 64 B shmsock Block send"),
        "{err}"
    );
}

fn hung_fanout_iceoryx2_rows_are_reported_and_the_run_succeeds() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmsock"))
        .args([
            "bench",
            "--fanout-only",
            "--quick",
            "--sizes",
            "64",
            // Beyond each row's planned phases.
            "--timeout",
            "2",
            "--json",
            "--filter",
            "iceoryx2 event",
        ])
        .env(TEST_HANG_ENV, "iceoryx2-event")
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "exit status; stderr:\n{err}");
    for n in [1, 4, 8] {
        let hung = json
            .lines()
            .find(|l| {
                l.contains("\"id\":\"iceoryx2-event\"")
                    && l.contains(&format!("\"subscribers\":{n},"))
            })
            .unwrap_or_else(|| panic!("no line for {n} subscribers in:\n{json}\n{err}"));
        assert!(hung.contains("\"hung\":true"), "{hung}");
        assert!(hung.contains("\"fails_run\":false"), "{hung}");
        // The baseline row of the same subscriber count was measured.
        assert!(
            json.lines().any(|l| l.contains("\"id\":\"stream\"")
                && l.contains(&format!("\"subscribers\":{n},"))
                && l.contains("msgs_per_s")),
            "{json}"
        );
    }
    assert_no_children();
}

fn main() {
    common::run(&[
        (
            "hung_stream_fails_with_hung_and_reaps_the_peer",
            hung_stream_fails_with_hung_and_reaps_the_peer,
        ),
        (
            "hung_iceoryx2_row_is_reported_and_the_run_succeeds",
            hung_iceoryx2_row_is_reported_and_the_run_succeeds,
        ),
        (
            "hung_shmsock_row_fails_the_run_after_the_tables",
            hung_shmsock_row_fails_the_run_after_the_tables,
        ),
        (
            "hung_paced_session_fails_with_hung_and_reaps_the_peer",
            hung_paced_session_fails_with_hung_and_reaps_the_peer,
        ),
        (
            "hung_paced_spaced_idle_fanin_rows_are_skipped_and_the_run_exits_3",
            hung_paced_spaced_idle_fanin_rows_are_skipped_and_the_run_exits_3,
        ),
        (
            "hung_fanout_iceoryx2_rows_are_reported_and_the_run_succeeds",
            hung_fanout_iceoryx2_rows_are_reported_and_the_run_succeeds,
        ),
    ]);
}
