//! Both client roles: a [`Provider`] registers names and receives one
//! connected socket per consumer that looks them up; [`lookup`] gives a
//! consumer one connected socket to the provider of a name.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use shmsock_transport::{Builder, Connection};

use super::sock::{self, Recv};
use crate::error::{Error, Result};
use crate::name::Name;
use crate::wire::{BrokerMsg, LookupPolicy, Peer};

/// How long a request to the broker may take by default.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most introductions held that the caller has not taken yet (they arrive
/// while a registration reply is awaited).
const MAX_STASH: usize = 64;

/// A consumer introduced by the broker: one end of a connected Unix
/// `SOCK_SEQPACKET` socket pair whose other end the consumer holds.
///
/// Run the shmsock handshake over it with [`Introduction::accept`] (the
/// consumer runs [`Builder::connect_socket`]), or use the socket for a
/// protocol of your own with [`Introduction::into_socket`].
#[derive(Debug)]
pub struct Introduction {
    sock: OwnedFd,
    consumer: Peer,
    name: Name,
}

impl Introduction {
    /// The consumer's credentials as the broker saw them (`SO_PEERCRED` of
    /// its broker connection). The socket's own `SO_PEERCRED` names the
    /// process that created the pair, the consumer, as the kernel recorded
    /// it: the transport's credentials policy checks that one.
    pub fn consumer(&self) -> Peer {
        self.consumer
    }

    /// The name the consumer looked up.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The connected socket (blocking, `CLOEXEC`).
    pub fn into_socket(self) -> OwnedFd {
        self.sock
    }

    /// Runs the server side of the shmsock handshake over the socket.
    ///
    /// # Errors
    /// As [`Builder::accept_socket`].
    pub fn accept(self, opts: &Builder) -> Result<Connection> {
        Ok(opts.accept_socket(self.sock)?)
    }
}

/// One connection to the broker: requests with tags, replies matched to
/// them; introductions that arrive meanwhile are kept for the caller.
#[derive(Debug)]
struct BrokerConn {
    sock: OwnedFd,
    next_tag: u32,
}

impl BrokerConn {
    fn connect(path: &Path, deadline: Option<Instant>) -> Result<BrokerConn> {
        Ok(BrokerConn {
            sock: sock::connect(path, deadline)?,
            next_tag: 1,
        })
    }

    /// Sends `msg` (with `fd`) and waits for the reply with its tag.
    fn request(
        &mut self,
        make: impl FnOnce(u32) -> BrokerMsg,
        fd: Option<OwnedFd>,
        deadline: Option<Instant>,
        stash: &mut VecDeque<Introduction>,
    ) -> Result<BrokerMsg> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let msg = make(tag);
        sock::send_until(
            self.sock.as_fd(),
            &msg.encode(),
            fd.as_ref().map(|f| f.as_fd()),
            deadline,
        )?;
        // Our copy of the fd is closed now: the broker holds its own.
        drop(fd);
        loop {
            match self.next(deadline)? {
                Some(Incoming::Intro(i)) => {
                    if stash.len() < MAX_STASH {
                        stash.push_back(i);
                    }
                    // A broker that keeps sending introductions must not
                    // hold the call past its deadline.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(Error::Timeout);
                    }
                }
                Some(Incoming::Reply(m)) => {
                    let t = match &m {
                        BrokerMsg::Done { tag }
                        | BrokerMsg::Introduced { tag, .. }
                        | BrokerMsg::Refused { tag, .. } => *tag,
                        _ => 0,
                    };
                    if t != tag {
                        return Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte())));
                    }
                    return Ok(m);
                }
                None => return Err(Error::Timeout),
            }
        }
    }

    /// The next message from the broker, waiting until `deadline`
    /// (`Ok(None)` on timeout).
    fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Incoming>> {
        loop {
            let dg = match sock::recv(self.sock.as_fd()).map_err(|e| Error::io("recvmsg", e))? {
                Recv::Msg(dg) => dg,
                Recv::Eof => return Err(Error::Disconnected),
                Recv::Empty => {
                    if !sock::wait(self.sock.as_fd(), PollFlags::IN, deadline)? {
                        return Ok(None);
                    }
                    continue;
                }
            };
            if dg.truncated {
                return Err(Error::Protocol(crate::wire::WireError::Oversized));
            }
            let m = BrokerMsg::decode(&dg.bytes)?;
            if m.fds() != dg.fds.len() {
                return Err(Error::Protocol(crate::wire::WireError::FdCount {
                    kind: m.kind_byte(),
                    expected: m.fds(),
                    got: dg.fds.len(),
                }));
            }
            let mut fds = dg.fds;
            return Ok(Some(match (m, fds.pop()) {
                (BrokerMsg::Incoming { consumer, name }, Some(fd)) => {
                    // The broker checked this; a lying broker gets its fd
                    // closed and the message skipped.
                    if !sock::is_seqpacket(&fd) {
                        // Bounded by the deadline like the wait above.
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Ok(None);
                        }
                        continue;
                    }
                    Incoming::Intro(Introduction {
                        sock: fd,
                        consumer,
                        name,
                    })
                }
                (m, _) if !m.is_request() => Incoming::Reply(m),
                (m, _) => return Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte()))),
            }));
        }
    }
}

