//! iceoryx2 (crates.io `iceoryx2`, the `ipc::Service` flavour) as a
//! benchmarked transport, so that shmsock is compared with the leading
//! Rust zero-copy IPC library in the same run (issue 10, item 9).
//!
//! A link is two publish-subscribe services of `[u8]` slices, one each
//! way (iceoryx2's own round-trip benchmark does the same), each with one
//! publisher and one subscriber, no history, no overflow: a full
//! subscriber queue makes the publisher retry until delivered
//! (`BackpressureStrategy::RetryUntilDelivered`), so nothing is lost and
//! the one-way stream measures delivered messages. Publishers are created
//! with `initial_max_slice_len` = the message size.
//!
//! Two ways to move the bytes ([`IoxApi`]): `Copy` fills a private buffer
//! and copies it into a loaned sample (`loan_slice_uninit` +
//! `write_from_slice`, the slice form of `send_copy`), and the receiver
//! copies the sample out before checking it; `Loan` writes the pattern in
//! place into the loaned sample and the receiver checks the sample in
//! place (true zero-copy). Every byte is written and checked with
//! [`pattern`], as for every other transport.
//!
//! Two ways to wait ([`IoxWait`]): `Poll` busy-polls `receive` (as
//! iceoryx2's benchmark does); `Event` adds an event service per
//! direction: the sender notifies after each `send`, the receiver blocks
//! in `Listener::timed_wait` whenever its queue is empty. The publisher's
//! own wait on a full queue is iceoryx2's retry loop in both variants.
//!
//! Names and clean-up: every link gets fresh service names (process id and
//! a counter), and the nodes are created with iceoryx2's defaults, which
//! remove the resources of dead nodes (a run killed mid-way) when a node is
//! created. Every node and port is dropped at the end of its session, which
//! removes its files under `/dev/shm` and `/tmp/iceoryx2`.

use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::service::port_factory::event::PortFactory as EventFactory;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;

use super::child::Result;
use super::link::Link;
use super::pattern;
use super::watchdog;

/// How the receiver waits for the next sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoxWait {
    /// Busy-polls `Subscriber::receive` (compare with shmsock `Spin`).
    Poll,
    /// Waits on an event service's `Listener`, woken by the sender's
    /// `Notifier` (compare with shmsock `Block`).
    Event,
}

/// How the bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoxApi {
    /// A private buffer copied into the loaned sample; the receiver copies
    /// the sample out (compare with shmsock `send`).
    Copy,
    /// Written in place into the loaned sample, checked in place by the
    /// receiver (compare with shmsock `reserve`).
    Loan,
}

/// The services of one link, named by a prefix unique to the session.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

/// Counter making every link's service names unique within this process.
static LINK_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Names {
    /// Fresh names (this process's id and a counter).
    pub fn fresh() -> Names {
        // Relaxed: a plain counter, nothing is published through it.
        let n = LINK_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Names {
            prefix: format!("shmsock-bench/{}/{n}", std::process::id()),
        }
    }

    /// The service `what` of this link (or fan-out row).
    pub(crate) fn service(&self, what: &str) -> Result<ServiceName> {
        let name = format!("{}/{what}", self.prefix);
        ServiceName::new(&name).map_err(|e| format!("iceoryx2 service name {name:?}: {e:?}").into())
    }
}

/// Which end of the link: the measuring parent creates the services, the
/// forked peer opens them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Creates the services; publishes on `a2b`, subscribes to `b2a`.
    Parent,
    /// Opens the services; publishes on `b2a`, subscribes to `a2b`.
    Child,
}

/// Subscriber queue length for messages of `size` bytes: about 1 MiB of
/// messages in flight (as a shmsock ring of the bench holds four or more
/// messages), at least 4, at most 256.
pub fn queue_len(size: usize) -> usize {
    ((1usize << 20) / size.max(1)).clamp(4, 256)
}

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;
type PubSub = PubSubFactory<ipc::Service, [u8], ()>;

/// One end of an iceoryx2 link (boxed: iceoryx2's ports are large, and the
/// session keeps every transport's link in one enum).
pub struct IoxLink(Box<Inner>);

struct Inner {
    // Field order is drop order: ports before their services, services
    // before the node.
    tx: Pub,
    rx: Sub,
    notify: Option<Notifier<ipc::Service>>,
    listen: Option<Listener<ipc::Service>>,
    _services: (PubSub, PubSub),
    _events: Option<(EventFactory<ipc::Service>, EventFactory<ipc::Service>)>,
    _node: Node<ipc::Service>,
    api: IoxApi,
    timeout: Duration,
    buf: Vec<u8>,
}

