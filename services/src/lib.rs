//! # shmsock-services
//!
//! Named services on top of shmsock's transport: a broker that maps names
//! to live providers and introduces processes to each other (no payload
//! passes through it), publish/subscribe from one writer to many readers,
//! and request/response with per-request ids and timeouts.
//!
//! - [`pubsub`]: one [`Publisher`](pubsub::Publisher) to many
//!   [`Subscriber`](pubsub::Subscriber) processes through one
//!   shared-memory ring.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

pub mod pubsub;
