//! iceoryx2 publish-subscribe in the fan-out scenario ([`super::fanout`]):
//! one iceoryx2 publisher, N subscriber processes, the same sizes, phases
//! and message layout as the shmsock rows, so that ratios can be read
//! within one run (issue 12, "against iceoryx2 publish-subscribe with the
//! same number of subscribers").
//!
//! The service: `[u8]` slices, one publisher, N subscribers, no history,
//! no overflow (`RetryUntilDelivered`: the publisher waits for the slowest
//! subscriber, as shmsock's `Block`), a subscriber queue of
//! [`queue_len`] messages (about 1 MiB in flight; 4 at 1 MiB, where the
//! shmsock ring of the row holds 7), publishers loaning slices of exactly
//! the message size. The publisher writes every byte in place into the
//! loaned sample; every subscriber checks every byte in place (iceoryx2's
//! zero-copy path; compare with shmsock's in-place rows).
//!
//! Two ways for the subscribers to wait ([`IoxFanWait`]):
//! - `Poll`: busy-polls `Subscriber::receive` (iceoryx2's own benchmark
//!   does this): the hot mode. With 4 or 8 subscribers on a 2-core machine,
//!   the spinners and the publisher share the cores by time slices.
//! - `Event`: an event service with N listeners; the publisher notifies
//!   after each `send`, a subscriber blocks in `Listener::timed_wait`
//!   whenever its queue is empty: the sleeping mode, as the shmsock rows.
//!
//! The end of the stream is a message of phase 2 (end); the
//! subscribers then report their latency samples on their control socket,
//! as the shmsock subscribers do.

use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::event::PortFactory as EventFactory;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;

use super::child::Result;
use super::fanout::{check_message, send_report, Meter, HEAD, PHASE_END};
use super::iox::{queue_len, Names, WAIT_SLICE};
use super::pattern;
use super::watchdog;

/// How iceoryx2 subscribers wait for the next sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoxFanWait {
    /// Busy-poll `receive` (hot).
    Poll,
    /// Sleep on an event listener, woken by the publisher's notifier.
    Event,
}

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;
type PubSub = PubSubFactory<ipc::Service, [u8], ()>;

/// A node with signal handling off (the bench's watchdog and fork helper
/// own signals) and errors-only logging.
fn node() -> Result<Node<ipc::Service>> {
    set_log_level(LogLevel::Error);
    Ok(NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .map_err(|e| format!("iceoryx2: creating a node: {e:?}"))?)
}

/// The service's properties; the publisher creates it, subscribers open
/// it with the same properties.
fn pubsub_builder<'a>(
    node: &'a Node<ipc::Service>,
    name: &'a ServiceName,
    size: usize,
    n: usize,
) -> iceoryx2::service::builder::publish_subscribe::Builder<[u8], (), ipc::Service> {
    node.service_builder(name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(n)
        .max_nodes(n + 1)
        .history_size(0)
        .subscriber_max_buffer_size(queue_len(size))
        .subscriber_max_borrowed_samples(1)
        .enable_safe_overflow(false)
}

fn event_builder<'a>(
    node: &'a Node<ipc::Service>,
    name: &'a ServiceName,
    n: usize,
) -> iceoryx2::service::builder::event::Builder<ipc::Service> {
    node.service_builder(name)
        .event()
        .max_nodes(n + 1)
        .max_notifiers(1)
        .max_listeners(n)
}

/// Retries `f` every millisecond until it succeeds or `timeout` passes.
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

/// The publisher's end of an iceoryx2 fan-out row.
pub struct IoxFanPub(Box<PubInner>);

struct PubInner {
    // Field order is drop order: ports before their services, services
    // before the node.
    tx: Pub,
    notify: Option<Notifier<ipc::Service>>,
    _service: PubSub,
    _event: Option<EventFactory<ipc::Service>>,
    _node: Node<ipc::Service>,
}