/// Retries `f` every millisecond until it succeeds or `timeout` passes
/// (the peer opens services the parent is still creating).
fn retry<T, E: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("iceoryx2: {what}: {e:?}").into())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Waits until `ready()` holds, or fails after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(format!("iceoryx2: {what} within {timeout:?}").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

impl IoxLink {
    /// Builds this side's end of a link for messages of `size` bytes and
    /// waits (up to `timeout`) until the peer's ports are connected.
    ///
    /// # Errors
    /// iceoryx2 errors (no shared memory, names taken, ...), or the peer
    /// not showing up in time.
    pub fn connect(
        names: &Names,
        side: Side,
        size: usize,
        wait: IoxWait,
        api: IoxApi,
        timeout: Duration,
    ) -> Result<IoxLink> {
        // Warnings only (the default prints every clean-up it does).
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            // The bench's SIGALRM watchdog and the fork helper own signals.
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| format!("iceoryx2: creating a node: {e:?}"))?;
        let pubsub = |what: &str| -> Result<PubSub> {
            let name = names.service(what)?;
            let builder = || {
                node.service_builder(&name)
                    .publish_subscribe::<[u8]>()
                    .max_publishers(1)
                    .max_subscribers(1)
                    .max_nodes(2)
                    .history_size(0)
                    .subscriber_max_buffer_size(queue_len(size))
                    .subscriber_max_borrowed_samples(1)
                    .enable_safe_overflow(false)
            };
            match side {
                Side::Parent => builder()
                    .create()
                    .map_err(|e| format!("iceoryx2: creating service {what}: {e:?}").into()),
                Side::Child => retry(&format!("opening service {what}"), timeout, || {
                    builder().open()
                }),
            }
        };
        let event = |what: &str| -> Result<EventFactory<ipc::Service>> {
            let name = names.service(what)?;
            let builder = || node.service_builder(&name).event().max_nodes(2);
            match side {
                Side::Parent => builder()
                    .create()
                    .map_err(|e| format!("iceoryx2: creating event {what}: {e:?}").into()),
                Side::Child => retry(&format!("opening event {what}"), timeout, || {
                    builder().open()
                }),
            }
        };
        let a2b = pubsub("a2b")?;
        let b2a = pubsub("b2a")?;
        let (tx_svc, rx_svc) = match side {
            Side::Parent => (&a2b, &b2a),
            Side::Child => (&b2a, &a2b),
        };
        let tx = tx_svc
            .publisher_builder()
            .initial_max_slice_len(size)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            // Retry as the strategy says, but give up once the watchdog
            // killed the peer (a dead subscriber's full queue never drains).
            // Called only while the queue is full.
            .set_backpressure_handler(|_: &BackpressureInfo| {
                if watchdog::fired() {
                    BackpressureAction::DiscardDataAndFail
                } else {
                    BackpressureAction::Retry
                }
            })
            .create()
            .map_err(|e| format!("iceoryx2: creating a publisher ({size} B slices): {e:?}"))?;
        let rx = rx_svc
            .subscriber_builder()
            .create()
            .map_err(|e| format!("iceoryx2: creating a subscriber: {e:?}"))?;
        let (notify, listen, events) = match wait {
            IoxWait::Poll => (None, None, None),
            IoxWait::Event => {
                let ea2b = event("a2b-event")?;
                let eb2a = event("b2a-event")?;
                let (tx_ev, rx_ev) = match side {
                    Side::Parent => (&ea2b, &eb2a),
                    Side::Child => (&eb2a, &ea2b),
                };
                let n = tx_ev
                    .notifier_builder()
                    .create()
                    .map_err(|e| format!("iceoryx2: creating a notifier: {e:?}"))?;
                let l = rx_ev
                    .listener_builder()
                    .create()
                    .map_err(|e| format!("iceoryx2: creating a listener: {e:?}"))?;
                // A notification sent before the peer's listener exists
                // would be lost.
                wait_for("the peer's listener", timeout, || {
                    tx_ev.dynamic_config().number_of_listeners() >= 1
                })?;
                (Some(n), Some(l), Some((ea2b, eb2a)))
            }
        };
        // A sample sent before the peer's subscriber exists would be lost
        // (no history); wait for both of the peer's ports.
        wait_for("the peer's subscriber and publisher", timeout, || {
            tx_svc.dynamic_config().number_of_subscribers() >= 1
                && rx_svc.dynamic_config().number_of_publishers() >= 1
        })?;
        let mut buf = vec![0u8; if api == IoxApi::Copy { size } else { 0 }];
        // Fault the private buffer's pages in, as the other links do.
        pattern::fill(&mut buf, u64::MAX);
        Ok(IoxLink(Box::new(Inner {
            tx,
            rx,
            notify,
            listen,
            _services: (a2b, b2a),
            _events: events,
            _node: node,
            api,
            timeout,
            buf,
        })))
    }
}

