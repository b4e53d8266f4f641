//! Connection and listener options.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{Connection, Listener};

/// How a blocked call waits for the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-poll the ring: lowest latency, burns a core while waiting. The
    /// socket is still checked now and then, so a dead peer and timeouts
    /// are noticed.
    Spin,
    /// Park at once: mark the ring, sleep on the socket until the peer sends
    /// a wake-up. Costs a syscall on each side per wake-up; no spinning
    /// between messages. In the middle of a message larger than one ring
    /// record, whose peer is copying the next fragment in (or the last one
    /// out) right now, it first spins for about one fragment's copy time
    /// (5-100 µs) and parks only if the fragment (or the space) has not
    /// come by then: a park per fragment would cost a wake-up per fragment.
    Block,
    /// Spin, then park, where spinning pays: each wait either spins up to
    /// `spin` and then parks, or parks at once, whichever the recent waits
    /// of this half show to be cheaper (the time from the start of a wait
    /// to the event; spinning must be clearly cheaper, as it also costs a
    /// core). So a hot peer is caught spinning, and a peer that sleeps
    /// between messages, or waits for our own core, gets the core at once.
    /// The other way is tried every 128th wait (512th when one costs twice
    /// the other). It never yields the CPU while spinning (see
    /// `docs/design.md`, "Waiting"). In the middle of a message larger than
    /// one ring record it first spins for the next fragment as `Block`
    /// does. The default, with 50 µs.
    Adaptive {
        /// The longest spin before parking.
        spin: Duration,
    },
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::Adaptive {
            spin: Duration::from_micros(50),
        }
    }
}

/// Credentials of a peer process, from `SO_PEERCRED` at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// Process id, as seen from our PID namespace; `None` if the peer runs
    /// in a namespace we cannot see (the kernel reports pid 0).
    pub pid: Option<i32>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Which peers may connect (checked before any memory is shared).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum CredentialsPolicy {
    /// Any peer the socket file's permissions let in.
    #[default]
    Any,
    /// Only processes of the same effective uid as ours.
    SameUid,
    /// Only this uid.
    Uid(u32),
    /// A custom check.
    Custom(Arc<dyn Fn(&Credentials) -> bool + Send + Sync>),
}

impl fmt::Debug for CredentialsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsPolicy::Any => f.write_str("Any"),
            CredentialsPolicy::SameUid => f.write_str("SameUid"),
            CredentialsPolicy::Uid(u) => write!(f, "Uid({u})"),
            CredentialsPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl CredentialsPolicy {
    pub(crate) fn allows(&self, c: &Credentials) -> bool {
        match self {
            CredentialsPolicy::Any => true,
            CredentialsPolicy::SameUid => c.uid == rustix::process::geteuid().as_raw(),
            CredentialsPolicy::Uid(u) => c.uid == *u,
            CredentialsPolicy::Custom(f) => f(c),
        }
    }
}

/// Options for connections (client side) and listeners (server side).
///
/// ```no_run
/// use shmsock_transport::{Builder, WaitStrategy};
/// use std::time::Duration;
/// # fn main() -> Result<(), shmsock_transport::Error> {
/// let mut conn = Builder::new()
///     .ring_capacity(4 << 20)
///     .wait(WaitStrategy::Spin)
///     .timeout(Some(Duration::from_secs(1)))
///     .connect("/tmp/app.sock")?;
/// conn.send(b"ping")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) ring_capacity: u64,
    pub(crate) max_peer_ring: u64,
    pub(crate) max_message: u64,
    pub(crate) wait: WaitStrategy,
    pub(crate) handshake_timeout: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) policy: CredentialsPolicy,
    pub(crate) socket_mode: u32,
    pub(crate) futex_wakeups: bool,
    pub(crate) asymmetric_fences: bool,
    pub(crate) prefault: bool,
    pub(crate) fragment_size: usize,
    pub(crate) pipeline_threshold: usize,
}

/// Default of [`Builder::pipeline_threshold`].
/// 256 KiB: in a quiet same-run A/B a 1 MiB round trip split into 128 KiB
/// fragments took 0.80-1.05x the time of one record (faster in 7 of 8
/// runs), one way at par (docs/performance.md, "Latest: session 6" and
/// "Block and large messages").
pub(crate) const DEFAULT_PIPELINE_THRESHOLD: usize = 256 << 10;

/// Payload bytes of the fragments of a message sent in fragments only to
/// pipeline it ([`Builder::pipeline_threshold`]), unless
/// [`Builder::fragment_size`] is set.
pub(crate) const PIPELINE_FRAGMENT: usize = 128 << 10;