enum Incoming {
    Intro(Introduction),
    Reply(BrokerMsg),
}

fn refused(m: BrokerMsg) -> Result<()> {
    match m {
        BrokerMsg::Done { .. } => Ok(()),
        BrokerMsg::Refused { code, .. } => Err(Error::Refused(code)),
        m => Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte()))),
    }
}

/// The provider side: registers names with a broker and yields one
/// connected socket per consumer that looks one of them up.
///
/// If the broker goes away, the provider notices (EOF on its registration
/// connection), reconnects with exponential backoff (10 ms up to 1 s) and
/// registers all its names again, inside [`accept`](Provider::accept) and
/// its variants. Connections already made stay up: they are direct
/// between the two processes.
///
/// # Examples
/// ```no_run
/// use shmsock_services::broker::Provider;
/// use shmsock_services::LookupPolicy;
/// use shmsock_transport::Builder;
/// # fn main() -> Result<(), shmsock_services::Error> {
/// let mut provider = Provider::register("/tmp/shmsock-broker.sock", "echo", LookupPolicy::SameUid)?;
/// loop {
///     let mut conn = provider.accept()?.accept(&Builder::new())?;
///     std::thread::spawn(move || -> Result<(), shmsock_transport::Error> {
///         loop {
///             let m = conn.recv()?.to_vec();
///             conn.send(&m)?;
///         }
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Provider {
    broker: PathBuf,
    names: Vec<(Name, LookupPolicy)>,
    conn: Option<BrokerConn>,
    stash: VecDeque<Introduction>,
    backoff: Duration,
    retry_at: Instant,
    last_error: Option<Error>,
}

impl Provider {
    /// Connects to the broker at `broker` and registers `name`.
    ///
    /// # Errors
    /// [`Error::BadName`]; [`Error::Io`] if the broker cannot be reached;
    /// [`Error::Refused`] ([`Refusal::NameTaken`](crate::wire::Refusal::NameTaken), [`Refusal::Reserved`](crate::wire::Refusal::Reserved),
    /// ...); [`Error::Timeout`] if the broker does not answer in 5 s.
    pub fn register(
        broker: impl AsRef<Path>,
        name: &str,
        policy: LookupPolicy,
    ) -> Result<Provider> {
        let mut p = Provider::connect(broker)?;
        p.add(name, policy)?;
        Ok(p)
    }

