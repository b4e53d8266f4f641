//! The subscribing side: connects, maps the publisher's ring read-only,
//! keeps its cursor in a segment of its own, reads and waits.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use shmsock_shm::fanout::{create_cursor_segment, FanoutReader, FanoutSample, Policy};

use super::deadline::Deadline;
use super::error::{Error, Result};
use super::sock::{self, Inbox, Progress};
use super::wire::{Handshake, CTL_BYE, CTL_EVICTED, CTL_WAKE};
use crate::name::Target;
use crate::service::ToTarget;

/// Checks of the ring before a subscriber parks and sleeps.
const SPINS: u32 = 64;

/// Configuration of a [`Subscriber`].
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    history: u32,
    handshake_timeout: Duration,
    max_capacity: u64,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            history: 0,
            handshake_timeout: Duration::from_secs(5),
            max_capacity: 1 << 30,
        }
    }
}

impl SubscriberOptions {
    /// Defaults: start at the live head (no history), 5 s handshake
    /// timeout, rings up to 1 GiB.
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask for up to this many of the last messages before the live ones
    /// (the publisher gives at most what it keeps and what is still in its
    /// ring).
    pub fn history(mut self, messages: u32) -> Self {
        self.history = messages;
        self
    }
    /// Time subscribing may take (default 5 s): connecting (also to a
    /// publisher whose accept backlog is full), the broker lookup of a
    /// name, and the handshake, all bounded by one deadline. Any duration
    /// works; `Duration::MAX` means no limit.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }
    /// Largest ring this subscriber agrees to map (default 1 GiB): a
    /// publisher cannot make it map more address space than this.
    pub fn max_capacity(mut self, bytes: u64) -> Self {
        self.max_capacity = bytes;
        self
    }
}

/// One message received by a [`Subscriber`] (its bytes are in the buffer
/// the caller passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The publisher's sequence number of the message (0 for its first).
    pub seq: u64,
    /// Messages lost just before this one ([`Policy::DropOldest`], when
    /// this subscriber fell a ring behind); 0 under [`Policy::Block`].
    pub lost: u64,
    /// Payload length.
    pub len: usize,
}

/// The subscribing side of a topic.
///
/// Reads copy each message into a caller's buffer (under
/// [`Policy::DropOldest`] the copy is what makes the read safe: it is
/// validated after it is made). `Send` but not `Sync`.
///
/// # Examples
/// ```no_run
/// use shmsock_services::pubsub::{Subscriber, SubscriberOptions};
///
/// # fn main() -> Result<(), shmsock_services::pubsub::Error> {
/// let mut sub = Subscriber::subscribe("/tmp/prices.sock", SubscriberOptions::new().history(16))?;
/// let mut buf = Vec::new();
/// loop {
///     let msg = sub.recv(&mut buf)?;
///     if msg.lost > 0 {
///         eprintln!("lost {} messages before #{}", msg.lost, msg.seq);
///     }
///     println!("#{}: {} bytes", msg.seq, buf.len());
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Subscriber {
    sock: UnixStream,
    reader: FanoutReader,
    /// The publisher's socket reached end of stream.
    peer_gone: bool,
    evicted: bool,
}

impl Subscriber {
    /// Connects to the publisher listening on `path` and subscribes, by
    /// the options' [`handshake_timeout`](SubscriberOptions::handshake_timeout)
    /// (which bounds the connect too: a publisher that is stopped or hung
    /// with its accept backlog full gives [`Error::Timeout`], not a caller
    /// blocked forever).
    ///
    /// # Errors
    /// [`Error::Io`] if the connection fails (no such socket, refused);
    /// [`Error::Timeout`]; as [`Subscriber::from_stream`].
    pub fn subscribe(path: impl AsRef<Path>, opts: SubscriberOptions) -> Result<Self> {
        let deadline = Instant::now().checked_add(opts.handshake_timeout);
        let sock = sock::connect_stream(path.as_ref(), deadline)
            .map_err(|e| Error::io("connect", e))?
            .ok_or(Error::Timeout)?;
        Self::handshake(UnixStream::from(sock), opts, deadline)
    }