/// Longest single listener wait: [`Inner::next`] checks the deadline and
/// the watchdog in between, and a sample that arrived without its
/// notification is found after this long (and reported) instead of at the
/// deadline.
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(100);

impl Inner {
    /// The next sample, waiting as the link's [`IoxWait`] says, for at most
    /// the link's timeout.
    fn next(&mut self) -> Result<Sample<ipc::Service, [u8], ()>> {
        let deadline = Instant::now() + self.timeout;
        let mut spins = 0u32;
        // The last listener wait ran out with no notification.
        let mut unwoken = false;
        loop {
            if let Some(s) = self
                .rx
                .receive()
                .map_err(|e| format!("iceoryx2: receive: {e:?}"))?
            {
                if unwoken {
                    // A sample was there but no notification came within
                    // WAIT_SLICE: a lost wake-up, or a sender descheduled
                    // between its send and its notify. It cost this sample
                    // WAIT_SLICE (measured); said on stderr, it was a hang
                    // before the waits were sliced.
                    eprintln!(
                        "bench: iceoryx2 event: a sample waited {WAIT_SLICE:?} with no \
                         notification (a lost wake-up, or a sender descheduled between \
                         its send and its notify)"
                    );
                }
                return Ok(s);
            }
            match &self.listen {
                Some(l) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || watchdog::fired() {
                        return Err(format!("iceoryx2: no sample within {:?}", self.timeout).into());
                    }
                    // Drains every pending notification; a notification sent
                    // after the `receive` above is still pending here, so no
                    // wake-up is lost. At most WAIT_SLICE at a time, to
                    // notice the watchdog (never reached while samples flow).
                    let t0 = Instant::now();
                    let woken = l
                        .timed_wait(|_| {}, left.min(WAIT_SLICE))
                        .map_err(|e| format!("iceoryx2: listener wait: {e:?}"))?;
                    unwoken = woken == 0 && t0.elapsed() >= WAIT_SLICE;
                }
                None => {
                    std::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(4096)
                        && (Instant::now() >= deadline || watchdog::fired())
                    {
                        return Err(format!("iceoryx2: no sample within {:?}", self.timeout).into());
                    }
                }
            }
        }
    }
}

impl Link for IoxLink {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        self.0.send(seq, len)
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        self.0.recv(seq, len)
    }
}

impl Inner {
    fn send(&mut self, seq: u64, len: usize) -> Result<()> {
        let mut sample = self
            .tx
            .loan_slice_uninit(len)
            .map_err(|e| format!("iceoryx2: loan of {len} B: {e:?}"))?;
        let sample = match self.api {
            IoxApi::Copy => {
                let buf = &mut self.buf[..len];
                pattern::fill(buf, seq);
                sample.write_from_slice(buf)
            }
            IoxApi::Loan => {
                let bytes: &mut [MaybeUninit<u8>] = sample.payload_mut();
                pattern::fill_uninit(bytes, seq);
                // SAFETY: `fill_uninit` wrote every byte of the payload.
                unsafe { sample.assume_init() }
            }
        };
        sample
            .send()
            .map_err(|e| format!("iceoryx2: send: {e:?}"))?;
        if let Some(n) = &self.notify {
            n.notify().map_err(|e| format!("iceoryx2: notify: {e:?}"))?;
        }
        Ok(())
    }

    fn recv(&mut self, seq: u64, len: usize) -> Result<()> {
        let sample = self.next()?;
        let bytes: &[u8] = sample.payload();
        if bytes.len() != len {
            return Err(pattern::Corrupt {
                seq,
                len,
                got_len: bytes.len(),
                got_sum: 0,
                want_sum: pattern::expected(seq, len),
            }
            .into());
        }
        match self.api {
            IoxApi::Copy => {
                let buf = &mut self.buf[..len];
                buf.copy_from_slice(bytes);
                drop(sample);
                pattern::verify(buf, seq, len)?;
            }
            IoxApi::Loan => pattern::verify(bytes, seq, len)?,
        }
        Ok(())
    }
}