    /// Connects to the broker without registering a name yet.
    ///
    /// # Errors
    /// [`Error::Io`] if the broker cannot be reached.
    pub fn connect(broker: impl AsRef<Path>) -> Result<Provider> {
        let broker = broker.as_ref().to_owned();
        let conn = BrokerConn::connect(&broker, sock::deadline_after(REQUEST_TIMEOUT))?;
        Ok(Provider {
            broker,
            names: Vec::new(),
            conn: Some(conn),
            stash: VecDeque::new(),
            backoff: BACKOFF_MIN,
            retry_at: Instant::now(),
            last_error: None,
        })
    }

    /// Registers one more name over the same connection.
    ///
    /// # Errors
    /// As [`Provider::register`]; [`Error::Disconnected`] if the broker is
    /// gone (the name is not kept).
    pub fn add(&mut self, name: &str, policy: LookupPolicy) -> Result<()> {
        let name = Name::new(name).map_err(Error::BadName)?;
        let conn = self.conn.as_mut().ok_or(Error::Disconnected)?;
        let n = name.clone();
        let r = conn.request(
            |tag| BrokerMsg::Register {
                tag,
                name: n,
                policy,
            },
            None,
            sock::deadline_after(REQUEST_TIMEOUT),
            &mut self.stash,
        );
        match r {
            Ok(m) => {
                refused(m)?;
                self.names.push((name, policy));
                Ok(())
            }
            Err(e) => {
                if e.is_disconnected() {
                    self.conn = None;
                }
                Err(e)
            }
        }
    }

    /// Waits for the next consumer, reconnecting to the broker as needed.
    ///
    /// # Errors
    /// [`Error::Protocol`] if the broker broke the protocol (the provider
    /// reconnects on the next call); [`Error::Io`] for a local failure.
    pub fn accept(&mut self) -> Result<Introduction> {
        self.accept_until(None)
    }

    /// As [`accept`](Provider::accept), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Provider::accept`]; [`Error::Timeout`].
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Introduction> {
        self.accept_until(sock::deadline_after(timeout))
    }