    /// Subscribes to the publisher at `target`: a socket path, or a service
    /// name that a broker resolves ([`Publisher::serve`]). The broker hands
    /// over a socket to the publisher itself and takes no further part.
    ///
    /// [`Publisher::serve`]: super::Publisher::serve
    ///
    /// # Examples
    /// ```no_run
    /// use shmsock_services::pubsub::{Subscriber, SubscriberOptions};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut prices = Subscriber::subscribe_to("prices.eurusd", SubscriberOptions::new())?;
    /// let mut buf = Vec::new();
    /// let got = prices.recv(&mut buf)?;
    /// # let _ = got;
    /// # Ok(()) }
    /// ```
    ///
    /// The lookup and the handshake share one deadline, the options'
    /// [`handshake_timeout`](SubscriberOptions::handshake_timeout).
    ///
    /// # Errors
    /// [`Error::Broker`] if the name cannot be resolved (no broker, no such
    /// name, not allowed, or the broker did not answer in time:
    /// `Broker(Timeout)`); as [`Subscriber::subscribe`] and
    /// [`Subscriber::from_stream`].
    pub fn subscribe_to(target: impl ToTarget, opts: SubscriberOptions) -> Result<Self> {
        match target.to_target().map_err(|e| Error::Broker(Box::new(e)))? {
            Target::Path(path) => Self::subscribe(path, opts),
            Target::Name { broker, name } => {
                let deadline = Instant::now().checked_add(opts.handshake_timeout);
                let (sock, _peer) = crate::broker::lookup_name(&broker, &name, deadline)
                    .map_err(|e| Error::Broker(Box::new(e)))?;
                Self::handshake(UnixStream::from(sock), opts, deadline)
            }
        }
    }

    /// Subscribes over a stream already connected to a publisher (from a
    /// broker, or a socket pair).
    ///
    /// # Errors
    /// [`Error::Timeout`] if the handshake takes longer than the options
    /// allow; [`Error::Refused`]; [`Error::Disconnected`] if the publisher
    /// hangs up; [`Error::Handshake`]/[`Error::Protocol`] for bad messages;
    /// [`Error::RingTooLarge`] for a ring above the options' `max_capacity`;
    /// [`Error::Shm`] if its data segment fails the checks (not a sealed
    /// memfd of the announced size, wrong header).
    pub fn from_stream(stream: UnixStream, opts: SubscriberOptions) -> Result<Self> {
        let deadline = Instant::now().checked_add(opts.handshake_timeout);
        Self::handshake(stream, opts, deadline)
    }

