//! The broker: maps service names to live providers and introduces
//! consumers to them. No payload passes through it.
//!
//! - [`Broker`] is the broker itself (a library type; the `shmsock broker`
//!   command runs one).
//! - [`Provider`] registers names and yields an [`Introduction`] (a
//!   connected socket) per consumer; it re-registers with a restarted
//!   broker by itself.
//! - [`lookup`] gives a consumer a connected socket to a name's provider.
//!
//! How an introduction works: the consumer makes a Unix `SOCK_SEQPACKET`
//! socket pair, keeps one end and sends the other with its `Lookup` to the
//! broker (`SCM_RIGHTS`). The broker checks the name's policy against the
//! consumer's `SO_PEERCRED` and passes the fd on to the provider over its
//! registration connection. The two processes then run the ordinary
//! shmsock handshake over the pair ([`shmsock_transport::Builder::connect_socket`]
//! and [`accept_socket`](shmsock_transport::Builder::accept_socket)), and
//! talk directly: the broker can die without disturbing them.
//! `docs/services.md` has the protocol byte by byte and the threat model.
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use shmsock_services::broker::{lookup, Broker, Provider};
//! use shmsock_services::LookupPolicy;
//! use shmsock_transport::Builder;
//!
//! # fn main() -> Result<(), shmsock_services::Error> {
//! let path = "/tmp/doc-broker.sock";
//! let mut broker = Broker::bind(path)?;
//! std::thread::spawn(move || broker.run());
//!
//! let mut provider = Provider::register(path, "echo", LookupPolicy::SameUid)?;
//! let server = std::thread::spawn(move || -> Result<(), shmsock_services::Error> {
//!     let mut conn = provider.accept()?.accept(&Builder::new())?;
//!     let m = conn.recv()?.to_vec();
//!     conn.send(&m)?;
//!     Ok(())
//! });
//! let (sock, _provider) = lookup(path, "echo", Duration::from_secs(5))?;
//! let mut conn = Builder::new().connect_socket(sock)?;
//! conn.send(b"hi")?;
//! assert_eq!(conn.recv()?.to_vec(), b"hi");
//! # Ok(()) }
//! ```

mod client;
mod server;
mod sock;
#[cfg(test)]
pub(crate) mod testing;

pub(crate) use client::lookup_name;
pub use client::{lookup, Introduction, Provider};
pub use server::{Broker, BrokerOptions};

use std::path::PathBuf;

/// Environment variable naming the default broker socket.
pub const BROKER_ENV: &str = "SHMSOCK_BROKER";

/// The broker socket that names resolve at by default: `$SHMSOCK_BROKER`
/// if set, else `$XDG_RUNTIME_DIR/shmsock-broker.sock`, else
/// `/tmp/shmsock-broker-<uid>.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(BROKER_ENV) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("shmsock-broker.sock");
    }
    PathBuf::from(format!(
        "/tmp/shmsock-broker-{}.sock",
        rustix::process::geteuid().as_raw()
    ))
}