impl IoxFanPub {
    /// Creates the services and waits (up to `timeout`) until `n`
    /// subscribers (and, for `Event`, `n` listeners) are there.
    ///
    /// # Errors
    /// iceoryx2 errors, or the subscribers not showing up in time.
    pub fn create(
        names: &Names,
        size: usize,
        n: usize,
        wait: IoxFanWait,
        timeout: Duration,
    ) -> Result<IoxFanPub> {
        let node = node()?;
        let name = names.service("fanout")?;
        let service = pubsub_builder(&node, &name, size, n)
            .create()
            .map_err(|e| format!("iceoryx2: creating the fan-out service: {e:?}"))?;
        let tx = service
            .publisher_builder()
            .initial_max_slice_len(size)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            // Retry as the strategy says, until the watchdog killed the
            // subscribers (a dead subscriber's full queue never drains).
            .set_backpressure_handler(|_: &BackpressureInfo| {
                if watchdog::fired() {
                    BackpressureAction::DiscardDataAndFail
                } else {
                    BackpressureAction::Retry
                }
            })
            .create()
            .map_err(|e| format!("iceoryx2: creating a publisher ({size} B slices): {e:?}"))?;
        let (notify, event) = match wait {
            IoxFanWait::Poll => (None, None),
            IoxFanWait::Event => {
                let ename = names.service("fanout-event")?;
                let ev = event_builder(&node, &ename, n)
                    .create()
                    .map_err(|e| format!("iceoryx2: creating the event service: {e:?}"))?;
                let notifier = ev
                    .notifier_builder()
                    .create()
                    .map_err(|e| format!("iceoryx2: creating a notifier: {e:?}"))?;
                (Some(notifier), Some(ev))
            }
        };
        // No history: a sample sent before a subscriber exists would be
        // lost to it; a notification before its listener exists too.
        let deadline = Instant::now() + timeout;
        loop {
            let subs = service.dynamic_config().number_of_subscribers();
            let listeners = event
                .as_ref()
                .map_or(n, |e| e.dynamic_config().number_of_listeners());
            if subs >= n && listeners >= n {
                break;
            }
            if Instant::now() >= deadline || watchdog::fired() {
                return Err(format!(
                    "iceoryx2: {subs} subscribers and {listeners} listeners of {n} within {timeout:?}"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(IoxFanPub(Box::new(PubInner {
            tx,
            notify,
            _service: service,
            _event: event,
            _node: node,
        })))
    }

    /// Publishes message `seq` of `size` bytes with `stamp` (the latency
    /// phase's due instant, 0 otherwise): the payload written in place with
    /// [`pattern`], then the head (stamp last, just before sending), then a
    /// notification (`Event`).
    ///
    /// # Errors
    /// iceoryx2's loan, send or notify errors.
    pub fn publish(&mut self, size: usize, phase: u64, seq: u64, stamp: u64) -> Result<()> {
        let p = &mut *self.0;
        let mut sample =
            p.tx.loan_slice_uninit(size)
                .map_err(|e| format!("iceoryx2: loan of {size} B: {e:?}"))?;
        let bytes: &mut [MaybeUninit<u8>] = sample.payload_mut();
        if bytes.len() < HEAD {
            return Err(format!("iceoryx2: loaned {} B, expected {size}", bytes.len()).into());
        }
        let (head, body) = bytes.split_at_mut(HEAD);
        pattern::fill_uninit(body, seq);
        let put = |dst: &mut [MaybeUninit<u8>], v: u64| {
            for (d, s) in dst.iter_mut().zip(v.to_le_bytes()) {
                *d = MaybeUninit::new(s);
            }
        };
        put(&mut head[8..HEAD], phase);
        put(&mut head[..8], stamp);
        // SAFETY: the head (16 bytes) and the body were written above,
        // which is every byte of the payload.
        let sample = unsafe { sample.assume_init() };
        sample
            .send()
            .map_err(|e| format!("iceoryx2: send: {e:?}"))?;
        if let Some(n) = &p.notify {
            n.notify().map_err(|e| format!("iceoryx2: notify: {e:?}"))?;
        }
        Ok(())
    }
}

/// A subscriber process of an iceoryx2 row: opens the services (retrying
/// while the publisher creates them), receives and checks every message
/// until the end message, then sends its latency samples on `ctl`.
/// `hang`: the test hook, stop once subscribed.
///
/// # Errors
/// iceoryx2 errors, a malformed message, no sample within `timeout`.
pub fn subscriber(
    names: Names,
    size: usize,
    n: usize,
    wait: IoxFanWait,
    timeout: Duration,
    mut ctl: UnixStream,
    hang: bool,
) -> Result<()> {
    let node = node()?;
    let name = names.service("fanout")?;
    let service: PubSub = retry("opening the fan-out service", timeout, || {
        pubsub_builder(&node, &name, size, n).open()
    })?;
    let rx: Sub = service
        .subscriber_builder()
        .create()
        .map_err(|e| format!("iceoryx2: creating a subscriber: {e:?}"))?;
    let (event, listen): (
        Option<EventFactory<ipc::Service>>,
        Option<Listener<ipc::Service>>,
    ) = match wait {
        IoxFanWait::Poll => (None, None),
        IoxFanWait::Event => {
            let ename = names.service("fanout-event")?;
            let ev = retry("opening the event service", timeout, || {
                event_builder(&node, &ename, n).open()
            })?;
            let l = ev
                .listener_builder()
                .create()
                .map_err(|e| format!("iceoryx2: creating a listener: {e:?}"))?;
            (Some(ev), Some(l))
        }
    };
    if hang {
        // The test hook (`fanout::test_hang`).
        super::fanout::hang_forever();
    }
    let mut samples = Vec::with_capacity(1 << 16);
    let mut meter = Meter::default();
    let mut seq = 0u64;
    loop {
        let sample = next(&rx, listen.as_ref(), timeout)?;
        let msg: &[u8] = sample.payload();
        let phase = check_message(msg, size, seq, &mut samples)?;
        meter.on(phase);
        drop(sample);
        seq += 1;
        if phase == PHASE_END {
            break;
        }
    }
    drop(listen);
    drop(event);
    drop(rx);
    send_report(&mut ctl, &meter, &samples)
}

/// The next sample, busy-polling or sleeping on the listener, for at most
/// `timeout`.
fn next(
    rx: &Sub,
    listen: Option<&Listener<ipc::Service>>,
    timeout: Duration,
) -> Result<iceoryx2::sample::Sample<ipc::Service, [u8], ()>> {
    let deadline = Instant::now() + timeout;
    let mut spins = 0u32;
    // The last listener wait ran out with no notification.
    let mut unwoken = false;
    loop {
        if let Some(s) = rx
            .receive()
            .map_err(|e| format!("iceoryx2: receive: {e:?}"))?
        {
            if unwoken {
                // As in `iox::Inner::next`: reported, and measured.
                eprintln!(
                    "bench: iceoryx2 event (fan-out): a sample waited {WAIT_SLICE:?} with no \
                     notification (a lost wake-up, or a publisher descheduled between its \
                     send and its notify)"
                );
            }
            return Ok(s);
        }
        match listen {
            Some(l) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!("iceoryx2: no sample within {timeout:?}").into());
                }
                // Drains every pending notification; one sent after the
                // `receive` above is still pending here: no lost wake-up.
                // At most WAIT_SLICE at a time (see `iox::WAIT_SLICE`).
                let t0 = Instant::now();
                let woken = l
                    .timed_wait(|_| {}, left.min(WAIT_SLICE))
                    .map_err(|e| format!("iceoryx2: listener wait: {e:?}"))?;
                unwoken = woken == 0 && t0.elapsed() >= WAIT_SLICE;
            }
            None => {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) && Instant::now() >= deadline {
                    return Err(format!("iceoryx2: no sample within {timeout:?}").into());
                }
            }
        }
    }
}