    /// The handshake over a connected stream, by `deadline`.
    fn handshake(
        stream: UnixStream,
        opts: SubscriberOptions,
        deadline: Option<Instant>,
    ) -> Result<Self> {
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::io("fcntl(O_NONBLOCK)", e))?;
        let hello = Handshake::Hello {
            history: opts.history,
        };
        let mut inbox = Inbox::default();
        match sock::send_msg(stream.as_fd(), &hello.encode(), &[], deadline) {
            Ok(true) => {}
            Ok(false) => return Err(Error::Timeout),
            Err(e) => {
                // A publisher that refuses at once (too many subscribers)
                // sends `Refuse` and hangs up before our `Hello` arrives:
                // its answer is still queued for us.
                if let Ok(Some(Progress::Done)) =
                    sock::recv_msg(stream.as_fd(), &mut inbox, deadline)
                {
                    if let Ok(Handshake::Refuse { reason }) = Handshake::decode(&inbox.buf) {
                        return Err(Error::Refused { reason });
                    }
                }
                return Err(match e.kind() {
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                        Error::Disconnected
                    }
                    _ => Error::io("sendmsg", e),
                });
            }
        }
        match sock::recv_msg(stream.as_fd(), &mut inbox, deadline)
            .map_err(|e| Error::io("recvmsg", e))?
        {
            None => return Err(Error::Timeout),
            Some(Progress::Done) => {}
            Some(Progress::Eof) => return Err(Error::Disconnected),
            Some(_) => return Err(Error::Protocol("more fds than a message carries")),
        }
        let (policy, capacity, start, start_seq) = match Handshake::decode(&inbox.buf)? {
            Handshake::Welcome {
                policy,
                capacity,
                start,
                start_seq,
            } => (policy, capacity, start, start_seq),
            Handshake::Refuse { reason } => return Err(Error::Refused { reason }),
            _ => return Err(Error::Protocol("expected Welcome")),
        };
        if capacity > opts.max_capacity {
            return Err(Error::RingTooLarge {
                capacity,
                max: opts.max_capacity,
            });
        }
        let mut fds = std::mem::take(&mut inbox.fds);
        let (Some(data), true) = (fds.pop(), fds.is_empty()) else {
            return Err(Error::Protocol("Welcome without its data segment fd"));
        };
        let cursor = create_cursor_segment(c"shmsock-pubsub-cursor", start)?;
        // Checks the data segment (memfd, seals, size, backing) and its
        // header against the Welcome; closes the fd on error.
        let reader = FanoutReader::attach(data, capacity, policy, cursor, start, start_seq)?;
        if !sock::send_msg(
            stream.as_fd(),
            &Handshake::Ready.encode(),
            &[reader.cursor_fd()],
            deadline,
        )
        .map_err(|e| Error::io("sendmsg", e))?
        {
            return Err(Error::Timeout);
        }
        Ok(Subscriber {
            sock: stream,
            reader,
            peer_gone: false,
            evicted: false,
        })
    }

    /// The topic's slow-subscriber policy.
    pub fn policy(&self) -> Policy {
        self.reader.policy()
    }

    /// Sequence number of the next message expected.
    pub fn next_seq(&self) -> u64 {
        self.reader.expected_seq()
    }

    /// Reads the next message into `buf` (replacing its contents) if one
    /// is there.
    ///
    /// # Errors
    /// [`Error::Closed`] once the publisher closed and everything was read;
    /// [`Error::Disconnected`] if the publisher died and everything it
    /// published was read; [`Error::Evicted`]; [`Error::Shm`] if the
    /// publisher broke the ring protocol.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<Option<Received>> {
        if let Some(r) = self.take(buf)? {
            return Ok(Some(r));
        }
        // Empty: look at the socket (one syscall, only when idle).
        self.drain_socket()?;
        self.take_or_end(buf)
    }

    /// Reads the next message into `buf`, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`].
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<Received> {
        self.recv_until(buf, Deadline::never())
    }

    /// As [`Subscriber::recv`], giving up after `timeout` (counted from
    /// when the call first has to wait: a message that is already there
    /// costs no clock read).
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`]; [`Error::Timeout`].
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<Received> {
        self.recv_until(buf, Deadline::after(timeout))
    }

    fn recv_until(&mut self, buf: &mut Vec<u8>, mut deadline: Deadline) -> Result<Received> {
        loop {
            for _ in 0..SPINS {
                if let Some(r) = self.take(buf)? {
                    return Ok(r);
                }
                std::hint::spin_loop();
            }
            // SYNC POINT `fanout-park`: park, re-check, then sleep; the
            // publisher's next publish sees the odd park word and sends a
            // wake-up byte.
            self.reader.park();
            let got = self.take(buf);
            if !matches!(got, Ok(None)) {
                self.reader.unpark();
                if let Some(r) = got? {
                    return Ok(r);
                }
            }
            let r = sock::wait_any(&[self.sock.as_fd()], deadline.get());
            self.reader.unpark();
            if r.map_err(|e| Error::io("poll", e))?.is_empty() {
                if let Some(r) = self.take(buf)? {
                    return Ok(r);
                }
                return Err(Error::Timeout);
            }
            self.drain_socket()?;
            if let Some(r) = self.take_or_end(buf)? {
                return Ok(r);
            }
        }
    }

    /// One attempt on the ring; wakes the publisher if it waits for us.
    fn take(&mut self, buf: &mut Vec<u8>) -> Result<Option<Received>> {
        if self.evicted {
            return Err(Error::Evicted);
        }
        match self.reader.try_recv(buf) {
            Ok(Some(d)) => {
                if d.wake_publisher {
                    // Full buffer: a wake-up is queued already. Dead
                    // publisher: seen on the next wait.
                    let _ = sock::send_byte(self.sock.as_fd(), CTL_WAKE);
                }
                Ok(Some(Received {
                    seq: d.seq,
                    lost: d.lost,
                    len: d.len,
                }))
            }
            Ok(None) => Ok(None),
            Err(shmsock_shm::Error::Closed) => Err(Error::Closed),
            Err(e) => {
                // Evicted, then lapped: the publisher sent the notice
                // before it overwrote anything of ours, so it is queued.
                let _ = self.drain_socket();
                if self.evicted {
                    return Err(Error::Evicted);
                }
                Err(e.into())
            }
        }
    }

    /// After draining the socket: the ring once more, then the end of the
    /// stream if the publisher is gone and nothing is left.
    fn take_or_end(&mut self, buf: &mut Vec<u8>) -> Result<Option<Received>> {
        let got = self.take(buf)?;
        if got.is_none() && self.peer_gone {
            return Err(Error::Disconnected);
        }
        Ok(got)
    }

    /// Reads the control bytes waiting on the socket (wake-ups; an
    /// eviction notice; end of stream).
    fn drain_socket(&mut self) -> Result<()> {
        drain(&self.sock, &mut self.peer_gone, &mut self.evicted)
    }

    /// Whether a message is ready (without taking it).
    fn ready(&mut self) -> Result<bool> {
        if self.evicted {
            return Err(Error::Evicted);
        }
        match self.reader.has_data() {
            Ok(b) => Ok(b),
            Err(shmsock_shm::Error::Closed) => Err(Error::Closed),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until a message is ready, `deadline` passes
    /// ([`Error::Timeout`]) or the topic ends.
    fn wait_data(&mut self, mut deadline: Deadline) -> Result<()> {
        loop {
            for _ in 0..SPINS {
                if self.ready()? {
                    return Ok(());
                }
                std::hint::spin_loop();
            }
            // SYNC POINT `fanout-park`, as in `recv_until`.
            self.reader.park();
            let r = self.ready();
            if !matches!(r, Ok(false)) {
                self.reader.unpark();
                r?;
                return Ok(());
            }
            let w = sock::wait_any(&[self.sock.as_fd()], deadline.get());
            self.reader.unpark();
            if w.map_err(|e| Error::io("poll", e))?.is_empty() {
                return if self.ready()? {
                    Ok(())
                } else {
                    Err(Error::Timeout)
                };
            }
            self.drain_socket()?;
            if !self.ready()? && self.peer_gone {
                return Err(Error::Disconnected);
            }
        }
    }

    /// In-place reads need Block.
    fn check_block(&self) -> Result<()> {
        if self.reader.policy() != Policy::Block {
            return Err(shmsock_shm::Error::WrongPolicy(
                "in-place reads need Policy::Block (DropOldest subscribers use recv)",
            )
            .into());
        }
        Ok(())
    }

    /// The next message in place, if one is ready (the caller checked).
    fn sample(&mut self) -> Result<Option<Sample<'_>>> {
        let Subscriber {
            reader,
            sock,
            peer_gone,
            evicted,
            ..
        } = self;
        match reader.try_read() {
            Ok(Some(inner)) => Ok(Some(Sample {
                inner: Some(inner),
                sock,
            })),
            Ok(None) => Ok(None),
            Err(shmsock_shm::Error::Closed) => Err(Error::Closed),
            Err(e) => {
                // Evicted, then overwritten: the notice came first.
                let _ = drain(sock, peer_gone, evicted);
                if *evicted {
                    return Err(Error::Evicted);
                }
                Err(e.into())
            }
        }
    }

    /// Reads the next message in place (zero copy), if one is ready: the
    /// record stays in the publisher's ring, and holds the publisher's
    /// space (Block), until the [`Sample`] is dropped. Only under
    /// [`Policy::Block`].
    ///
    /// # Errors
    /// [`Error::Shm`] with `WrongPolicy` under DropOldest; otherwise as
    /// [`Subscriber::try_recv`].
    pub fn try_read(&mut self) -> Result<Option<Sample<'_>>> {
        self.check_block()?;
        if !self.ready()? {
            self.drain_socket()?;
            if !self.ready()? {
                if self.peer_gone {
                    return Err(Error::Disconnected);
                }
                return Ok(None);
            }
        }
        self.sample()
    }

    /// As [`Subscriber::try_read`], waiting up to `timeout` for a message
    /// (counted from when the call first has to wait).
    ///
    /// # Errors
    /// As [`Subscriber::try_read`]; [`Error::Timeout`].
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Sample<'_>> {
        self.check_block()?;
        self.wait_data(Deadline::after(timeout))?;
        self.sample()?.ok_or(Error::Protocol(
            "the publisher's tail moved but no record followed",
        ))
    }

    /// Unsubscribes (dropping the subscriber does the same).
    pub fn unsubscribe(self) {}
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = sock::send_byte(self.sock.as_fd(), CTL_BYE);
    }
}

/// Reads the control bytes waiting on the socket (wake-ups; an eviction
/// notice; end of stream).
fn drain(sock_: &UnixStream, peer_gone: &mut bool, evicted: &mut bool) -> Result<()> {
    if *peer_gone {
        return Ok(());
    }
    let mut b = [0u8; 64];
    // Bounded: a publisher that floods us costs at most 16 reads here.
    for _ in 0..16 {
        match sock::recv_bytes(sock_.as_fd(), &mut b) {
            Ok(Some(0)) => return Ok(()),
            Ok(Some(n)) => {
                for &x in &b[..n] {
                    match x {
                        CTL_WAKE => {}
                        CTL_EVICTED => *evicted = true,
                        _ => {
                            return Err(Error::Protocol("unknown control byte from the publisher"))
                        }
                    }
                }
                if *evicted {
                    return Err(Error::Evicted);
                }
            }
            Ok(None) => {
                *peer_gone = true;
                return Ok(());
            }
            Err(e) => return Err(Error::io("recv", e)),
        }
    }
    Ok(())
}

/// A message read in place by [`Subscriber::try_read`] or
/// [`Subscriber::read_timeout`] (Block only). Dropping it releases the
/// record (and wakes the publisher if it waits for the space).
///
/// The bytes stay in the publisher's segment, which this process maps
/// read-only and which the publisher could still write if it broke the
/// protocol (or after evicting this subscriber). So the safe accessors copy
/// and then check; borrowing in place is `unsafe`.
#[derive(Debug)]
pub struct Sample<'a> {
    inner: Option<FanoutSample<'a>>,
    sock: &'a UnixStream,
}

impl Sample<'_> {
    fn get(&self) -> Result<&FanoutSample<'_>> {
        self.inner
            .as_ref()
            .ok_or(Error::Protocol("sample already released"))
    }

    /// The message's sequence number.
    pub fn seq(&self) -> u64 {
        self.inner.as_ref().map_or(0, FanoutSample::seq)
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, FanoutSample::len)
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the payload's first `dst.len().min(self.len())` bytes into
    /// `dst`, then checks that the publisher did not overwrite them
    /// meanwhile.
    ///
    /// # Errors
    /// [`Error::Shm`] if they were overwritten (the publisher evicted us:
    /// the next call says [`Error::Evicted`]).
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<usize> {
        Ok(self.get()?.copy_to(dst)?)
    }

    /// The payload, copied (and checked, as [`Sample::copy_to`]).
    ///
    /// # Errors
    /// As [`Sample::copy_to`].
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = vec![0; self.len()];
        self.copy_to(&mut v)?;
        Ok(v)
    }

    /// Raw pointer to the payload, valid for [`Sample::len`] bytes while
    /// the sample lives (null if released).
    pub fn as_ptr(&self) -> *const u8 {
        self.inner
            .as_ref()
            .map_or(std::ptr::null(), FanoutSample::as_ptr)
    }

    /// Whether the publisher has not (yet) announced overwriting this
    /// record: check after reading through [`Sample::as_slice_unchecked`].
    pub fn is_intact(&self) -> bool {
        self.inner.as_ref().is_some_and(FanoutSample::is_intact)
    }

    /// Borrows the payload in place (zero copy).
    ///
    /// # Safety
    /// The publisher must not write these bytes while the slice lives:
    /// true of an honest publisher under Block that has not evicted this
    /// subscriber; a malicious one could change them under the borrow,
    /// which Rust's aliasing rules forbid.
    #[allow(unsafe_code)] // the one place pubsub lends ring memory; contract above
    pub unsafe fn as_slice_unchecked(&self) -> &[u8] {
        match &self.inner {
            // SAFETY: the caller's contract, as documented above.
            Some(s) => unsafe { s.as_slice_unchecked() },
            None => &[],
        }
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.inner.take() {
            if s.release() {
                // Full buffer: a wake-up is queued already.
                let _ = sock::send_byte(self.sock.as_fd(), CTL_WAKE);
            }
        }
    }
}
