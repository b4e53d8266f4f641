//! The publishing side: owns the data segment, accepts subscribers (from
//! a socket path or as connected streams), publishes, and enforces the
//! slow-subscriber policy.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmsock_shm::fanout::{CursorView, FanoutGrant, FanoutWriter, Policy};
use shmsock_shm::SegmentOptions;

use super::deadline::{later, Deadline};
use super::error::{Error, Result};
use super::sock::{self, Inbox, Progress};
use super::wire::{Handshake, RefuseReason, CTL_BYE, CTL_EVICTED, CTL_WAKE};
use crate::broker::Provider;
use crate::name::Target;
use crate::service::ToTarget;
use crate::wire::LookupPolicy;

/// Housekeeping (accepting, handshakes, noticing dead subscribers) runs at
/// least once every this many publishes, and in every wait.
const HOUSEKEEPING_EVERY: u32 = 256;
/// New connections accepted per housekeeping round.
const ACCEPT_PER_ROUND: usize = 16;

/// Configuration of a [`Publisher`]; build with the methods, starting from
/// [`PublisherOptions::new`] (= `default()`).
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    capacity: u64,
    policy: Policy,
    max_lag: Duration,
    history: usize,
    max_subscribers: usize,
    handshake_timeout: Duration,
    broker_timeout: Duration,
    segment: SegmentOptions,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            capacity: 1 << 20,
            policy: Policy::Block,
            max_lag: Duration::from_secs(1),
            history: 0,
            max_subscribers: 64,
            handshake_timeout: Duration::from_secs(5),
            broker_timeout: Duration::from_secs(5),
            segment: SegmentOptions::default(),
        }
    }
}

impl PublisherOptions {
    /// Defaults: 1 MiB ring, [`Policy::Block`], `max_lag` 1 s, no history,
    /// 64 subscribers, 5 s handshake timeout, 5 s broker timeout.
    pub fn new() -> Self {
        Self::default()
    }
    /// Data-area capacity in bytes (a power of two, 64 B to 1 TiB); the
    /// largest message is half of it minus 16 bytes.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }
    /// The slow-subscriber policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
    /// Under [`Policy::Block`]: a subscriber that holds the publisher back
    /// and makes no progress for this long is disconnected.
    pub fn max_lag(mut self, max_lag: Duration) -> Self {
        self.max_lag = max_lag;
        self
    }
    /// How many of the last messages a late joiner may ask for (positions
    /// kept; a message is given only while it is still in the ring).
    pub fn history(mut self, messages: usize) -> Self {
        self.history = messages;
        self
    }
    /// Most subscribers (connected or in their handshake) at once; more
    /// are refused.
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n;
        self
    }
    /// Time a connecting subscriber has to finish its handshake.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }
    /// Time [`Publisher::create_named`] may take to register with the
    /// broker (connecting, also to a broker whose accept backlog is full,
    /// and its answer); default 5 s. Any duration works; `Duration::MAX`
    /// means no limit.
    pub fn broker_timeout(mut self, t: Duration) -> Self {
        self.broker_timeout = t;
        self
    }
    /// Memfd options of the data segment (huge pages, populate).
    pub fn segment_options(mut self, opts: SegmentOptions) -> Self {
        self.segment = opts;
        self
    }
}

/// A connected subscriber.
#[derive(Debug)]
struct Sub {
    sock: UnixStream,
    view: CursorView,
    /// Block: the cursor value it was stuck at while holding us back, and
    /// since when.
    stall: Option<(u64, Instant)>,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for its `Hello`.
    Hello,
    /// `Welcome` sent with this start position; waiting for `Ready`.
    Ready { start: u64, welcomed: Instant },
}

/// A subscriber in its handshake.
#[derive(Debug)]
struct Pending {
    sock: UnixStream,
    inbox: Inbox,
    stage: Stage,
    deadline: Instant,
}