/// Default of [`Builder::max_message`] and [`Builder::max_peer_ring`].
const DEFAULT_LIMIT: u64 = 64 << 20;

impl Default for Builder {
    fn default() -> Self {
        Builder {
            ring_capacity: 1 << 20,
            max_peer_ring: DEFAULT_LIMIT,
            max_message: DEFAULT_LIMIT,
            wait: WaitStrategy::default(),
            handshake_timeout: Duration::from_secs(5),
            timeout: None,
            policy: CredentialsPolicy::Any,
            socket_mode: 0o600,
            futex_wakeups: true,
            asymmetric_fences: false,
            prefault: true,
            fragment_size: 0,
            pipeline_threshold: DEFAULT_PIPELINE_THRESHOLD,
        }
    }
}

impl Builder {
    /// Default options: 1 MiB rings, 64 MiB message and peer-ring limits,
    /// adaptive waiting,
    /// 5 s handshake timeout, no call timeout, any peer, socket mode 0600,
    /// rings pre-faulted at connect.
    ///
    /// One builder serves both sides: every option applies to a client and
    /// to a server alike (each side sizes its own ring, limits what it
    /// accepts, and checks its peer's credentials), except
    /// [`Builder::socket_mode`], which only [`Builder::bind`] uses.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sizes the ring this side writes into so that messages of up to
    /// `len` bytes travel inline (one record each, readable in place): the
    /// smallest power of two of at least `2 * (len + 8)` bytes, and at least
    /// 4 KiB. Larger messages still work; they stream in fragments.
    ///
    /// ```
    /// let opts = shmsock_transport::Builder::new().max_inline_message(100_000);
    /// // A 256 KiB ring: records of up to 131,064 bytes.
    /// # let _ = opts;
    /// ```
    pub fn max_inline_message(mut self, len: usize) -> Self {
        let need = (len as u64).saturating_add(8).saturating_mul(2);
        self.ring_capacity = need
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .max(4096);
        self
    }

    /// Capacity of the ring this side writes into (a power of two, at least
    /// 4 KiB). Messages up to half of it, less 8 bytes, travel inline;
    /// larger ones stream through it in fragments of a quarter ring.
    pub fn ring_capacity(mut self, bytes: u64) -> Self {
        self.ring_capacity = bytes;
        self
    }

    /// Payload bytes of each fragment this side writes for a message larger
    /// than the inline limit (rounded down to a multiple of 8, clamped to
    /// the ring's record limit; default 0: a quarter of the ring). Smaller
    /// fragments let the receiver start copying sooner and keep more in
    /// flight, larger ones cost fewer records; `docs/performance.md`
    /// ("Bulk payloads") has the measurements behind the default. Only the
    /// sending side uses it: a receiver takes fragments of any size its
    /// ring allows.
    ///
    /// # Examples
    /// ```
    /// let opts = shmsock_transport::Builder::new()
    ///     .ring_capacity(4 << 20)
    ///     .fragment_size(256 << 10);
    /// # let _ = opts;
    /// ```
    pub fn fragment_size(mut self, bytes: usize) -> Self {
        self.fragment_size = bytes;
        self
    }

    /// Messages longer than this many bytes are sent by `send` (and
    /// `try_send`, `send_batch`) as fragments even when they would fit one
    /// ring record, if the receiver has consumed everything sent before
    /// (it is waiting for this one): it then copies the first fragments
    /// out while the sender still copies the next ones in (pipelined), so
    /// the message arrives sooner than as one record, which the receiver
    /// can only start on once the sender has written all of it. Behind a
    /// backlog a message goes as one record (the receiver is busy anyway,
    /// and one record per message streams faster). Their fragments are
    /// [`Builder::fragment_size`] bytes if set, else 128 KiB (at most a
    /// quarter of the ring). Default 256 KiB; `usize::MAX` sends every
    /// message that fits one record as one record. Zero-copy writes
    /// (`reserve`, `write_message`) are not affected. `docs/performance.md`
    /// ("Block and large messages") has the measurements behind the
    /// defaults.
    ///
    /// # Examples
    /// ```
    /// // Never split a message that fits one record.
    /// let opts = shmsock_transport::Builder::new().pipeline_threshold(usize::MAX);
    /// # let _ = opts;
    /// ```
    pub fn pipeline_threshold(mut self, bytes: usize) -> Self {
        self.pipeline_threshold = bytes;
        self
    }

