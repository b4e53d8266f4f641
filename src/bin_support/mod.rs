//! The `shmsock bench` subcommand. Its core (forking, links, sessions, the
//! machine's floor) is shared with the criterion benchmark
//! `benches/transport.rs`, which includes those files by path; `run` and
//! `report` are the binary's own.

pub mod child;
pub mod fanin;
pub mod floor;
pub mod link;
pub mod load;
pub mod paced;
pub mod pattern;
pub mod pin;
pub mod report;
pub mod run;
pub mod session;
pub mod watchdog;
