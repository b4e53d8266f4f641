//! shmsock on tokio (feature `tokio`): [`Listener`], [`Connection`],
//! [`Sender`] and [`Receiver`] whose waits are futures. No extra thread,
//! no busy task, no extra copy: the same rings, the same non-blocking core
//! (`transport/src/core/`) and the same hostile-peer checks as the blocking API;
//! only the waiting differs.
//!
//! # Waiting
//! A call that finds the ring empty (or full) spins for a short window
//! sized like `WaitStrategy::Adaptive` (see [`Builder::wait`]; `Block`
//! disables it), then parks with the blocking side's protocol: mark the
//! ring parked, SeqCst fence (SYNC POINT `park-dekker`), re-check, and
//! await [`AsyncFd`](::tokio::io::unix::AsyncFd) readiness of the socket
//! the peer's wake-ups and hang-up arrive on. The task then yields to the
//! runtime like any socket read.
//!
//! # Cancellation
//! Every future here may be dropped at any `.await` (for example the loser
//! of a `tokio::select!`, or one cut short by `tokio::time::timeout`):
//! - [`Receiver::recv`]: a message is taken from the ring only in the poll
//!   that returns it, so a dropped `recv` loses none; a message larger than
//!   one ring record being reassembled keeps its progress in the receiver,
//!   and the next `recv` continues it.
//! - [`Sender::send`] and [`Sender::reserve`]: a message is written and
//!   published in one poll, after the wait; a dropped call has published
//!   nothing of it. A message larger than one record is streamed in
//!   fragments; if the future is dropped between two fragments the
//!   message is abandoned, and the next send first tells the peer to drop
//!   the partial message (as a blocking send that timed out does), so the
//!   peer never delivers half a message.
//! - [`Listener::accept`]: handshakes in progress live in the listener; a
//!   dropped `accept` loses no client.
//! - [`Connection::connect`]: a dropped connect closes its socket; the
//!   server sees a client that hung up.
//!
//! Timeouts: compose with `tokio::time::timeout` (the [`Builder`]'s
//! per-call `timeout` applies to the blocking API only; its
//! `handshake_timeout` applies to both).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), shmsock_transport::Error> {
//! use shmsock_transport::tokio::{Connection, Listener};
//!
//! let listener = Listener::bind("/tmp/async.sock")?;
//! let server = tokio::spawn(async move {
//!     let mut conn = listener.accept().await?;
//!     let (tx, rx) = conn.split();
//!     loop {
//!         let msg = rx.recv().await?;
//!         let mut reply = tx.reserve(msg.len()).await?;
//!         msg.copy_to(&mut reply);
//!         reply.commit()?;
//!     }
//!     # #[allow(unreachable_code)] Ok::<(), shmsock_transport::Error>(())
//! });
//! let mut client = Connection::connect("/tmp/async.sock").await?;
//! client.send(b"ping").await?;
//! assert_eq!(client.recv().await?.to_vec(), b"ping");
//! # drop(server); Ok(()) }
//! ```

mod connect;
mod connection;
mod listener;
mod readiness;
mod receiver;
mod sender;

pub use crate::api::message::Message;
pub use crate::api::sender::WriteGrant;
pub use crate::options::Builder;
pub use connection::Connection;
pub use listener::Listener;
pub use receiver::Receiver;
pub use sender::Sender;
