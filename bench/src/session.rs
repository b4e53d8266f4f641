//! A benchmark session: a forked peer process, a data link of one
//! transport between the two, and a control channel on which the parent
//! tells the peer what to do and the peer reports back.
//!
//! The parent is the measuring side. For a round trip it sends message
//! `s` and the peer answers with message `s + 1` of the same size; for a
//! one-way stream it sends `n` messages and the peer, once it has received
//! and verified all of them, says so on the control channel (the parent's
//! clock stops then). The control channel is a separate `SOCK_STREAM`
//! pair, so the data link carries nothing but the measured messages.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{socketpair, sockopt, AddressFamily, SockFlag, SockType};
use shmsock::{Builder, Listener, WaitStrategy};

use super::child::{fork_with, BoxError, Child, Result};
use super::iox::{self, IoxApi, IoxLink, IoxWait};
use super::link::{
    Framed, Link, SeqPacket, ShmBatch, ShmCopy, ShmStreamed, ShmZeroCopy, TokioFramed, TokioShm,
};
use super::watchdog::{Hung, Watchdog, GRACE};

/// How a shmsock connection waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// [`WaitStrategy::Spin`].
    Spin,
    /// The default, [`WaitStrategy::Adaptive`] with 50 µs of spinning.
    Adaptive,
    /// [`WaitStrategy::Block`].
    Block,
}

impl Wait {
    /// All three, in table order.
    pub const ALL: [Wait; 3] = [Wait::Spin, Wait::Adaptive, Wait::Block];

    /// The shmsock wait strategy.
    pub fn strategy(self) -> WaitStrategy {
        match self {
            Wait::Spin => WaitStrategy::Spin,
            Wait::Adaptive => WaitStrategy::default(),
            Wait::Block => WaitStrategy::Block,
        }
    }
}

/// Which shmsock API moves the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `send(&buf)` / `recv` + `copy_to(&mut buf)`.
    Copy,
    /// `reserve` + fill in place + `commit` / `recv` + read in place.
    ZeroCopy,
    /// `send_batch` / `recv_batch` + checksum of the copy, 32 messages per
    /// batch (measured at 64 B only).
    Batch,
    /// `write_message` (filled in the ring) / `read_message`, each piece
    /// copied into a reused fragment-sized buffer and checksummed
    /// ([`super::link::ShmStreamed`]); measured for fragmented messages
    /// only, with `Adaptive` and `Block`.
    Streamed,
}

/// A transport compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// shmsock.
    Shm(Wait, Api),
    /// Unix `SOCK_STREAM` socket pair, length-prefixed framing.
    Stream,
    /// Unix `SOCK_SEQPACKET` socket pair, one datagram per message.
    SeqPacket,
    /// Two pipes, length-prefixed framing.
    Pipe,
    /// iceoryx2 publish-subscribe, one service each way ([`iox`]).
    Iceoryx2(IoxWait, IoxApi),
    /// shmsock's async API (`shmsock::tokio`, default wait strategy) on a
    /// current-thread tokio runtime, `send` / `recv` + `copy_to`.
    TokioShm,
    /// tokio's `UnixStream` (a `SOCK_STREAM` socket pair), length-prefixed
    /// framing: the baseline of [`Transport::TokioShm`].
    TokioStream,
}

impl Transport {
    /// Every transport, baselines first.
    pub fn all() -> Vec<Transport> {
        let mut v = vec![Transport::Stream, Transport::SeqPacket, Transport::Pipe];
        for w in Wait::ALL {
            v.push(Transport::Shm(w, Api::Copy));
            v.push(Transport::Shm(w, Api::ZeroCopy));
            v.push(Transport::Shm(w, Api::Batch));
            if w != Wait::Spin {
                v.push(Transport::Shm(w, Api::Streamed));
            }
        }
        v.push(Transport::TokioStream);
        v.push(Transport::TokioShm);
        v
    }

    /// The iceoryx2 rows (not in [`Transport::all`], which the criterion
    /// benches measure).
    pub fn iceoryx2() -> Vec<Transport> {
        let mut v = Vec::new();
        for w in [IoxWait::Poll, IoxWait::Event] {
            for a in [IoxApi::Copy, IoxApi::Loan] {
                v.push(Transport::Iceoryx2(w, a));
            }
        }
        v
    }

