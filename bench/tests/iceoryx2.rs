//! The iceoryx2 rows of `bench` work end to end: each variant (busy-poll
//! and event-driven, copy and loan) does checked round trips and a checked
//! one-way stream with a forked peer, at a small size and at 1 MiB, and
//! leaves no iceoryx2 files behind in `/dev/shm`.
//!
//! Its own test binary (`harness = false`): sessions fork, which needs a
//! single-threaded process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_bench::session::{Options, Session, Transport};
use shmsock_testkit::harness as common;

/// iceoryx2's files in `/dev/shm` (it names them `iox2_…`).
fn iox_files() -> usize {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("iox2_"))
                .count()
        })
        .unwrap_or(0)
}

fn every_variant_round_trips_and_streams() {
    let before = iox_files();
    for t in Transport::iceoryx2() {
        for size in [64usize, 1 << 20] {
            let mut s = Session::start(t, size, &Options::default())
                .unwrap_or_else(|e| panic!("{t} {size} B: {e}"));
            let mut samples = Vec::new();
            s.round_trips(20, Some(&mut samples))
                .unwrap_or_else(|e| panic!("{t} {size} B round trips: {e}"));
            assert_eq!(samples.len(), 20);
            // More messages than the subscriber queue holds (256 at 64 B, 4
            // at 1 MiB: `iox::queue_len`): the publisher
            // must wait for the receiver, and nothing may be lost.
            let n = if size > 4096 { 20 } else { 600 };
            s.stream(n)
                .unwrap_or_else(|e| panic!("{t} {size} B stream: {e}"));
            s.finish().unwrap();
        }
    }
    // Nodes, services and ports are dropped at the end of each session:
    // nothing of ours is left (a stale file of a killed run may even have
    // been removed by a node created here).
    let after = iox_files();
    assert!(
        after <= before,
        "iceoryx2 files in /dev/shm: {before} before, {after} after"
    );
}

fn main() {
    common::run(&[(
        "every_variant_round_trips_and_streams",
        every_variant_round_trips_and_streams,
    )]);
}
