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
//! Across processes the two sides meet through a socket path
//! ([`Publisher::create`], [`Subscriber::subscribe`]) or a broker; here a
//! connected socket pair and a thread stand in for them:
//! ```
//! use shmsock_services::pubsub::{Publisher, PublisherOptions, Subscriber, SubscriberOptions};
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), shmsock_services::pubsub::Error> {
//! let mut publisher = Publisher::new(PublisherOptions::new().capacity(64 << 10))?;
//! let (ours, theirs) = UnixStream::pair().expect("socketpair");
//! let reader = std::thread::spawn(move || -> Result<Vec<u8>, shmsock_services::pubsub::Error> {
//!     let mut sub = Subscriber::from_stream(theirs, SubscriberOptions::new())?;
//!     let mut buf = Vec::new();
//!     let msg = sub.recv_timeout(&mut buf, Duration::from_secs(5))?;
//!     assert_eq!((msg.seq, msg.lost), (0, 0));
//!     Ok(buf)
//! });
//! publisher.add_subscriber_stream(ours)?;
//! publisher.wait_for_subscribers(1, Duration::from_secs(5))?;
//!
//! // Zero-copy: write the message in the ring, then publish it.
//! let mut loan = publisher.loan(5)?;
//! loan.copy_from_slice(b"hello");
//! loan.publish();
//!
//! assert_eq!(reader.join().expect("reader")?, b"hello");
//! # Ok(()) }
//! ```

mod deadline;
mod error;
mod publisher;
mod sock;
mod subscriber;
/// Every byte of the publish/subscribe protocol. Public for the
/// hostile-peer tests, not part of the supported API.
#[doc(hidden)]
pub mod wire;

pub use error::{Error, Result};
pub use publisher::{Loan, Publisher, PublisherOptions};
pub use shmsock_shm::fanout::Policy;
pub use subscriber::{Received, Sample, Subscriber, SubscriberOptions};

#[cfg(test)]
mod tests;