    /// The shmsock rows an iceoryx2 row is compared with: busy-polling
    /// against `Spin` and `Adaptive` (the default), event-driven against
    /// `Block`; the copy against `send`, the loan against `reserve`
    /// (zero-copy).
    pub fn shmsock_matches(self) -> Vec<Transport> {
        let Transport::Iceoryx2(w, a) = self else {
            return Vec::new();
        };
        let api = match a {
            IoxApi::Copy => Api::Copy,
            IoxApi::Loan => Api::ZeroCopy,
        };
        let mut v = match w {
            IoxWait::Poll => vec![
                Transport::Shm(Wait::Spin, api),
                Transport::Shm(Wait::Adaptive, api),
            ],
            IoxWait::Event => vec![Transport::Shm(Wait::Block, api)],
        };
        // The loan's receiver reads in place; shmsock's streamed reader is
        // the large-message path that never copies the whole message.
        if a == IoxApi::Loan {
            v.push(Transport::Shm(
                if w == IoxWait::Poll {
                    Wait::Adaptive
                } else {
                    Wait::Block
                },
                Api::Streamed,
            ));
        }
        v
    }

    /// Name of the transport column.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Shm(Wait::Spin, _) => "shmsock Spin",
            Transport::Shm(Wait::Adaptive, _) => "shmsock Adaptive",
            Transport::Shm(Wait::Block, _) => "shmsock Block",
            Transport::Stream => "unix stream",
            Transport::SeqPacket => "unix seqpacket",
            Transport::Pipe => "pipe",
            Transport::Iceoryx2(IoxWait::Poll, _) => "iceoryx2 poll",
            Transport::Iceoryx2(IoxWait::Event, _) => "iceoryx2 event",
            Transport::TokioShm => "shmsock tokio",
            Transport::TokioStream => "tokio UnixStream",
        }
    }

    /// Whether this runs on tokio (its baseline is then
    /// [`Transport::TokioStream`]).
    pub fn is_tokio(self) -> bool {
        matches!(self, Transport::TokioShm | Transport::TokioStream)
    }

    /// The baseline this transport's ratios are taken against.
    pub fn baseline(self) -> Transport {
        if self.is_tokio() {
            Transport::TokioStream
        } else {
            Transport::Stream
        }
    }

    /// Name of the mode column for messages of `size` bytes.
    pub fn mode(self, size: usize) -> &'static str {
        let large = size > inline_limit(size);
        match self {
            Transport::Shm(_, Api::Copy) if large => "send (frags)",
            Transport::Shm(_, Api::ZeroCopy) if large => "frags, in place",
            Transport::Shm(_, Api::Copy) => "send",
            Transport::Shm(_, Api::ZeroCopy) => "reserve",
            Transport::Shm(_, Api::Batch) => "batch32",
            Transport::Shm(_, Api::Streamed) => "frags, streamed",
            Transport::TokioShm if large => "send (frags)",
            Transport::TokioShm => "send",
            Transport::Stream | Transport::Pipe | Transport::TokioStream => "framed",
            Transport::SeqPacket => "datagram",
            Transport::Iceoryx2(_, IoxApi::Copy) => "copy",
            Transport::Iceoryx2(_, IoxApi::Loan) => "loan",
        }
    }

    /// A short identifier (criterion ids, JSON).
    pub fn id(self) -> &'static str {
        match self {
            Transport::Shm(Wait::Spin, Api::Copy) => "shmsock_spin_send",
            Transport::Shm(Wait::Spin, Api::ZeroCopy) => "shmsock_spin_zerocopy",
            Transport::Shm(Wait::Spin, Api::Batch) => "shmsock_spin_batch32",
            Transport::Shm(Wait::Adaptive, Api::Batch) => "shmsock_adaptive_batch32",
            Transport::Shm(Wait::Block, Api::Batch) => "shmsock_block_batch32",
            Transport::Shm(Wait::Adaptive, Api::Copy) => "shmsock_adaptive_send",
            Transport::Shm(Wait::Adaptive, Api::ZeroCopy) => "shmsock_adaptive_zerocopy",
            Transport::Shm(Wait::Block, Api::Copy) => "shmsock_block_send",
            Transport::Shm(Wait::Block, Api::ZeroCopy) => "shmsock_block_zerocopy",
            Transport::Shm(Wait::Spin, Api::Streamed) => "shmsock_spin_streamed",
            Transport::Shm(Wait::Adaptive, Api::Streamed) => "shmsock_adaptive_streamed",
            Transport::Shm(Wait::Block, Api::Streamed) => "shmsock_block_streamed",
            Transport::Stream => "unix_stream",
            Transport::SeqPacket => "unix_seqpacket",
            Transport::Pipe => "pipe",
            Transport::Iceoryx2(IoxWait::Poll, IoxApi::Copy) => "iceoryx2_poll_copy",
            Transport::Iceoryx2(IoxWait::Poll, IoxApi::Loan) => "iceoryx2_poll_loan",
            Transport::Iceoryx2(IoxWait::Event, IoxApi::Copy) => "iceoryx2_event_copy",
            Transport::Iceoryx2(IoxWait::Event, IoxApi::Loan) => "iceoryx2_event_loan",
            Transport::TokioShm => "shmsock_tokio_send",
            Transport::TokioStream => "tokio_unix_stream",
        }
    }

    /// Why messages of `size` bytes are not measured over this transport,
    /// if they are not.
    ///
    /// # Errors
    /// If the seqpacket limit cannot be read.
    pub fn skip_reason(self, size: usize) -> Result<Option<String>> {
        Ok(match self {
            Transport::Pipe if size != 64 => Some("pipe is measured at 64 B only".into()),
            Transport::TokioShm | Transport::TokioStream
                if !matches!(size, 64 | 0x10_0000 | 0x100_0000) =>
            {
                Some("tokio is measured at 64 B, 1 MiB and 16 MiB".into())
            }
            Transport::Shm(_, Api::Batch) if size != 64 => {
                Some("batches are measured at 64 B only".into())
            }
            Transport::Shm(_, Api::Streamed) if size <= inline_limit(size) => {
                Some("streamed reading is measured for fragmented messages only".into())
            }
            Transport::SeqPacket => {
                let max = seqpacket_max()?;
                (size > max).then(|| {
                    format!(
                        "seqpacket skipped: above its largest datagram ({max} B = SO_SNDBUF - 32)"
                    )
                })
            }
            _ => None,
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Shm(_, Api::Copy) => write!(f, "{} send", self.name()),
            Transport::Shm(_, Api::ZeroCopy) => write!(f, "{} zero-copy", self.name()),
            Transport::Shm(_, Api::Batch) => write!(f, "{} batch", self.name()),
            Transport::Iceoryx2(_, IoxApi::Copy) => write!(f, "{} copy", self.name()),
            Transport::Iceoryx2(_, IoxApi::Loan) => write!(f, "{} loan", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// Ring capacity used for messages of `size` bytes: sixteen messages'
/// worth, at least 64 KiB and at most the default 1 MiB. So from 64 KiB
/// up a message meets the ring a user gets by default, and from 1 MiB up
/// it streams through it in fragments.
///
/// Sixteen, not four (until session 6): with four 16 KiB messages in a
/// 64 KiB ring a `Block` reader, faster than its writer, emptied the ring
/// and parked about once per ring, and each wake-up doubled the writer's
/// CPU per message (docs/performance.md, "Block and large messages"),
/// while the Unix stream it is compared with buffers 208 KiB and a
/// shmsock user gets a 1 MiB ring by default. At most 1 MiB (until session
/// 7, 1 MiB messages had a 4 MiB ring, to travel inline): on the quiet
/// machine a 1 MiB `send` round trip through the default 1 MiB ring took
/// 1.62x / 1.76x less time than the stream's (`Block` / `Adaptive`)
/// against 1.22x / 1.29x through a 4 MiB ring (`block_probe --op rtt
/// --size 1M --rings 1M,4M`, docs/performance.md, "Latest: session 7").
pub fn ring_capacity(size: usize) -> u64 {
    ((16 * size) as u64)
        .next_power_of_two()
        .clamp(64 << 10, 1 << 20)
}

/// Largest inline message with the ring used for `size`.
fn inline_limit(size: usize) -> usize {
    shmsock::shm::ring::max_record_len(ring_capacity(size)) as usize
}

/// Largest message a Unix `SOCK_SEQPACKET` socket pair takes here: the
/// kernel refuses datagrams above `SO_SNDBUF - 32` (net/unix/af_unix.c).
///
/// # Errors
/// If the probe socket cannot be made or queried.
pub fn seqpacket_max() -> Result<usize> {
    let (a, _b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair(SOCK_SEQPACKET): {e}"))?;
    let sndbuf = nix::sys::socket::getsockopt(&a, sockopt::SndBuf)
        .map_err(|e| format!("getsockopt(SO_SNDBUF): {e}"))?;
    Ok(sndbuf.saturating_sub(32))
}

/// Options of a session.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cores for the parent (already pinned by the caller) and the child.
    pub cores: Option<(usize, usize)>,
    /// Longest any single wait may take before the run is declared hung.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cores: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Counter making every abstract socket name of this process unique.
static SOCKET_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh abstract socket name for a shmsock listener.
pub fn socket_name() -> String {
    // Relaxed: a plain counter, nothing is published through it.
    let n = SOCKET_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("@shmsock-bench-{}-{n}", std::process::id())
}

/// The parent's end of a link.
enum ParentLink {
    ShmCopy(ShmCopy),
    ShmZeroCopy(ShmZeroCopy),
    ShmBatch(ShmBatch),
    ShmStreamed(ShmStreamed),
    Stream(Framed<UnixStream, UnixStream>),
    SeqPacket(SeqPacket<UnixStream>),
    Pipe(Framed<File, File>),
    Iox(IoxLink),
    TokioShm(TokioShm),
    TokioStream(TokioFramed),
}

/// Runs `$body` with `$l` bound to the concrete link, so that the loops are
/// compiled once per transport (no dynamic dispatch in the measurement).
macro_rules! with_link {
    ($link:expr, $l:ident => $body:expr) => {
        match $link {
            ParentLink::ShmCopy($l) => $body,
            ParentLink::ShmZeroCopy($l) => $body,
            ParentLink::ShmBatch($l) => $body,
            ParentLink::ShmStreamed($l) => $body,
            ParentLink::Stream($l) => $body,
            ParentLink::SeqPacket($l) => $body,
            ParentLink::Pipe($l) => $body,
            ParentLink::Iox($l) => $body,
            ParentLink::TokioShm($l) => $body,
            ParentLink::TokioStream($l) => $body,
        }
    };
}

/// What the child gets to build its end from.
enum ChildEnd {
    Shm { name: String, builder: Builder },
    Socket(UnixStream),
    Pipe { rx: File, tx: File },
    Iox(iox::Names),
}

/// What the parent keeps before it builds its end.
enum ParentEnd {
    Shm(Listener),
    Socket(UnixStream),
    Pipe { rx: File, tx: File },
    Iox(iox::Names),
}

/// Commands on the control channel (parent → child): 24 bytes, `op`, `n`,
/// `seq0` as little-endian u64.
const OP_ECHO: u64 = 1;
const OP_SINK: u64 = 2;
const OP_QUIT: u64 = 3;
/// Report the peer's process CPU time (a reply word, then the ns).
const OP_CPU: u64 = 4;
/// Round trips as [`OP_ECHO`], paced by the parent (a separate code only
/// for the test hook, [`TEST_HANG_ENV`]).
const OP_PACED: u64 = 5;
/// Replies (child → parent): a status word, then for errors a length and
/// that many bytes of text.
const REPLY_OK: u64 = 0;
const REPLY_ERR: u64 = 1;
/// How an error reported by the peer starts.
const PEER_PREFIX: &str = "peer process: ";

/// Reads one little-endian `u64`.
pub fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A running session: the parent's view.
pub struct Session {
    child: Child,
    ctl: UnixStream,
    link: ParentLink,
    size: usize,
    seq: u64,
    timeout: Duration,
    /// The transport and size, for the watchdog's message.
    what: String,
}

/// The shmsock options of a session: the default ones (no call timeout:
/// with one, a `Block` reader waits differently) but for the ring size and
/// the wait strategy. [`Watchdog`] guards against a hang instead.
fn shm_builder(size: usize, wait: Wait) -> Builder {
    Builder::new()
        .ring_capacity(ring_capacity(size))
        .wait(wait.strategy())
}

impl Session {
    /// Forks a peer and connects a link of `transport` for messages of
    /// `size` bytes.
    ///
    /// # Errors
    /// If setting up the link or forking fails, or the child fails to
    /// connect.
    pub fn start(transport: Transport, size: usize, opts: &Options) -> Result<Session> {
        let (ctl, child_ctl) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let (parent_end, child_end) = match transport {
            Transport::Shm(_, _) | Transport::TokioShm => {
                let wait = match transport {
                    Transport::Shm(w, _) => w,
                    _ => Wait::Adaptive,
                };
                let builder = shm_builder(size, wait);
                let name = socket_name();
                let listener = builder
                    .bind(&name)
                    .map_err(|e| format!("bind {name}: {e}"))?;
                (ParentEnd::Shm(listener), ChildEnd::Shm { name, builder })
            }
            Transport::Stream | Transport::TokioStream => {
                let (a, b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
                (ParentEnd::Socket(a), ChildEnd::Socket(b))
            }
            Transport::SeqPacket => {
                let (a, b) = socketpair(
                    AddressFamily::Unix,
                    SockType::SeqPacket,
                    None,
                    SockFlag::SOCK_CLOEXEC,
                )
                .map_err(|e| format!("socketpair(SOCK_SEQPACKET): {e}"))?;
                // A seqpacket fd read and written with read(2)/write(2):
                // std's stream type adds nothing but those calls and timeouts.
                (
                    ParentEnd::Socket(UnixStream::from(a)),
                    ChildEnd::Socket(UnixStream::from(b)),
                )
            }
            Transport::Pipe => {
                let (p2c_r, p2c_w) =
                    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
                let (c2p_r, c2p_w) =
                    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
                (
                    ParentEnd::Pipe {
                        rx: File::from(c2p_r),
                        tx: File::from(p2c_w),
                    },
                    ChildEnd::Pipe {
                        rx: File::from(p2c_r),
                        tx: File::from(c2p_w),
                    },
                )
            }
            Transport::Iceoryx2(..) => {
                let names = iox::Names::fresh();
                (ParentEnd::Iox(names.clone()), ChildEnd::Iox(names))
            }
        };
        // The links' own timeouts run past the watchdog's (and its grace),
        // so that a hang is the watchdog's to report (a row skipped as
        // hung), not a timeout error that ends the run.
        let timeout = opts.timeout + GRACE;
        let hang = test_hang(transport);
        let (mut child, (parent_end, ctl)) = fork_with(
            (parent_end, ctl),
            (child_end, child_ctl),
            opts.cores.map(|(_, c)| c),
            move |(end, ctl)| child_main(transport, size, end, ctl, timeout, hang),
        )?;
        ctl.set_read_timeout(Some(timeout))?;
        ctl.set_write_timeout(Some(timeout))?;
        let link = match (transport, parent_end) {
            (Transport::Shm(_, api), ParentEnd::Shm(listener)) => {
                let conn = accept_within(&listener, &mut child, opts.timeout)?;
                match api {
                    Api::Copy => ParentLink::ShmCopy(ShmCopy::new(conn, size)),
                    Api::ZeroCopy => ParentLink::ShmZeroCopy(ShmZeroCopy::new(conn, size)),
                    Api::Batch => ParentLink::ShmBatch(ShmBatch::new(conn, size)),
                    Api::Streamed => ParentLink::ShmStreamed(ShmStreamed::new(conn, size)),
                }
            }
            (Transport::Stream, ParentEnd::Socket(s)) => {
                s.set_read_timeout(Some(timeout))?;
                ParentLink::Stream(Framed::new(s.try_clone()?, s, size))
            }
            (Transport::TokioShm, ParentEnd::Shm(listener)) => {
                let conn = accept_within(&listener, &mut child, opts.timeout)?;
                ParentLink::TokioShm(TokioShm::new(conn, size)?)
            }
            (Transport::TokioStream, ParentEnd::Socket(s)) => {
                ParentLink::TokioStream(TokioFramed::new(s, size)?)
            }
            (Transport::SeqPacket, ParentEnd::Socket(s)) => {
                s.set_read_timeout(Some(timeout))?;
                ParentLink::SeqPacket(SeqPacket::new(s, size))
            }
            (Transport::Pipe, ParentEnd::Pipe { rx, tx }) => {
                ParentLink::Pipe(Framed::new(rx, tx, size))
            }
            (Transport::Iceoryx2(wait, api), ParentEnd::Iox(names)) => ParentLink::Iox(
                IoxLink::connect(&names, iox::Side::Parent, size, wait, api, timeout)?,
            ),
            _ => return Err("internal error: transport and endpoint disagree".into()),
        };
        Ok(Session {
            child,
            ctl,
            link,
            size,
            seq: 0,
            timeout: opts.timeout,
            what: format!("{transport} at {size} B"),
        })
    }

    fn command(&mut self, op: u64, n: u64, seq0: u64) -> Result<()> {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&op.to_le_bytes());
        b[8..16].copy_from_slice(&n.to_le_bytes());
        b[16..].copy_from_slice(&seq0.to_le_bytes());
        self.ctl
            .write_all(&b)
            .map_err(|e| format!("control channel (write): {e}"))?;
        Ok(())
    }

    /// Reads the child's reply to a command.
    fn reply(&mut self) -> Result<()> {
        let status = read_u64(&mut self.ctl).map_err(|e| format!("control channel (read): {e}"))?;
        match status {
            REPLY_OK => Ok(()),
            REPLY_ERR => {
                let len = read_u64(&mut self.ctl)?.min(4096) as usize;
                let mut text = vec![0u8; len];
                self.ctl.read_exact(&mut text)?;
                Err(format!("{PEER_PREFIX}{}", String::from_utf8_lossy(&text)).into())
            }
            other => Err(format!("control channel: bad reply {other}").into()),
        }
    }

    /// Turns an error seen by the parent into one that also says what the
    /// child reported (its error is usually the root cause).
    fn fail(&mut self, e: BoxError) -> BoxError {
        // A failing child writes its error before it exits; a child that is
        // fine is still waiting for the next message and says nothing.
        let _ = self.ctl.set_read_timeout(Some(Duration::from_millis(200)));
        match self.reply() {
            Err(peer) if peer.to_string().starts_with(PEER_PREFIX) => {
                format!("{peer}; here: {e}").into()
            }
            _ => e,
        }
    }

    /// `n` round trips: the parent sends message `s`, the peer answers
    /// with `s + 1`. Pushes each round trip's duration in nanoseconds to
    /// `samples` if given. Returns the total time.
    ///
    /// # Errors
    /// Transport errors and failed verification, on either side.
    pub fn round_trips(&mut self, n: u64, samples: Option<&mut Vec<u64>>) -> Result<Duration> {
        let what = format!("{}, round trips", self.what);
        let watchdog = Watchdog::arm_killing(self.timeout, &what, &[self.child.pid()])?;
        let r = self.round_trips_unguarded(n, samples);
        self.guarded(&watchdog, what, r)
    }

    fn round_trips_unguarded(
        &mut self,
        n: u64,
        samples: Option<&mut Vec<u64>>,
    ) -> Result<Duration> {
        let seq0 = self.seq;
        self.seq += 2 * n;
        self.command(OP_ECHO, n, seq0)?;
        let size = self.size;
        let r = with_link!(&mut self.link, l => rtt_loop(l, size, seq0, n, samples));
        match r {
            Ok(t) => {
                self.reply()?;
                Ok(t)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The result of a transfer `watchdog` guarded: [`Hung`] if it fired
    /// (the peer was killed: the session is of no further use), else `r`.
    fn guarded<T>(&mut self, watchdog: &Watchdog, what: String, r: Result<T>) -> Result<T> {
        if watchdog.fired() {
            // Reap the peer now: the row's processes are gone when the
            // run goes on.
            self.child.kill();
            return Err(Hung { what }.into());
        }
        r
    }

    /// Streams `n` messages one way; the time runs until the peer has
    /// received and verified the last one.
    ///
    /// # Errors
    /// Transport errors and failed verification, on either side.
    pub fn stream(&mut self, n: u64) -> Result<Duration> {
        let what = format!("{}, stream", self.what);
        let watchdog = Watchdog::arm_killing(self.timeout, &what, &[self.child.pid()])?;
        let r = self.stream_unguarded(n);
        self.guarded(&watchdog, what, r)
    }

    fn stream_unguarded(&mut self, n: u64) -> Result<Duration> {
        let seq0 = self.seq;
        self.seq += n;
        self.command(OP_SINK, n, seq0)?;
        let size = self.size;
        let start = Instant::now();
        let r = with_link!(&mut self.link, l => l.send_stream(seq0, n, size));
        match r {
            Ok(()) => {
                self.reply()?;
                Ok(start.elapsed())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// `n` round trips with `think` of sleep before each request, so that
    /// the peer is asleep when the request arrives (a client that does
    /// something between requests). Pushes each round trip in nanoseconds
    /// to `samples`. Returns the CPU time this process spent in the loop
    /// (sleep excluded).
    ///
    /// # Errors
    /// Transport errors and failed verification, on either side.
    pub fn paced_round_trips(
        &mut self,
        n: u64,
        think: Duration,
        samples: &mut Vec<u64>,
    ) -> Result<Duration> {
        let what = format!("{}, paced", self.what);
        let watchdog = Watchdog::arm_killing(
            self.timeout + think.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
            &what,
            &[self.child.pid()],
        )?;
        let r = self.paced_unguarded(n, think, samples);
        self.guarded(&watchdog, what, r)
    }

    fn paced_unguarded(
        &mut self,
        n: u64,
        think: Duration,
        samples: &mut Vec<u64>,
    ) -> Result<Duration> {
        let seq0 = self.seq;
        self.seq += 2 * n;
        self.command(OP_PACED, n, seq0)?;
        let size = self.size;
        let cpu0 = process_cpu_ns()?;
        let r = with_link!(&mut self.link, l => (0..n).try_for_each(|i| {
            std::thread::sleep(think);
            let t = Instant::now();
            let s = seq0 + 2 * i;
            l.send(s, size)?;
            l.recv(s + 1, size)?;
            samples.push(t.elapsed().as_nanos() as u64);
            Ok::<(), BoxError>(())
        }));
        let cpu = Duration::from_nanos(process_cpu_ns()?.saturating_sub(cpu0));
        match r {
            Ok(()) => {
                self.reply()?;
                Ok(cpu)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The peer process's CPU time so far.
    ///
    /// # Errors
    /// If the control channel fails.
    pub fn peer_cpu(&mut self) -> Result<Duration> {
        self.command(OP_CPU, 0, 0)?;
        self.reply()?;
        let ns = read_u64(&mut self.ctl).map_err(|e| format!("control channel (read): {e}"))?;
        Ok(Duration::from_nanos(ns))
    }

    /// Tells the peer to exit and checks that it did, cleanly.
    ///
    /// # Errors
    /// If the peer does not exit with status 0 in time.
    pub fn finish(mut self) -> Result<()> {
        self.command(OP_QUIT, 0, 0)?;
        let Session { child, timeout, .. } = self;
        child.wait(timeout)
    }
}

/// CPU time of this process (all its threads), in nanoseconds.
fn process_cpu_ns() -> Result<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map_err(|e| format!("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {e}"))?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// The measured loop of [`Session::round_trips`].
fn rtt_loop<L: Link>(
    l: &mut L,
    size: usize,
    seq0: u64,
    n: u64,
    mut samples: Option<&mut Vec<u64>>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut prev = start;
    for i in 0..n {
        let s = seq0 + 2 * i;
        l.send(s, size)?;
        l.recv(s + 1, size)?;
        if let Some(v) = samples.as_deref_mut() {
            let now = Instant::now();
            v.push((now - prev).as_nanos() as u64);
            prev = now;
        }
    }
    Ok(start.elapsed())
}

/// Accepts the child's connection, giving up if the child dies or the
/// timeout passes (`Listener::accept` alone would wait forever).
pub(crate) fn accept_within(
    listener: &Listener,
    child: &mut Child,
    timeout: Duration,
) -> Result<shmsock::Connection> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, 20u16).map_err(|e| format!("poll: {e}"))?;
        if ready > 0 {
            return Ok(listener.accept().map_err(|e| format!("accept: {e}"))?);
        }
        if let Some(st) = child.try_wait()? {
            return Err(format!("child exited before connecting: {st:?}").into());
        }
        if Instant::now() >= deadline {
            return Err(format!("child did not connect within {timeout:?}").into());
        }
    }
}

/// Test hook (not an option for users): the environment variable naming,
/// comma-separated, what hangs, for the tests of the watchdog
/// (`bench/tests/hung_row.rs`). An item is a transport's [`Transport::id`]
/// (main table: its session's peer stops serving at its first one-way
/// stream), or a scenario and an id: `paced:ID` (the paced session's peer
/// stops at its first paced round trip), `spaced:ID` (the spaced rows'
/// server stops at its first request), `idle:ID` (the idle row's client
/// never receives), `fanin:ID` (the fan-in clients never send); the hung
/// side sleeps until killed. The fan-out scenario's ids are its own
/// (`FanTransport::id`).
pub const TEST_HANG_ENV: &str = "SHMSOCK_BENCH_TEST_HANG";

/// Whether [`TEST_HANG_ENV`] lists `item` (`ID` or `SCENARIO:ID`).
pub fn test_hook(item: &str) -> bool {
    std::env::var(TEST_HANG_ENV).is_ok_and(|v| v.split(',').any(|i| i.trim() == item))
}

/// How a session's peer hangs for the test hook.
#[derive(Debug, Clone, Copy)]
struct HangAt {
    /// At its first one-way stream.
    stream: bool,
    /// At its first paced round trip.
    paced: bool,
}

/// Whether [`TEST_HANG_ENV`] asks `transport`'s peer to hang, and where.
fn test_hang(transport: Transport) -> HangAt {
    HangAt {
        stream: test_hook(transport.id()),
        paced: test_hook(&format!("paced:{}", transport.id())),
    }
}

/// The child: builds its end of the link, then serves commands.
fn child_main(
    transport: Transport,
    size: usize,
    end: ChildEnd,
    ctl: UnixStream,
    timeout: Duration,
    hang: HangAt,
) -> Result<()> {
    match (transport, end) {
        (Transport::Shm(_, api), ChildEnd::Shm { name, builder }) => {
            let conn = builder
                .connect(&name)
                .map_err(|e| format!("connect {name}: {e}"))?;
            match api {
                Api::Copy => serve(ShmCopy::new(conn, size), size, ctl, hang),
                Api::ZeroCopy => serve(ShmZeroCopy::new(conn, size), size, ctl, hang),
                Api::Batch => serve(ShmBatch::new(conn, size), size, ctl, hang),
                Api::Streamed => serve(ShmStreamed::new(conn, size), size, ctl, hang),
            }
        }
        (Transport::Stream, ChildEnd::Socket(s)) => {
            serve(Framed::new(s.try_clone()?, s, size), size, ctl, hang)
        }
        (Transport::TokioShm, ChildEnd::Shm { name, builder }) => {
            let conn = builder
                .connect(&name)
                .map_err(|e| format!("connect {name}: {e}"))?;
            serve(TokioShm::new(conn, size)?, size, ctl, hang)
        }
        (Transport::TokioStream, ChildEnd::Socket(s)) => {
            serve(TokioFramed::new(s, size)?, size, ctl, hang)
        }
        (Transport::SeqPacket, ChildEnd::Socket(s)) => {
            serve(SeqPacket::new(s, size), size, ctl, hang)
        }
        (Transport::Pipe, ChildEnd::Pipe { rx, tx }) => {
            serve(Framed::new(rx, tx, size), size, ctl, hang)
        }
        (Transport::Iceoryx2(wait, api), ChildEnd::Iox(names)) => serve(
            IoxLink::connect(&names, iox::Side::Child, size, wait, api, timeout)?,
            size,
            ctl,
            hang,
        ),
        _ => Err("internal error: transport and endpoint disagree".into()),
    }
}

/// The child's command loop; `hang`: where to stop ([`TEST_HANG_ENV`]).
fn serve<L: Link>(mut link: L, size: usize, mut ctl: UnixStream, hang: HangAt) -> Result<()> {
    loop {
        let mut b = [0u8; 24];
        ctl.read_exact(&mut b)
            .map_err(|e| format!("control channel (read): {e}"))?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        let (op, n, seq0) = (word(0), word(1), word(2));
        let r = match op {
            OP_SINK | OP_PACED
                if (op == OP_SINK && hang.stream) || (op == OP_PACED && hang.paced) =>
            {
                loop {
                    // Until the parent's watchdog kills this process.
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            OP_ECHO | OP_PACED => (0..n).try_for_each(|i| {
                let s = seq0 + 2 * i;
                link.recv(s, size)?;
                link.send(s + 1, size)
            }),
            OP_SINK => link.recv_stream(seq0, n, size),
            OP_QUIT => return Ok(()),
            OP_CPU => {
                let mut msg = REPLY_OK.to_le_bytes().to_vec();
                msg.extend_from_slice(&process_cpu_ns()?.to_le_bytes());
                ctl.write_all(&msg)?;
                continue;
            }
            other => Err(format!("unknown command {other}").into()),
        };
        match r {
            Ok(()) => ctl.write_all(&REPLY_OK.to_le_bytes())?,
            Err(e) => {
                let text = e.to_string();
                let mut msg = Vec::with_capacity(16 + text.len());
                msg.extend_from_slice(&REPLY_ERR.to_le_bytes());
                msg.extend_from_slice(&(text.len() as u64).to_le_bytes());
                msg.extend_from_slice(text.as_bytes());
                // Best effort: the parent may be gone; the exit status
                // reports the failure anyway.
                let _ = ctl.write_all(&msg);
                return Err(e);
            }
        }
    }
}
