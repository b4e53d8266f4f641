//! Control plane and public API of [shmsock](https://docs.rs/shmsock): a
//! Unix `SOCK_SEQPACKET` socket carries the handshake, wake-ups and memfds;
//! payloads cross through shared-memory rings.
//!
//! - [`Listener`] binds a socket path and accepts [`Connection`]s from many
//!   client processes, running their handshakes concurrently (a silent
//!   client delays nobody); [`Listener::try_accept`] and the listener's fd
//!   serve event loops. [`Connection::connect`] (or a [`Builder`]) connects.
//! - [`handshake`] holds both sides of the handshake as state machines with
//!   no socket I/O, for other drivers (async runtimes, brokers).
//! - A connection is bidirectional: one ring per direction. [`Connection::send`]
//!   copies into the ring; [`Connection::reserve`] lends ring space for
//!   zero-copy writes; [`Connection::recv`] returns a [`Message`] read in
//!   place. [`Connection::split`] gives a [`Sender`] and a [`Receiver`].
//! - [`Connection::send_batch`] (or, zero-copy, a [`Batch`] from
//!   [`Connection::batch`]) and [`Connection::recv_batch`] move many small
//!   messages with one cursor store and at most one wake-up per batch on
//!   each side.
//! - Messages larger than one ring record stream through the ring in
//!   fragments, copied out as they arrive (pipelined).
//! - A reader that finds the ring empty spins, then parks and sleeps on the
//!   socket; a writer sends a wake-up only to a parked reader, so a busy
//!   stream costs no syscalls.
//! - With the `tokio` feature, `tokio` holds the same API as futures
//!   (`tokio::{Listener, Connection, Sender, Receiver}`), over the same
//!   non-blocking core: no extra thread, no extra copy.
//!
//! # Example
//! ```no_run
//! use shmsock_transport::{Connection, Listener};
//!
//! # fn main() -> Result<(), shmsock_transport::Error> {
//! let listener = Listener::bind("/tmp/echo.sock")?;
//! std::thread::spawn(move || -> Result<(), shmsock_transport::Error> {
//!     let mut conn = listener.accept()?;
//!     loop {
//!         let msg = conn.recv()?.to_vec();
//!         conn.send(&msg)?;
//!     }
//! });
//! let mut client = Connection::connect("/tmp/echo.sock")?;
//! client.send(b"hello")?;
//! assert_eq!(client.recv()?.to_vec(), b"hello");
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

mod api;
mod core;
mod error;
mod error_map;
mod fdpass;
pub mod handshake;
mod listener;
mod options;
mod shutdown;
// Claiming a socket path (stale-socket probe, bind-time claim, removal on
// drop). Public for `shmsock-services`, not part of the supported API.
#[doc(hidden)]
pub mod socket_path;
#[cfg(feature = "tokio")]
pub mod tokio;
mod wait;
/// Every byte that crosses the socket. Public for the fuzz targets and the
/// hostile-peer tests, not part of the supported API.
#[doc(hidden)]
pub mod wire;

pub use api::connection::Connection;
pub use api::message::Message;
pub use api::reader::MessageReader;
pub use api::receiver::Receiver;
pub use api::sender::{Batch, BatchGrant, Sender, WriteGrant};
pub use api::writer::{Chunk, MessageWriter};
pub use error::{Error, ProtocolViolation, Result};
pub use listener::Listener;
pub use options::{Builder, Credentials, CredentialsPolicy, WaitStrategy};
pub use shutdown::ShutdownHandle;