    /// The next consumer if one is waiting; never blocks (but may reconnect
    /// to the broker when a retry is due).
    ///
    /// # Errors
    /// As [`Provider::accept`].
    pub fn try_accept(&mut self) -> Result<Option<Introduction>> {
        match self.accept_until(Some(Instant::now())) {
            Ok(i) => Ok(Some(i)),
            Err(Error::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The socket to the broker, while connected: readable when a consumer
    /// arrives (then call [`Provider::try_accept`]), for an event loop.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.conn.as_ref().map(|c| c.sock.as_fd())
    }

    /// Whether the provider is connected to a broker with all its names
    /// registered.
    pub fn is_registered(&self) -> bool {
        self.conn.is_some()
    }

    /// Why the last reconnection attempt failed, if it did.
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }

    fn accept_until(&mut self, deadline: Option<Instant>) -> Result<Introduction> {
        loop {
            if let Some(i) = self.stash.pop_front() {
                return Ok(i);
            }
            let Some(conn) = self.conn.as_mut() else {
                let now = Instant::now();
                if now >= self.retry_at {
                    self.reconnect();
                    if self.conn.is_some() {
                        continue;
                    }
                }
                let wake = deadline.map_or(self.retry_at, |d| d.min(self.retry_at));
                if deadline.is_some_and(|d| d <= now) {
                    return Err(Error::Timeout);
                }
                std::thread::sleep(wake.saturating_duration_since(now));
                continue;
            };
            match conn.next(deadline) {
                Ok(Some(Incoming::Intro(i))) => return Ok(i),
                Ok(Some(Incoming::Reply(m))) => {
                    // No request is outstanding: a reply now is a lie.
                    self.conn = None;
                    return Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte())));
                }
                Ok(None) => return Err(Error::Timeout),
                Err(Error::Disconnected) => {
                    // The broker died: reconnect soon (it may be restarting).
                    self.conn = None;
                    self.backoff = BACKOFF_MIN;
                    self.retry_at = Instant::now() + BACKOFF_MIN;
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }

    /// One attempt: connect and register every name. On failure, the next
    /// attempt is scheduled with doubled backoff.
    fn reconnect(&mut self) {
        match self.try_reconnect() {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff = BACKOFF_MIN;
                self.last_error = None;
            }
            Err(e) => {
                self.last_error = Some(e);
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    fn try_reconnect(&mut self) -> Result<BrokerConn> {
        let deadline = sock::deadline_after(REQUEST_TIMEOUT);
        let mut conn = BrokerConn::connect(&self.broker, deadline)?;
        for (name, policy) in &self.names {
            let n = name.clone();
            let p = *policy;
            let m = conn.request(
                |tag| BrokerMsg::Register {
                    tag,
                    name: n,
                    policy: p,
                },
                None,
                deadline,
                &mut self.stash,
            )?;
            refused(m)?;
        }
        Ok(conn)
    }
}

/// Looks `name` up at the broker on `broker` and returns one end of a
/// connected Unix `SOCK_SEQPACKET` socket pair whose other end the broker
/// handed to the provider, with the provider's credentials as the broker
/// saw them. No data passes through the broker afterwards.
///
/// Run the shmsock handshake over it with [`Builder::connect_socket`] (or
/// use [`connect`](crate::connect), which does both).
///
/// # Errors
/// [`Error::BadName`]; [`Error::Io`] if the broker cannot be reached;
/// [`Error::Refused`] ([`Refusal::NotFound`](crate::wire::Refusal::NotFound), [`Refusal::Denied`](crate::wire::Refusal::Denied),
/// [`Refusal::ProviderBusy`](crate::wire::Refusal::ProviderBusy)); [`Error::Timeout`].
pub fn lookup(broker: impl AsRef<Path>, name: &str, timeout: Duration) -> Result<(OwnedFd, Peer)> {
    let name = Name::new(name).map_err(Error::BadName)?;
    lookup_name(broker.as_ref(), &name, timeout)
}

pub(crate) fn lookup_name(
    broker: &Path,
    name: &Name,
    timeout: Duration,
) -> Result<(OwnedFd, Peer)> {
    let deadline = sock::deadline_after(timeout);
    let mut conn = BrokerConn::connect(broker, deadline)?;
    let (ours, theirs) = sock::pair()?;
    let mut stash = VecDeque::new();
    let n = name.clone();
    let m = conn.request(
        |tag| BrokerMsg::Lookup { tag, name: n },
        Some(theirs),
        deadline,
        &mut stash,
    )?;
    match m {
        BrokerMsg::Introduced { provider, .. } => Ok((ours, provider)),
        BrokerMsg::Refused { code, .. } => Err(Error::Refused(code)),
        m => Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_introductions_do_not_outlive_the_deadline() {
        // A lying broker that keeps sending introductions whose fd is not a
        // seqpacket socket: each is skipped. The loop used to look at the
        // deadline only once the socket was empty, so a broker that kept it
        // fed held the call past its deadline. With the deadline passed and
        // ten such messages queued, `next` now gives up after the first.
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let (ours, broker) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (not_a_socket, _w) = rustix::pipe::pipe().unwrap();
        let msg = BrokerMsg::Incoming {
            consumer: Peer {
                pid: 1,
                uid: 0,
                gid: 0,
            },
            name: Name::new("svc.flood").unwrap(),
        }
        .encode();
        for _ in 0..10 {
            assert!(sock::send(broker.as_fd(), &msg, Some(not_a_socket.as_fd())).unwrap());
        }
        let mut conn = BrokerConn {
            sock: ours,
            next_tag: 1,
        };
        let past = Some(Instant::now());
        assert!(conn.next(past).unwrap().is_none());
        let mut left = 0;
        while let Recv::Msg(_) = sock::recv(conn.sock.as_fd()).unwrap() {
            left += 1;
        }
        assert_eq!(left, 9, "messages read past the deadline");
    }
}
