//! # shmsock
//!
//! Hybrid inter-process communication for Linux: a Unix domain socket is
//! the control plane (handshake, wake-ups, fd passing), shared memory is the
//! data plane. Messages cross through a lock-free ring in a sealed memfd
//! that only its sender can write (the receiver maps it read-only): no
//! syscall and no kernel copy per message when the stream is busy, and zero
//! copies with [`Connection::reserve`].
//!
//! Both processes may be hostile to each other: every value read from
//! shared memory or the socket is validated, and a lying peer gets a
//! [`Error::Protocol`], never undefined behaviour.
//!
//! # Example
//! ```no_run
//! use shmsock::{Connection, Listener};
//!
//! # fn main() -> Result<(), shmsock::Error> {
//! // Server process.
//! let listener = Listener::bind("/tmp/demo.sock")?;
//! # let server = std::thread::spawn(move || -> Result<(), shmsock::Error> {
//! let mut conn = listener.accept()?;
//! let msg = conn.recv()?;
//! println!("{} bytes from pid {}", msg.len(), conn_pid(&msg));
//! # Ok(()) });
//! # fn conn_pid(_: &shmsock::Message<'_>) -> i32 { 0 }
//!
//! // Client process.
//! let mut client = Connection::connect("/tmp/demo.sock")?;
//! client.send(b"hello")?;
//!
//! // Zero copy: write straight into shared memory.
//! let mut grant = client.reserve(5)?;
//! grant.copy_from_slice(b"world");
//! grant.commit()?;
//! # Ok(()) }
//! ```
//!
//! With the `tokio` feature (off by default), `shmsock::tokio` offers the
//! same connections as futures, for tokio runtimes (see `docs/guide.md`).
//!
//! See `docs/design.md` for the architecture and memory-ordering argument,
//! `docs/protocol.md` for the wire protocol.
#![deny(unsafe_op_in_unsafe_fn)]

pub use shmsock_shm as shm;
/// Async connections on tokio (feature `tokio`, off by default): see
/// [`shmsock_transport::tokio`].
#[cfg(feature = "tokio")]
pub use shmsock_transport::tokio;
/// Every byte that crosses the socket: for the fuzz targets and the
/// hostile-peer tests, not part of the supported API.
#[doc(hidden)]
pub use shmsock_transport::wire;
pub use shmsock_transport::{
    handshake, Batch, BatchGrant, Builder, Chunk, Connection, Credentials, CredentialsPolicy,
    Error, Listener, Message, MessageWriter, ProtocolViolation, Receiver, Result, Sender,
    ShutdownHandle, WaitStrategy, WriteGrant,
};

/// The README's example is compiled as a doctest, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
