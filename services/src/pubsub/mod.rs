//! Publish/subscribe: one publisher, many subscriber processes, one
//! shared-memory ring.
//!
//! The publisher's data segment holds the ring (a sealed memfd every
//! subscriber maps read-only); each subscriber keeps its read cursor in a
//! small sealed segment of its own, which the publisher maps read-only. So
//! every shared byte has one writer, and the kernel enforces it: a hostile
//! subscriber can neither corrupt what the others read nor make the
//! publisher overwrite their unread messages. The socket carries only the
//! handshake (which passes the two segments' fds) and wake-up bytes for
//! sleeping readers. Layout, protocol, policies and threat model:
//! `docs/services.md`.
//!
//! - [`Policy::Block`]: no subscriber loses a message; the slowest holds
//!   the publisher back, and one that makes no progress for `max_lag` is
//!   disconnected ([`Error::Evicted`] on its side).
//! - [`Policy::DropOldest`]: the publisher never waits; a subscriber that
//!   falls a ring behind skips to the oldest intact message and
//!   [`Received::lost`] says exactly how many it missed.
//!
//! # Examples
//! ```no_run
//! use shmsock_services::pubsub::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), shmsock_services::pubsub::Error> {
//! // Process A
//! let mut publisher = Publisher::create("/tmp/topic.sock", PublisherOptions::new())?;
//! publisher.wait_for_subscribers(1, Duration::from_secs(5))?;
//! publisher.send(b"hello")?;
//!
//! // Process B
//! let mut sub = Subscriber::subscribe("/tmp/topic.sock", SubscriberOptions::new())?;
//! let mut buf = Vec::new();
//! let msg = sub.recv(&mut buf)?;
//! assert_eq!((&buf[..], msg.seq), (&b"hello"[..], 0));
//! # Ok(()) }
//! ```

mod error;
mod publisher;
mod subscriber;

pub use error::{Error, Result};
pub use publisher::{Loan, Publisher, PublisherOptions};
pub use shmsock_shm::fanout::Policy;
pub use subscriber::{Received, Sample, Subscriber, SubscriberOptions};

#[cfg(test)]
mod tests;