    /// Largest ring the peer may ask us to map (default 64 MiB). It bounds
    /// the peer memory a connection maps; see `docs/security.md`.
    pub fn max_peer_ring(mut self, bytes: u64) -> Self {
        self.max_peer_ring = bytes;
        self
    }

    /// Largest message this side accepts (default 64 MiB): it bounds the
    /// memory a peer can make us allocate to reassemble one message. The
    /// peer learns it in the handshake and refuses to send more.
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = bytes;
        self
    }

    /// How blocked calls wait.
    pub fn wait(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// Time allowed for the handshake (default 5 s). `Duration::MAX` (or
    /// anything too far away to represent) means no limit.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// The handshake timeout set with [`Builder::handshake_timeout`], for
    /// layers that bound more than the handshake by it (a broker lookup
    /// before the handshake, in `shmsock-services`).
    pub fn get_handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Default timeout of `send`/`recv`/`reserve` (default none).
    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }

    /// Which peers are accepted.
    pub fn credentials(mut self, p: CredentialsPolicy) -> Self {
        self.policy = p;
        self
    }

    /// Whether a blocked call first sleeps on a futex in shared memory
    /// (default `true`). With `true` the peer wakes it with one
    /// `FUTEX_WAKE` syscall and no socket message; a call still waiting
    /// after 20 ms parks on the socket instead, so that an idle wait costs
    /// nothing and the peer's death (which touches no futex) ends it at
    /// once. With `false` it always sleeps on the socket and is woken by a
    /// wake-up datagram, as an event loop polling [`AsFd`] always is (and
    /// as the `try_*` calls and the tokio integration always park). The
    /// kind is chosen per park, so the two sides may differ. Either way the
    /// peer's death is noticed within a fraction of a second
    /// (`docs/design.md`, "Futex wake-ups").
    ///
    /// Measured in `bench`'s paced scenario (a sleeping server, not pinned)
    /// futex wake-ups put `Block` and `Adaptive` 1.3–1.4x ahead of a Unix
    /// stream where socket wake-ups are at par (`docs/performance.md`).
    /// Sessions 1–5 kept this off for a lost futex wake-up in the ring
    /// stress test (`shm/tests/park_stress.rs`); session 6 found its cause
    /// (the sleeper's snapshot of the wake word was taken after its park,
    /// so it could already hold the one wake-up owed to the episode) and
    /// fixed it (`docs/design.md`, "Futex wake-ups").
    ///
    /// [`AsFd`]: std::os::fd::AsFd
    pub fn futex_wakeups(mut self, on: bool) -> Self {
        self.futex_wakeups = on;
        self
    }

    /// Whether the rings run with asymmetric fences where the kernel
    /// allows (default `false`, by measurement: in the paced
    /// request/response scenario the default `Adaptive` round trip was
    /// 1–3 µs slower with them, a `membarrier` per park on this 2-vCPU VM,
    /// while the fences they save cost tens of nanoseconds per message;
    /// streams that rarely park may gain). With it, publishing and releasing carry no SeqCst
    /// fence, and the side that parks pays with
    /// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`. Used only if both
    /// processes ask for it and registered for it (the handshake records
    /// each side's answer); otherwise both sides use ordinary fences. A
    /// side whose wait strategy is [`WaitStrategy::Block`] never asks: it
    /// parks on every wait, and a membarrier per park costs more than the
    /// fences it saves (measured in `docs/performance.md`).
    ///
    /// The ring stress test (`shm/tests/park_stress.rs`, 10^6 parks) runs
    /// this mode too; it shared the futex wake-ups' lost wake-up until
    /// session 6 (see [`Builder::futex_wakeups`]). The mode stays off by
    /// default for its cost, above.
    pub fn asymmetric_fences(mut self, on: bool) -> Self {
        self.asymmetric_fences = on;
        self
    }

    /// Permission bits of the listener's socket file (default `0o600`).
    /// Used by [`Builder::bind`] only; a client ignores it.
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode;
        self
    }

    /// Whether the handshake pre-faults both rings' pages (`MAP_POPULATE`
    /// on our writable mapping and on the read-only mapping of the peer's
    /// ring; default on). The page-table work then happens once at connect,
    /// instead of as page faults (one per 4 KiB page, on each side) in the
    /// first messages through each part of the ring. It costs connect time
    /// in proportion to the ring sizes, and no memory: rings are fully
    /// allocated either way.
    pub fn prefault(mut self, on: bool) -> Self {
        self.prefault = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !self.ring_capacity.is_power_of_two()
            || !(4096..=shmsock_shm::ring::MAX_CAPACITY).contains(&self.ring_capacity)
        {
            return Err(Error::Config(
                "ring capacity must be a power of two between 4 KiB and 1 TiB",
            ));
        }
        if self.max_peer_ring < 4096 {
            return Err(Error::Config("max_peer_ring must be at least 4 KiB"));
        }
        if self.max_message == 0 || self.max_message > i64::MAX as u64 {
            return Err(Error::Config("max_message must be between 1 and i64::MAX"));
        }
        Ok(())
    }

    /// Connects to the listener at `path` (`@name` for an abstract socket).
    ///
    /// # Errors
    /// [`Error::Io`] if the socket cannot connect; handshake errors
    /// ([`Error::VersionMismatch`], [`Error::Rejected`], [`Error::Protocol`],
    /// [`Error::Timeout`], [`Error::CredentialsRefused`]).
    pub fn connect(&self, path: impl AsRef<Path>) -> Result<Connection> {
        crate::handshake::driver::connect(path.as_ref(), self)
    }

    /// Runs the client side of the handshake over an already connected
    /// Unix `SOCK_SEQPACKET` socket (for example one end of a socket pair
    /// handed to a child process, or a socket a broker introduced). The
    /// socket may be in non-blocking mode; it is switched to blocking. The
    /// handshake is bounded by [`Builder::handshake_timeout`].
    ///
    /// ```no_run
    /// use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    /// use shmsock_transport::Builder;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (a, b) = socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?;
    /// let server = std::thread::spawn(move || Builder::new().accept_socket(a));
    /// let mut client = Builder::new().connect_socket(b)?;
    /// let mut server = server.join().expect("server thread")?;
    /// client.send(b"hi")?;
    /// assert_eq!(server.recv()?.to_vec(), b"hi");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] if `sock` is not a Unix `SOCK_SEQPACKET` socket
    /// (std's `UnixStream` is `SOCK_STREAM`: message boundaries would be
    /// lost); otherwise as [`Builder::connect`].
    pub fn connect_socket(&self, sock: std::os::fd::OwnedFd) -> Result<Connection> {
        self.validate()?;
        let deadline = crate::handshake::deadline_after(self.handshake_timeout);
        let sock = crate::handshake::driver::adopt_socket(sock)?;
        crate::handshake::driver::client_handshake(sock, Path::new("<socket>"), deadline, self)
    }

    /// Runs the server side of the handshake over an already connected
    /// Unix `SOCK_SEQPACKET` socket (the other end of
    /// [`Builder::connect_socket`]), blocking until the client's `Hello`
    /// arrives or [`Builder::handshake_timeout`] passes. The socket may be in
    /// non-blocking mode; it is switched to blocking.
    ///
    /// # Errors
    /// [`Error::Config`] if `sock` is not a Unix `SOCK_SEQPACKET` socket;
    /// otherwise as [`Listener::accept`]; a peer that hangs up before its
    /// `Hello` gives [`Error::Disconnected`].
    pub fn accept_socket(&self, sock: std::os::fd::OwnedFd) -> Result<Connection> {
        self.validate()?;
        let sock = crate::handshake::driver::adopt_socket(sock)?;
        match crate::handshake::driver::accept_blocking(sock, self) {
            Ok(c) => Ok(c),
            Err(crate::handshake::driver::Accept::HungUp) => Err(Error::Disconnected),
            Err(crate::handshake::driver::Accept::Failed(e)) => Err(e),
        }
    }

    /// Binds a listener at `path` (`@name` for an abstract socket).
    ///
    /// # Errors
    /// See [`Listener::bind`].
    pub fn bind(&self, path: impl AsRef<Path>) -> Result<Listener> {
        Listener::bind_with(path, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_inline_message_sizes_the_ring() {
        let cap = |len| Builder::new().max_inline_message(len).ring_capacity;
        assert_eq!(cap(0), 4096);
        assert_eq!(cap(2040), 4096);
        assert_eq!(cap(2041), 8192);
        assert_eq!(cap(100_000), 256 << 10);
        assert_eq!(
            shmsock_shm::ring::max_record_len(cap(100_000)),
            (128 << 10) - 8
        );
        // Absurd sizes saturate and are refused by validation, not panicked on.
        assert!(Builder::new()
            .max_inline_message(usize::MAX)
            .validate()
            .is_err());
    }
}