/// What one handshake step leads to.
enum Step {
    Keep(Pending),
    Promote(Sub),
    Drop,
}

#[derive(Debug)]
struct Bound {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Bound {
    fn drop(&mut self) {
        // Best effort: the path is ours (we bound it).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The publishing side of a topic: one writer to many subscribers through
/// one shared-memory ring.
///
/// Subscribers come from a socket path ([`Publisher::create`]) or as
/// already-connected streams ([`Publisher::add_subscriber_stream`], e.g.
/// handed over by a broker). Their handshakes, and noticing dead ones, run
/// inside the publisher's calls (every send does a little, every wait
/// does it all); when not sending, call [`Publisher::poll`] now and then,
/// or wait in [`Publisher::poll_timeout`].
///
/// `Send` but not `Sync`: one thread publishes.
///
/// # Examples
/// ```no_run
/// use shmsock_services::pubsub::{Policy, Publisher, PublisherOptions};
/// use std::time::Duration;
///
/// # fn main() -> Result<(), shmsock_services::pubsub::Error> {
/// let opts = PublisherOptions::new().policy(Policy::DropOldest).history(16);
/// let mut publisher = Publisher::create("/tmp/prices.sock", opts)?;
/// publisher.wait_for_subscribers(1, Duration::from_secs(5))?;
/// publisher.send(b"tick")?;
/// // Zero-copy: write in place, then publish.
/// let mut loan = publisher.loan(8)?;
/// loan.copy_from_slice(&42u64.to_le_bytes());
/// loan.publish();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    ring: FanoutWriter,
    opts: PublisherOptions,
    listener: Option<Bound>,
    /// Registered with a broker: subscribers arrive as introductions.
    provider: Option<Provider>,
    subs: Vec<Sub>,
    pending: Vec<Pending>,
    /// Block: a lower bound of every subscriber's cursor (and pending start).
    floor: u64,
    ticks: u32,
    evicted: u64,
    closed: bool,
}

impl Publisher {
    /// A publisher without a socket path: subscribers arrive through
    /// [`Publisher::add_subscriber_stream`].
    ///
    /// # Errors
    /// [`Error::Shm`] if the data segment cannot be made (bad capacity, no
    /// memory).
    pub fn new(opts: PublisherOptions) -> Result<Self> {
        let ring = FanoutWriter::create(
            c"shmsock-pubsub",
            opts.capacity,
            opts.policy,
            opts.history,
            opts.segment,
        )?;
        Ok(Publisher {
            ring,
            opts,
            listener: None,
            provider: None,
            subs: Vec::new(),
            pending: Vec::new(),
            floor: 0,
            ticks: 0,
            evicted: 0,
            closed: false,
        })
    }

