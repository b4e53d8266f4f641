//! Both client roles: a [`Provider`] registers names and receives one
//! connected socket per consumer that looks them up; [`lookup`] gives a
//! consumer one connected socket to the provider of a name.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::io::Errno;
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
                    if reply_tag(&m) != tag {
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
/// Re-registering never blocks a call past its own bound: the connection
/// is made without waiting (a full backlog counts as a failed attempt)
/// and the registration requests are sent and their replies read a step
/// at a time, in whichever calls come next. A [`try_accept`](Provider::try_accept)
/// returns at once even while a broker that accepted the connection has
/// not answered yet; a broker that does not answer within 5 s counts as a
/// failed attempt (then backoff).
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
    link: Link,
    stash: VecDeque<Introduction>,
    backoff: Duration,
    last_error: Option<Error>,
}

/// The provider's connection to its broker.
#[derive(Debug)]
enum Link {
    /// Connected, every name registered.
    Up(BrokerConn),
    /// Not connected; the next attempt is due at the instant.
    Down(Instant),
    /// Connected again; re-registering the names one request at a time,
    /// without ever waiting for the broker (see [`Provider::step_rejoin`]).
    Rejoining(Rejoin),
}

/// A re-registration in progress.
#[derive(Debug)]
struct Rejoin {
    conn: BrokerConn,
    /// Names registered so far (`names[..done]`).
    done: usize,
    /// The tag of the `Register` sent for `names[done]`, if sent.
    sent: Option<u32>,
    /// The whole attempt fails if not finished by then.
    deadline: Instant,
}

/// Where a step of re-registration stands.
enum Rejoined {
    /// Every name is registered again.
    Up,
    /// Waiting for the broker (its reply, or the next attempt).
    Waiting,
}

