//! # shmsock-services
//!
//! Named services on top of shmsock's transport: a broker that maps names
//! to live providers and introduces processes to each other (no payload
//! passes through it), publish/subscribe from one writer to many readers,
//! and request/response with per-request ids and timeouts, with optional
//! typed messages.
//!
//! - [`pubsub`]: one [`Publisher`](pubsub::Publisher) to many
//!   [`Subscriber`](pubsub::Subscriber) processes through one
//!   shared-memory ring.
//! - [`broker`]: the [`Broker`](broker::Broker), the
//!   [`Provider`](broker::Provider) side and [`lookup`](broker::lookup).
//! - [`connect`] and [`ServiceListener`]: a shmsock [`Connection`] to or
//!   from a [`Target`], which is either a socket path (no broker: plain
//!   shmsock) or a service name that a broker resolves.
//! - [`rpc`]: request/response over shmsock connections; [`typed`]:
//!   typed messages (features `serde` and `pod`).
//! - [`wire`]: every byte format of this crate.
//!
//! # Example
//! ```no_run
//! use shmsock_services::{connect, ServiceListener, Target, LookupPolicy};
//! use shmsock_transport::Builder;
//!
//! # fn main() -> Result<(), shmsock_services::Error> {
//! // Server: by name (through the default broker) or by path: the same code.
//! let mut listener = ServiceListener::bind(Target::parse("demo.echo")?, Builder::new(), LookupPolicy::SameUid)?;
//! std::thread::spawn(move || -> Result<(), shmsock_services::Error> {
//!     let mut conn = listener.accept()?;
//!     let m = conn.recv()?.to_vec();
//!     conn.send(&m)?;
//!     Ok(())
//! });
//! let mut conn = connect(&Target::parse("demo.echo")?, &Builder::new())?;
//! conn.send(b"hello")?;
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

pub mod broker;
mod error;
mod name;
pub mod pubsub;
pub mod rpc;
mod service;
pub mod typed;
pub mod wire;

pub use error::{Error, Result};
pub use name::{Name, Target, MAX_NAME_LEN};
pub use service::{connect, Pending, ServiceListener, ToTarget};
pub use shmsock_transport::Connection;
pub use wire::{LookupPolicy, Peer, Refusal};