    /// A publisher listening on the Unix socket `path` (which must not
    /// exist; it is removed when the publisher is dropped).
    ///
    /// # Errors
    /// As [`Publisher::new`]; [`Error::Io`] if the path cannot be bound.
    pub fn create(path: impl AsRef<Path>, opts: PublisherOptions) -> Result<Self> {
        let mut p = Self::new(opts)?;
        let path = path.as_ref().to_path_buf();
        let listener = UnixListener::bind(&path).map_err(|e| Error::io("bind", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("fcntl(O_NONBLOCK)", e))?;
        p.listener = Some(Bound { listener, path });
        Ok(p)
    }

    /// A publisher registered as `name` with the broker listening on
    /// `broker`: subscribers find it by name ([`Subscriber::subscribe_to`]),
    /// and the broker introduces each with a socket of its own (no payload
    /// passes through the broker). `policy` says who may look it up. If the
    /// broker restarts, the registration is renewed in later calls.
    ///
    /// [`Subscriber::subscribe_to`]: super::Subscriber::subscribe_to
    ///
    /// # Errors
    /// As [`Publisher::new`]; [`Error::Broker`] if the broker cannot be
    /// reached or refuses the name, or (`Broker(Timeout)`) does not answer
    /// within the options' [`broker_timeout`](PublisherOptions::broker_timeout).
    pub fn create_named(
        broker: impl AsRef<Path>,
        name: &str,
        policy: LookupPolicy,
        opts: PublisherOptions,
    ) -> Result<Self> {
        let mut p = Self::new(opts)?;
        let provider = Provider::register_timeout(broker, name, policy, p.opts.broker_timeout)
            .map_err(|e| Error::Broker(Box::new(e)))?;
        p.provider = Some(provider);
        Ok(p)
    }

    /// A publisher at `target`: a socket path ([`Publisher::create`]) or a
    /// service name at a broker ([`Publisher::create_named`]; `policy`
    /// applies to names only).
    ///
    /// # Examples
    /// ```no_run
    /// use shmsock_services::pubsub::{Publisher, PublisherOptions};
    /// use shmsock_services::LookupPolicy;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // "prices.eurusd" goes through the default broker; "/run/prices.sock"
    /// // would listen on that path instead.
    /// let mut publisher =
    ///     Publisher::serve("prices.eurusd", LookupPolicy::SameUid, PublisherOptions::new())?;
    /// publisher.send(b"1.0842")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Publisher::create`] and [`Publisher::create_named`];
    /// [`Error::Broker`] for text that is neither a path nor a valid name.
    pub fn serve(
        target: impl ToTarget,
        policy: LookupPolicy,
        opts: PublisherOptions,
    ) -> Result<Self> {
        match target.to_target().map_err(|e| Error::Broker(Box::new(e)))? {
            Target::Path(path) => Self::create(path, opts),
            Target::Name { broker, name } => {
                Self::create_named(broker, name.as_str(), policy, opts)
            }
        }
    }

    /// Takes a connected stream to a subscriber (from a listener of your
    /// own, or a broker) and starts its handshake; it completes inside
    /// later calls. Over the limit of subscribers it is refused.
    ///
    /// # Errors
    /// [`Error::Io`] if the socket cannot be made non-blocking.
    pub fn add_subscriber_stream(&mut self, stream: UnixStream) -> Result<()> {
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::io("fcntl(O_NONBLOCK)", e))?;
        if self.subs.len() + self.pending.len() >= self.opts.max_subscribers {
            let refuse = Handshake::Refuse {
                reason: RefuseReason::Full as u8,
            };
            let _ = sock::send_msg(stream.as_fd(), &refuse.encode(), &[], Some(Instant::now()));
            return Ok(());
        }
        self.pending.push(Pending {
            sock: stream,
            inbox: Inbox::default(),
            stage: Stage::Hello,
            deadline: later(Instant::now(), self.opts.handshake_timeout),
        });
        // Answer at once if the Hello is already there.
        self.advance_pending();
        Ok(())
    }

    /// Subscribers connected (handshake done).
    pub fn subscriber_count(&self) -> usize {
        self.subs.len()
    }

    /// Subscribers disconnected by the policy or for a protocol violation
    /// since creation (not those that left on their own).
    pub fn evicted_count(&self) -> u64 {
        self.evicted
    }

    /// Messages published so far (the next message's sequence number).
    pub fn published(&self) -> u64 {
        self.ring.next_seq()
    }

    /// Largest message.
    pub fn max_message_len(&self) -> usize {
        self.ring.max_record_len()
    }

    /// The slow-subscriber policy.
    pub fn policy(&self) -> Policy {
        self.ring.policy()
    }

    /// The listening socket, if any, for an event loop: when readable,
    /// call [`Publisher::poll`].
    pub fn listener_fd(&self) -> Option<BorrowedFd<'_>> {
        self.listener.as_ref().map(|b| b.listener.as_fd())
    }