impl Provider {
    /// Connects to the broker at `broker` and registers `name`, waiting up
    /// to 5 s in all ([`Provider::register_timeout`] to choose).
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
        Self::register_timeout(broker, name, policy, REQUEST_TIMEOUT)
    }

    /// As [`register`](Provider::register), giving up after `timeout`
    /// (connecting, also to a broker whose accept backlog is full, and the
    /// registration share it). Any duration works; `Duration::MAX` means
    /// no limit.
    ///
    /// # Errors
    /// As [`Provider::register`]; [`Error::Timeout`] after `timeout`.
    pub fn register_timeout(
        broker: impl AsRef<Path>,
        name: &str,
        policy: LookupPolicy,
        timeout: Duration,
    ) -> Result<Provider> {
        let deadline = sock::deadline_after(timeout);
        let mut p = Provider::connect_until(broker.as_ref(), deadline)?;
        p.add_until(name, policy, deadline)?;
        Ok(p)
    }

    /// Connects to the broker without registering a name yet, waiting up
    /// to 5 s for room in its accept backlog ([`Provider::connect_timeout`]
    /// to choose).
    ///
    /// # Errors
    /// [`Error::Io`] if the broker cannot be reached; [`Error::Timeout`].
    pub fn connect(broker: impl AsRef<Path>) -> Result<Provider> {
        Self::connect_timeout(broker, REQUEST_TIMEOUT)
    }

    /// As [`connect`](Provider::connect), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Provider::connect`].
    pub fn connect_timeout(broker: impl AsRef<Path>, timeout: Duration) -> Result<Provider> {
        Self::connect_until(broker.as_ref(), sock::deadline_after(timeout))
    }

    fn connect_until(broker: &Path, deadline: Option<Instant>) -> Result<Provider> {
        let broker = broker.to_owned();
        let conn = BrokerConn::connect(&broker, deadline)?;
        Ok(Provider {
            broker,
            names: Vec::new(),
            link: Link::Up(conn),
            stash: VecDeque::new(),
            backoff: BACKOFF_MIN,
            last_error: None,
        })
    }

    /// Registers one more name over the same connection (waiting up to 5 s
    /// for the broker's answer; [`Provider::add_timeout`] to choose).
    ///
    /// # Errors
    /// As [`Provider::register`]; [`Error::Disconnected`] if the broker is
    /// gone or the provider is still re-registering with a restarted one
    /// (the name is not kept).
    pub fn add(&mut self, name: &str, policy: LookupPolicy) -> Result<()> {
        self.add_timeout(name, policy, REQUEST_TIMEOUT)
    }

    /// As [`add`](Provider::add), giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Provider::add`]; [`Error::Timeout`] after `timeout`.
    pub fn add_timeout(
        &mut self,
        name: &str,
        policy: LookupPolicy,
        timeout: Duration,
    ) -> Result<()> {
        self.add_until(name, policy, sock::deadline_after(timeout))
    }

    fn add_until(
        &mut self,
        name: &str,
        policy: LookupPolicy,
        deadline: Option<Instant>,
    ) -> Result<()> {
        let name = Name::new(name).map_err(Error::BadName)?;
        let Link::Up(conn) = &mut self.link else {
            return Err(Error::Disconnected);
        };
        let n = name.clone();
        let r = conn.request(
            |tag| BrokerMsg::Register {
                tag,
                name: n,
                policy,
            },
            None,
            deadline,
            &mut self.stash,
        );
        match r {
            Ok(m) => {
                refused(m)?;
                self.names.push((name, policy));
                Ok(())
            }
            Err(e) => {
                // Gone, timed out or lying: the connection's state is
                // unknown (a late reply would be taken for another
                // request's). Drop it; the next accept reconnects and
                // registers the names already held (not this one: the
                // broker drops it with the connection).
                self.link = Link::Down(Instant::now());
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

    /// As [`accept`](Provider::accept), giving up after `timeout` (a
    /// reconnection in progress does not extend it).
    ///
    /// # Errors
    /// As [`Provider::accept`]; [`Error::Timeout`].
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Introduction> {
        self.accept_until(sock::deadline_after(timeout))
    }

    /// The next consumer if one is waiting; never blocks. When a
    /// reconnection is due it takes one step of it without waiting
    /// (connect, send a registration, read a reply that is there).
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

    /// The socket to the broker, while connected (also while
    /// re-registering): readable when a consumer arrives or the broker
    /// answers, then call [`Provider::try_accept`]; for an event loop.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.link {
            Link::Up(c) => Some(c.sock.as_fd()),
            Link::Rejoining(r) => Some(r.conn.sock.as_fd()),
            Link::Down(_) => None,
        }
    }

    /// When an event loop should call [`Provider::try_accept`] even if
    /// [`fd`](Provider::fd) stays quiet: the next reconnection attempt, or
    /// the deadline of the one in progress. `None` while registered.
    pub fn next_attempt(&self) -> Option<Instant> {
        match &self.link {
            Link::Up(_) => None,
            Link::Down(at) => Some(*at),
            Link::Rejoining(r) => Some(r.deadline),
        }
    }

    /// Whether the provider is connected to a broker with all its names
    /// registered.
    pub fn is_registered(&self) -> bool {
        matches!(self.link, Link::Up(_))
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
            let Link::Up(conn) = &mut self.link else {
                // Never waits: each wait below is bounded by `deadline`.
                if let Rejoined::Up = self.step_rejoin() {
                    continue;
                }
                if !self.stash.is_empty() {
                    continue;
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| d <= now) {
                    return Err(Error::Timeout);
                }
                match &self.link {
                    Link::Down(at) => {
                        let wake = deadline.map_or(*at, |d| d.min(*at));
                        std::thread::sleep(wake.saturating_duration_since(now));
                    }
                    Link::Rejoining(r) => {
                        let wake = deadline.map_or(r.deadline, |d| d.min(r.deadline));
                        sock::wait(r.conn.sock.as_fd(), PollFlags::IN, Some(wake))?;
                    }
                    Link::Up(_) => {}
                }
                continue;
            };
            match conn.next(deadline) {
                Ok(Some(Incoming::Intro(i))) => return Ok(i),
                Ok(Some(Incoming::Reply(m))) => {
                    // No request is outstanding: a reply now is a lie.
                    self.link = Link::Down(Instant::now());
                    return Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte())));
                }
                Ok(None) => return Err(Error::Timeout),
                Err(Error::Disconnected) => {
                    // The broker died: reconnect soon (it may be restarting).
                    self.backoff = BACKOFF_MIN;
                    self.link = Link::Down(Instant::now() + BACKOFF_MIN);
                }
                Err(e) => {
                    self.link = Link::Down(Instant::now());
                    return Err(e);
                }
            }
        }
    }

    /// Takes re-registration as far as it goes without waiting: connects
    /// when an attempt is due, sends the next `Register`, reads the replies
    /// that are there. A failed attempt (refused, broken protocol, no
    /// answer by its deadline) is recorded in `last_error` and the next
    /// one scheduled with doubled backoff.
    fn step_rejoin(&mut self) -> Rejoined {
        match self.try_step_rejoin() {
            Ok(Rejoined::Up) => {
                self.backoff = BACKOFF_MIN;
                self.last_error = None;
                Rejoined::Up
            }
            Ok(Rejoined::Waiting) => Rejoined::Waiting,
            Err(e) => {
                self.last_error = Some(e);
                self.link = Link::Down(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Rejoined::Waiting
            }
        }
    }

    fn try_step_rejoin(&mut self) -> Result<Rejoined> {
        let now = Instant::now();
        if let Link::Down(at) = self.link {
            if now < at {
                return Ok(Rejoined::Waiting);
            }
            // A deadline of now: a full backlog fails the attempt at once.
            let conn = BrokerConn::connect(&self.broker, Some(now))?;
            self.link = Link::Rejoining(Rejoin {
                conn,
                done: 0,
                sent: None,
                deadline: now + REQUEST_TIMEOUT,
            });
        }
        let Link::Rejoining(r) = &mut self.link else {
            return Ok(Rejoined::Up);
        };
        loop {
            let Some((name, policy)) = self.names.get(r.done) else {
                let Link::Rejoining(r) = std::mem::replace(&mut self.link, Link::Down(now)) else {
                    return Ok(Rejoined::Waiting);
                };
                self.link = Link::Up(r.conn);
                return Ok(Rejoined::Up);
            };
            let tag = match r.sent {
                Some(tag) => tag,
                None => {
                    let tag = r.conn.next_tag;
                    let msg = BrokerMsg::Register {
                        tag,
                        name: name.clone(),
                        policy: *policy,
                    };
                    match sock::send(r.conn.sock.as_fd(), &msg.encode(), None) {
                        Ok(true) => {}
                        // The broker's queue is full: try again later.
                        Ok(false) if now < r.deadline => return Ok(Rejoined::Waiting),
                        Ok(false) => return Err(Error::Timeout),
                        Err(Errno::PIPE | Errno::CONNRESET) => return Err(Error::Disconnected),
                        Err(e) => return Err(Error::io("sendmsg", e)),
                    }
                    r.conn.next_tag = tag.wrapping_add(1).max(1);
                    r.sent = Some(tag);
                    tag
                }
            };
            // A past deadline: reads only what is already there.
            match r.conn.next(Some(now))? {
                Some(Incoming::Intro(i)) => {
                    // For a name already registered again. One per step:
                    // a broker that keeps sending them cannot hold the
                    // call (the caller takes this one first).
                    if self.stash.len() < MAX_STASH {
                        self.stash.push_back(i);
                    }
                    return Ok(Rejoined::Waiting);
                }
                Some(Incoming::Reply(m)) => {
                    if reply_tag(&m) != tag {
                        return Err(Error::Protocol(crate::wire::WireError::Kind(m.kind_byte())));
                    }
                    refused(m)?;
                    r.done += 1;
                    r.sent = None;
                }
                None if now < r.deadline => return Ok(Rejoined::Waiting),
                None => return Err(Error::Timeout),
            }
        }
    }
}

