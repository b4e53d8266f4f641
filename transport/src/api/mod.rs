//! The blocking public API: thin wrappers over the non-blocking core
//! ([`crate::core`]) that wait through the one wait loop
//! ([`crate::wait::wait_until`]).

pub(crate) mod connection;
pub(crate) mod message;
pub(crate) mod mid_message;
pub(crate) mod reader;
pub(crate) mod receiver;
pub(crate) mod sender;
pub(crate) mod writer;
