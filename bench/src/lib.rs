//! The `shmsock bench` harness (not published). Its core (forking, links,
//! sessions, the machine's floor) serves both the `shmsock` binary
//! (`cargo run --release -- bench` at the workspace root) and the criterion
//! benchmarks in `benches/`; `run` and `report` are the binary's own.

// Harness types hold processes, sockets and connections that nothing prints.
#![allow(missing_debug_implementations)]

/// The fork helper, shared with the tests (`shmsock-testkit`).
pub use shmsock_testkit::fork as child;
pub mod fanin;
pub mod fanout;
pub mod fanout_iox;
pub mod floor;
pub mod idle;
pub mod iox;
pub mod link;
pub mod load;
pub mod paced;
pub mod pattern;
pub mod plot;
/// CPU affinity, shared with the tests (`shmsock-testkit`).
pub use shmsock_testkit::pin;
pub mod report;
pub mod run;
pub mod session;
pub mod spaced;
pub mod watchdog;