/// The tag a reply answers (0 for a message that is no reply).
fn reply_tag(m: &BrokerMsg) -> u32 {
    match m {
        BrokerMsg::Done { tag }
        | BrokerMsg::Introduced { tag, .. }
        | BrokerMsg::Refused { tag, .. } => *tag,
        _ => 0,
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
    lookup_name(broker.as_ref(), &name, sock::deadline_after(timeout))
}

/// [`lookup`] by `deadline` (`None`: no limit), for callers that bound a
/// lookup and the handshake after it by one deadline.
pub(crate) fn lookup_name(
    broker: &Path,
    name: &Name,
    deadline: Option<Instant>,
) -> Result<(OwnedFd, Peer)> {
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

    /// A bound for calls that must not wait for the broker: the bug took
    /// 5 s (the registration timeout); generous for a busy machine.
    const BOUND: Duration = Duration::from_millis(2500);

    /// Calls `f` until it says done (or 10 s), returning the longest call.
    fn longest_call(mut f: impl FnMut() -> bool) -> Duration {
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut longest = Duration::ZERO;
        loop {
            let t = Instant::now();
            let done = f();
            longest = longest.max(t.elapsed());
            if done {
                return longest;
            }
            assert!(Instant::now() < give_up, "the condition never came");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn reconnecting_to_a_hung_broker_never_blocks_try_accept() {
        // The broker dies; another one takes its socket, accepts the
        // provider's connection and never answers. try_accept used to
        // reconnect and wait for the registration reply for up to 5 s.
        use super::super::testing::{abstract_path, HungBroker, ThreadBroker};
        let path = abstract_path("hung");
        let broker = ThreadBroker::start(&path);
        let mut p = Provider::register(&path, "svc.hung", LookupPolicy::SameUid).unwrap();
        broker.stop();
        let hung = HungBroker::start(&path);
        let longest = longest_call(|| {
            assert!(p.try_accept().unwrap().is_none());
            hung.accepted() >= 1
        });
        // A few more calls while the registration is unanswered.
        for _ in 0..10 {
            let t = Instant::now();
            assert!(p.try_accept().unwrap().is_none());
            assert!(t.elapsed() < BOUND);
        }
        assert!(longest < BOUND, "try_accept took {longest:?}");
        assert!(!p.is_registered());
        assert!(p.fd().is_some(), "the socket to watch while re-registering");
        // accept_timeout keeps its bound too.
        let t = Instant::now();
        assert!(matches!(
            p.accept_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() < BOUND, "took {:?}", t.elapsed());

        // The hung broker goes away and a real one comes back: stepping
        // through try_accept alone registers the name again.
        hung.stop();
        let _broker = ThreadBroker::start(&path);
        let longest = longest_call(|| {
            assert!(p.try_accept().unwrap().is_none());
            p.is_registered()
        });
        assert!(longest < BOUND, "try_accept took {longest:?}");
        assert!(p.last_error().is_none());
        let (_sock, _peer) = lookup(&path, "svc.hung", Duration::from_secs(5)).unwrap();
        let intro = p.accept_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(intro.name().as_str(), "svc.hung");
    }

    #[test]
    fn a_broker_that_never_answers_fails_the_attempt_after_its_deadline() {
        // Not answered within REQUEST_TIMEOUT: the attempt fails (Timeout
        // in last_error) and the next one is scheduled with backoff,
        // while accept calls keep their own bounds.
        use super::super::testing::{abstract_path, HungBroker, ThreadBroker};
        let path = abstract_path("deadline");
        let broker = ThreadBroker::start(&path);
        let mut p = Provider::register(&path, "svc.deadline", LookupPolicy::SameUid).unwrap();
        broker.stop();
        let hung = HungBroker::start(&path);
        let give_up = Instant::now() + REQUEST_TIMEOUT * 3;
        while !matches!(p.last_error(), Some(Error::Timeout)) && Instant::now() < give_up {
            let t = Instant::now();
            assert!(matches!(
                p.accept_timeout(Duration::from_millis(200)),
                Err(Error::Timeout)
            ));
            assert!(t.elapsed() < BOUND, "took {:?}", t.elapsed());
        }
        assert!(matches!(p.last_error(), Some(Error::Timeout)));
        assert!(hung.accepted() >= 1);
        assert!(!p.is_registered());
    }
}