    /// Housekeeping without waiting: accepts new connections, advances
    /// handshakes, reads subscribers' control bytes, drops subscribers
    /// whose socket closed.
    ///
    /// # Errors
    /// [`Error::Io`] if `poll(2)` fails.
    pub fn poll(&mut self) -> Result<()> {
        self.ticks = 0;
        self.accept_new();
        self.advance_pending();
        self.drain_subscribers()
    }

    /// Waits up to `timeout` for something to do (a connection, a
    /// handshake message, a subscriber's control byte or hang-up, a
    /// handshake deadline), then does it ([`Publisher::poll`]). An idle
    /// publisher calls this in a loop so that subscribers can join while
    /// it has nothing to send.
    ///
    /// # Errors
    /// [`Error::Io`] if waiting fails.
    pub fn poll_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.poll()?;
        let deadline = Instant::now().checked_add(timeout);
        let fds = self.wait_fds();
        sock::wait_any(&fds, self.wake_at(deadline)).map_err(|e| Error::io("poll", e))?;
        drop(fds);
        self.poll()
    }

    /// Waits until at least `n` subscribers are connected.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Io`] if waiting fails.
    pub fn wait_for_subscribers(&mut self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            self.poll()?;
            if self.subs.len() >= n {
                return Ok(());
            }
            let fds = self.wait_fds();
            if sock::wait_any(&fds, self.wake_at(deadline))
                .map_err(|e| Error::io("poll", e))?
                .is_empty()
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(Error::Timeout);
            }
        }
    }

    /// The earlier of `deadline`, the first handshake deadline and the
    /// provider's next reconnection step (a broker that went away).
    fn wake_at(&self, deadline: Option<Instant>) -> Option<Instant> {
        let hs = self.pending.iter().map(|p| p.deadline).min();
        let rejoin = self.provider.as_ref().and_then(Provider::next_attempt);
        [deadline, hs, rejoin].into_iter().flatten().min()
    }

    fn wait_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds: Vec<BorrowedFd<'_>> = self.subs.iter().map(|s| s.sock.as_fd()).collect();
        fds.extend(self.pending.iter().map(|p| p.sock.as_fd()));
        if let Some(b) = &self.listener {
            fds.push(b.listener.as_fd());
        }
        if let Some(fd) = self.provider.as_ref().and_then(Provider::fd) {
            fds.push(fd);
        }
        fds
    }

    fn accept_new(&mut self) {
        // Introductions from the broker: never waits (a broker that died
        // is reconnected to when its retry is due).
        let mut intros = Vec::new();
        if let Some(provider) = self.provider.as_mut() {
            for _ in 0..ACCEPT_PER_ROUND {
                match provider.try_accept() {
                    Ok(Some(intro)) => intros.push(intro.into_socket()),
                    // A broker fault ends the round; the provider
                    // reconnects on a later call.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        for sock in intros {
            // A socket we cannot make non-blocking is dropped.
            let _ = self.add_subscriber_stream(UnixStream::from(sock));
        }
        for _ in 0..ACCEPT_PER_ROUND {
            let Some(b) = &self.listener else { return };
            match b.listener.accept() {
                Ok((stream, _)) => {
                    // A socket we cannot make non-blocking is dropped.
                    let _ = self.add_subscriber_stream(stream);
                }
                // WouldBlock ends the round; other errors (ECONNABORTED,
                // EMFILE) too: the next round retries.
                Err(_) => return,
            }
        }
    }

    fn advance_pending(&mut self) {
        let now = Instant::now();
        for p in std::mem::take(&mut self.pending) {
            match self.step_pending(p, now) {
                Step::Keep(p) => self.pending.push(p),
                Step::Promote(sub) => self.subs.push(sub),
                // Dropping it closes the socket and any fd it sent.
                Step::Drop => {}
            }
        }
    }

    /// Advances one handshake.
    fn step_pending(&mut self, mut p: Pending, now: Instant) -> Step {
        if now >= p.deadline {
            return Step::Drop;
        }
        match sock::recv_some(p.sock.as_fd(), &mut p.inbox) {
            Ok(Progress::Done) => {}
            Ok(Progress::Pending) => return Step::Keep(p),
            Ok(_) | Err(_) => return Step::Drop,
        }
        let msg = Handshake::decode(&p.inbox.buf);
        let fds = std::mem::take(&mut p.inbox.fds);
        p.inbox = Inbox::default();
        match (&p.stage, msg) {
            (Stage::Hello, Ok(Handshake::Hello { history })) if fds.is_empty() => {
                let (start, start_seq) = self.ring.start_point(history as usize);
                let welcome = Handshake::Welcome {
                    policy: self.ring.policy(),
                    capacity: self.ring.capacity(),
                    start,
                    start_seq,
                };
                // A fresh socket's buffer takes 32 bytes at once; if not,
                // the peer is not reading: drop it.
                match sock::send_msg(
                    p.sock.as_fd(),
                    &welcome.encode(),
                    &[self.ring.fd()],
                    Some(now),
                ) {
                    Ok(true) => {
                        p.stage = Stage::Ready {
                            start,
                            welcomed: now,
                        };
                        self.floor = self.floor.min(start);
                        Step::Keep(p)
                    }
                    _ => Step::Drop,
                }
            }
            (Stage::Ready { start, .. }, Ok(Handshake::Ready)) if fds.len() == 1 => {
                let start = *start;
                let Some(fd) = fds.into_iter().next() else {
                    return Step::Drop;
                };
                // Checks the segment (memfd, seals, size, backing) and its
                // identification; closes the fd on error.
                match CursorView::attach(fd, start) {
                    Ok(view) => Step::Promote(Sub {
                        sock: p.sock,
                        view,
                        stall: None,
                    }),
                    Err(_) => Step::Drop,
                }
            }
            (Stage::Hello, _) => {
                let refuse = Handshake::Refuse {
                    reason: RefuseReason::BadHello as u8,
                };
                let _ = sock::send_msg(p.sock.as_fd(), &refuse.encode(), &[], Some(now));
                Step::Drop
            }
            _ => Step::Drop,
        }
    }

    /// Reads subscribers' control bytes; drops closed ones, evicts those
    /// that send anything but wake-ups or a goodbye.
    fn drain_subscribers(&mut self) -> Result<()> {
        if self.subs.is_empty() {
            return Ok(());
        }
        let fds: Vec<BorrowedFd<'_>> = self.subs.iter().map(|s| s.sock.as_fd()).collect();
        let ready = sock::ready_now(&fds).map_err(|e| Error::io("poll", e))?;
        drop(fds);
        // Highest index first, so that swap_remove keeps the others valid.
        for &i in ready.iter().rev() {
            let mut buf = [0u8; 64];
            let mut drop_it = false;
            let mut evict = false;
            // Bounded: at most 16 reads (1 KiB of control bytes) per round.
            for _ in 0..16 {
                match sock::recv_bytes(self.subs[i].sock.as_fd(), &mut buf) {
                    Ok(Some(0)) => break,
                    Ok(Some(n)) => {
                        for &b in &buf[..n] {
                            match b {
                                CTL_WAKE => {}
                                CTL_BYE => drop_it = true,
                                _ => evict = true,
                            }
                        }
                    }
                    Ok(None) | Err(_) => drop_it = true,
                }
                if drop_it || evict {
                    break;
                }
            }
            if evict {
                self.evict(i);
            } else if drop_it {
                self.subs.swap_remove(i);
            }
        }
        Ok(())
    }

    /// Disconnects subscriber `i`, telling it why first.
    fn evict(&mut self, i: usize) {
        let s = self.subs.swap_remove(i);
        let _ = sock::send_byte(s.sock.as_fd(), CTL_EVICTED);
        self.evicted += 1;
    }

    /// Loads every subscriber's cursor once and validates it; evicts the
    /// ones that lie; recomputes `floor`.
    fn refresh_floor(&mut self) {
        let tail = self.ring.position();
        let mut min = tail;
        let mut i = self.subs.len();
        while i > 0 {
            i -= 1;
            match self.subs[i].view.load(tail) {
                Ok(c) => min = min.min(c),
                Err(_) => self.evict(i),
            }
        }
        for p in &self.pending {
            if let Stage::Ready { start, .. } = p.stage {
                min = min.min(start);
            }
        }
        self.floor = min;
    }

    /// Block: waits until a message of `len` bytes fits without
    /// overwriting any subscriber's unread data, evicting subscribers that
    /// hold us back without progress for `max_lag`. `Ok(false)` when
    /// `deadline` passes first.
    fn wait_space(&mut self, need: u64, deadline: &mut Deadline) -> Result<bool> {
        if self.floor >= need {
            return Ok(true);
        }
        loop {
            self.refresh_floor();
            if self.floor >= need {
                return Ok(true);
            }
            // Resolved before `now`: a zero timeout has passed at once.
            let until = deadline.get();
            let now = Instant::now();
            let max_lag = self.opts.max_lag;
            let mut expiry: Option<Instant> = None;
            let mut earliest = |t: Instant| expiry = Some(expiry.map_or(t, |e: Instant| e.min(t)));
            let mut stalled = Vec::new();
            for (i, s) in self.subs.iter_mut().enumerate() {
                let c = s.view.last();
                if c >= need {
                    s.stall = None;
                    continue;
                }
                match s.stall {
                    Some((at, since)) if at == c => {
                        if now.saturating_duration_since(since) >= max_lag {
                            stalled.push(i);
                        } else {
                            earliest(later(since, max_lag));
                        }
                    }
                    _ => {
                        s.stall = Some((c, now));
                        earliest(later(now, max_lag));
                    }
                }
            }
            let mut dropped_pending = false;
            self.pending.retain(|p| match p.stage {
                Stage::Ready { start, welcomed } if start < need => {
                    let keep = now.saturating_duration_since(welcomed) < max_lag;
                    dropped_pending |= !keep;
                    keep
                }
                _ => true,
            });
            if !stalled.is_empty() || dropped_pending {
                for &i in stalled.iter().rev() {
                    self.evict(i);
                }
                continue;
            }
            for p in &self.pending {
                if let Stage::Ready { start, welcomed } = p.stage {
                    if start < need {
                        earliest(later(welcomed, max_lag));
                    }
                }
            }
            if until.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            // SYNC POINT `fanout-park`: park, re-check, then sleep; a
            // subscriber that frees space after our re-check sees the odd
            // park word and sends a wake-up byte.
            self.ring.park();
            self.refresh_floor();
            if self.floor >= need {
                self.ring.unpark();
                return Ok(true);
            }
            let wake_at = match (until, expiry) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wake_at = self.wake_at(wake_at);
            let fds = self.wait_fds();
            let r = sock::wait_any(&fds, wake_at);
            drop(fds);
            self.ring.unpark();
            r.map_err(|e| Error::io("poll", e))?;
            self.poll()?;
        }
    }

    /// Lends `len` bytes of the ring for the next message, waiting (Block)
    /// until `deadline`; `Ok(None)` if it passed.
    fn loan_until(&mut self, len: usize, mut deadline: Deadline) -> Result<Option<Loan<'_>>> {
        self.ticks += 1;
        if self.ticks >= HOUSEKEEPING_EVERY {
            self.poll()?;
        }
        let max = self.ring.max_record_len();
        let need = self
            .ring
            .floor_needed(len)
            .map_err(|_| Error::TooLarge { len, max })?;
        let floor = match self.ring.policy() {
            Policy::Block => {
                if !self.wait_space(need, &mut deadline)? {
                    return Ok(None);
                }
                Some(self.floor)
            }
            Policy::DropOldest => None,
        };
        let Publisher { ring, subs, .. } = self;
        match ring.try_reserve(len, floor)? {
            Some(grant) => Ok(Some(Loan { grant, subs })),
            None => Ok(None),
        }
    }

    /// Lends `len` bytes for the next message (zero copy): write them, then
    /// [`Loan::publish`]. Under [`Policy::Block`] waits for space as long
    /// as it takes (subscribers that make no progress for `max_lag` are
    /// disconnected meanwhile).
    ///
    /// # Errors
    /// [`Error::TooLarge`]; [`Error::Io`] if waiting fails.
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>> {
        self.loan_until(len, Deadline::never())?
            .ok_or(Error::Timeout)
    }

    /// As [`Publisher::loan`], giving up after `timeout` (counted from when
    /// the call first has to wait: space that is already free costs no
    /// clock read).
    ///
    /// # Errors
    /// As [`Publisher::loan`]; [`Error::Timeout`].
    pub fn loan_timeout(&mut self, len: usize, timeout: Duration) -> Result<Loan<'_>> {
        self.loan_until(len, Deadline::after(timeout))?
            .ok_or(Error::Timeout)
    }

    /// As [`Publisher::loan`] without waiting: `Ok(None)` if the slowest
    /// subscriber holds the space (Block).
    ///
    /// # Errors
    /// As [`Publisher::loan`].
    pub fn try_loan(&mut self, len: usize) -> Result<Option<Loan<'_>>> {
        self.loan_until(len, Deadline::after(Duration::ZERO))
    }

    /// Publishes a copy of `msg`; returns its sequence number.
    ///
    /// # Errors
    /// As [`Publisher::loan`].
    pub fn send(&mut self, msg: &[u8]) -> Result<u64> {
        let mut loan = self.loan(msg.len())?;
        loan.fill_from(msg);
        Ok(loan.publish())
    }

    /// As [`Publisher::send`], giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Publisher::loan_timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<u64> {
        let mut loan = self.loan_timeout(msg.len(), timeout)?;
        loan.fill_from(msg);
        Ok(loan.publish())
    }

    /// As [`Publisher::send`] without waiting: `Ok(None)` if there is no
    /// space now.
    ///
    /// # Errors
    /// As [`Publisher::loan`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<Option<u64>> {
        Ok(self.try_loan(msg.len())?.map(|mut loan| {
            loan.fill_from(msg);
            loan.publish()
        }))
    }

    /// Closes the topic: subscribers read what was published, then get
    /// [`Error::Closed`]. Dropping the publisher does the same.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.ring.close();
        for s in &self.subs {
            let _ = sock::send_byte(s.sock.as_fd(), CTL_WAKE);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Ring space lent for one message (from [`Publisher::loan`]): write it
/// through `DerefMut` or [`Loan::fill_from`], then [`Loan::publish`].
/// Dropping it publishes nothing.
#[derive(Debug)]
pub struct Loan<'a> {
    grant: FanoutGrant<'a>,
    subs: &'a mut Vec<Sub>,
}

impl Loan<'_> {
    /// Copies `src` (at most the loan's length) to the start of the loan.
    pub fn fill_from(&mut self, src: &[u8]) {
        self.grant.fill_from(src);
    }

    /// Shrinks the message to its first `len` bytes before publishing.
    pub fn truncate(&mut self, len: usize) {
        self.grant.truncate(len);
    }

    /// Publishes the message to every subscriber and wakes the ones that
    /// sleep (one non-blocking byte each; none for subscribers that are
    /// reading). Returns its sequence number.
    pub fn publish(self) -> u64 {
        let seq = self.grant.publish();
        for s in self.subs.iter_mut() {
            if s.view.wake_owed() {
                // A full socket buffer already holds a wake-up; a dead
                // peer is noticed by housekeeping.
                let _ = sock::send_byte(s.sock.as_fd(), CTL_WAKE);
            }
        }
        seq
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.grant
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.grant
    }
}
