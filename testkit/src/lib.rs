//! Test helpers of shmsock (not published), shared by the fork-based test
//! binaries (`tests/`), the `bench` harness and the fuzz targets:
//!
//! - [`fork`]: THE fork helper: refuses to fork a multi-threaded process,
//!   checks how the child ended, kills it on a timeout or on drop;
//! - [`harness`]: the runner of the `harness = false` test binaries (one
//!   case after another on the main thread, each checked for leaked fds)
//!   and its panicking child handle;
//! - [`peer`]: building blocks of hostile peers (raw sockets, raw
//!   `SCM_RIGHTS`, memfds with chosen seals and backing);
//! - [`pin`]: CPU affinity;
//! - [`fuzz`]: the fuzz drivers, run by the cargo-fuzz targets and as
//!   proptest cases in CI.
// Test code: a failed setup must abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod fork;
pub mod fuzz;
pub mod harness;
pub mod peer;
pub mod pin;
