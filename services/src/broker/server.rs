//! The broker itself: one thread, one epoll loop over the listening socket
//! and every client socket, all non-blocking. No payload passes through
//! it: a lookup carries one end of a socket pair that the consumer made,
//! and the broker hands that fd to the provider (see `docs/services.md`).
//!
//! Every client is bounded: messages are at most [`MAX_BROKER_MSG`] bytes
//! (longer is a violation, and the client is dropped), each client holds a
//! bounded number of names and a bounded queue of messages to it (when its
//! queue is full the broker stops reading its requests, and a lookup
//! aimed at it is refused as busy), each uid a bounded number of
//! connections, and each wake-up reads a bounded number of messages per
//! client, so a flood from one client cannot starve the others.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use rustix::io::Errno;
use rustix::net::SocketFlags;

use super::sock::{self, Recv};
use crate::error::{Error, Result};
use crate::name::Name;
use crate::wire::{BrokerMsg, LookupPolicy, Peer, Refusal};
use shmsock_transport::socket_path::{self, SocketFile};

const LISTENER: u64 = u64::MAX;
/// Most clients accepted per wake-up of the listening socket.
const ACCEPT_BATCH: usize = 16;
/// Most messages read from one client per wake-up.
const READ_BATCH: usize = 16;
/// Most epoll events handled per step.
const EVENTS: usize = 64;

/// Options of a [`Broker`]: limits and the socket file's mode.
///
/// ```no_run
/// use shmsock_services::broker::BrokerOptions;
/// # fn main() -> Result<(), shmsock_services::Error> {
/// // A broker that every local user may reach; each name's policy decides
/// // who may look it up.
/// let mut broker = BrokerOptions::new().socket_mode(0o666).bind("/run/shmsock-broker.sock")?;
/// broker.run()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    socket_mode: u32,
    max_clients: usize,
    max_clients_per_uid: usize,
    max_names_per_client: usize,
    max_queued: usize,
    reservation: Duration,
    max_reservations: usize,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            socket_mode: 0o600,
            max_clients: 1024,
            max_clients_per_uid: 256,
            max_names_per_client: 16,
            max_queued: 32,
            reservation: Duration::from_secs(5),
            max_reservations: 4096,
        }
    }
}

impl BrokerOptions {
    /// Defaults: socket mode 0600, 1024 clients (256 per uid), 16 names per
    /// client, 32 queued messages per client, names reserved for 5 s to the
    /// uid of a provider that died.
    pub fn new() -> Self {
        Self::default()
    }

    /// Permission bits of the socket file (default `0o600`: only our uid).
    /// A broker shared by several users needs `0o666`; the per-name
    /// policies then decide who may look each name up.
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode;
        self
    }

    /// Most connected clients (default 1024). Further connections are
    /// closed at once.
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n;
        self
    }

    /// Most connected clients of one uid (default 256), so that one user
    /// cannot take every slot.
    pub fn max_clients_per_uid(mut self, n: usize) -> Self {
        self.max_clients_per_uid = n;
        self
    }

    /// Most names one client may hold (default 16).
    pub fn max_names_per_client(mut self, n: usize) -> Self {
        self.max_names_per_client = n;
        self
    }

    /// Most messages (each with at most one fd) queued to one client that
    /// it has not read yet (default 32). A provider with a full queue is
    /// busy: lookups of its names are refused until it reads.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }

    /// How long a dead provider's names stay reserved to its uid, so that
    /// another user cannot take them while it restarts (default 5 s).
    pub fn reservation(mut self, t: Duration) -> Self {
        self.reservation = t;
        self
    }

    /// Binds a broker at `path` with these options.
    ///
    /// # Errors
    /// As [`Broker::bind`].
    pub fn bind(self, path: impl AsRef<Path>) -> Result<Broker> {
        Broker::bind_with(path, self)
    }
}

/// A name held by a live provider.
#[derive(Debug)]
struct Registration {
    owner: u64,
    uid: u32,
    policy: LookupPolicy,
}

/// One connected client (provider, consumer or both).
#[derive(Debug)]
struct Client {
    sock: OwnedFd,
    peer: Peer,
    names: Vec<Name>,
    /// Messages to it not yet sent (its socket buffer was full).
    out: VecDeque<(Vec<u8>, Option<OwnedFd>)>,
    /// The epoll interest registered: (reading, writing).
    interest: (bool, bool),
}

/// The broker: maps service names to live providers and introduces
/// consumers to them.
///
/// # Examples
/// ```no_run
/// use shmsock_services::broker::Broker;
/// # fn main() -> Result<(), shmsock_services::Error> {
/// let mut broker = Broker::bind("/tmp/shmsock-broker.sock")?;
/// broker.run()?; // serves until an error
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Broker {
    listener: OwnedFd,
    epoll: OwnedFd,
    file: Option<SocketFile>,
    opts: BrokerOptions,
    clients: HashMap<u64, Client>,
    names: HashMap<Name, Registration>,
    /// Names of dead providers, reserved to their uid until the instant.
    reserved: HashMap<Name, (u32, Instant)>,
    next_id: u64,
}

impl Broker {
    /// Binds a broker with default options at `path` (`@name` for an
    /// abstract socket). A stale socket file (nobody listening) is
    /// replaced, so a restarted broker takes over its old path; a live one
    /// is refused.
    ///
    /// # Errors
    /// [`Error::Io`] with the path (`AddrInUse` if a live broker is there).
    pub fn bind(path: impl AsRef<Path>) -> Result<Broker> {
        Self::bind_with(path, BrokerOptions::new())
    }

    /// Binds with `opts`.
    ///
    /// # Errors
    /// As [`Broker::bind`]; [`Error::Config`] for a zero limit.
    pub fn bind_with(path: impl AsRef<Path>, opts: BrokerOptions) -> Result<Broker> {
        let path = path.as_ref();
        if opts.max_clients == 0
            || opts.max_clients_per_uid == 0
            || opts.max_names_per_client == 0
            || opts.max_queued == 0
        {
            return Err(Error::Config("broker limits must be at least 1"));
        }
        let addr = sock::socket_addr(path)?;
        let listener = sock::seqpacket(SocketFlags::NONBLOCK)?;
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| Error::io("epoll_create", e))?;
        epoll::add(
            &epoll,
            &listener,
            epoll::EventData::new_u64(LISTENER),
            epoll::EventFlags::IN,
        )
        .map_err(|e| Error::io("epoll_ctl", e))?;
        socket_path::claim(path, "bind (a live broker owns this socket)")?;
        rustix::net::bind(&listener, &addr).map_err(|e| Error::io_path("bind", path, e))?;
        // Before listen(): nobody can connect before the mode is set.
        let file = socket_path::own(path, opts.socket_mode)?;
        let broker = Broker {
            listener,
            epoll,
            file,
            opts,
            clients: HashMap::new(),
            names: HashMap::new(),
            reserved: HashMap::new(),
            next_id: 0,
        };
        rustix::net::listen(&broker.listener, 128)
            .map_err(|e| Error::io_path("listen", path, e))?;
        Ok(broker)
    }

    /// Serves clients until an error of the broker's own (a client's
    /// misbehaviour only drops that client).
    ///
    /// # Errors
    /// [`Error::Io`] if `epoll_wait` or `accept4` fails for a reason other
    /// than a client's (such as the fd table being full for long).
    pub fn run(&mut self) -> Result<()> {
        loop {
            self.step(None)?;
        }
    }

    /// Waits up to `timeout` (`None`: without limit) for something to do,
    /// and does a bounded amount of it. For event loops: the broker's
    /// [`as_fd`](AsFd::as_fd) is readable when there is work.
    ///
    /// # Errors
    /// As [`Broker::run`].
    pub fn step(&mut self, timeout: Option<Duration>) -> Result<()> {
        let mut events = Vec::with_capacity(EVENTS);
        // Beyond a day is "no limit" (epoll's timeout is an int of ms).
        let ts = timeout
            .filter(|t| *t < Duration::from_secs(86_400))
            .map(sock::timespec);
        match epoll::wait(&self.epoll, spare_capacity(&mut events), ts.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Error::io("epoll_wait", e)),
        }
        let mut dead = Vec::new();
        for ev in &events {
            let id = ev.data.u64();
            if id == LISTENER {
                self.accept_batch()?;
                continue;
            }
            let flags = ev.flags;
            if flags.contains(epoll::EventFlags::OUT) && !self.flush(id) {
                dead.push(id);
                continue;
            }
            // A client that hung up cannot read replies: drop it at once
            // (also when its full queue keeps us from reading to its EOF,
            // which would otherwise leave a level-triggered HUP firing).
            if flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR) {
                dead.push(id);
                continue;
            }
            if flags.contains(epoll::EventFlags::IN) && !self.read(id, &mut dead) {
                dead.push(id);
            }
        }
        for id in dead {
            self.remove(id);
        }
        Ok(())
    }

    /// Names held by live providers, in no order.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.names.keys()
    }

    /// Number of connected clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The socket file's path (`None` for an abstract socket).
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(SocketFile::path)
    }

    fn accept_batch(&mut self) -> Result<()> {
        for _ in 0..ACCEPT_BATCH {
            let s = match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(s) => s,
                Err(Errno::AGAIN) => return Ok(()),
                // The client went away before we took it, or a signal.
                Err(Errno::INTR | Errno::CONNABORTED | Errno::PROTO | Errno::PERM) => continue,
                // Out of fds or memory: ours, not the client's. The
                // connection stays in the backlog; try again next time.
                Err(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => return Ok(()),
                Err(e) => return Err(Error::io("accept4", e)),
            };
            let Ok(peer) = sock::peer(&s) else { continue };
            let same_uid = self
                .clients
                .values()
                .filter(|c| c.peer.uid == peer.uid)
                .count();
            if self.clients.len() >= self.opts.max_clients
                || same_uid >= self.opts.max_clients_per_uid
            {
                // Closed at once: the client sees EOF.
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if epoll::add(
                &self.epoll,
                &s,
                epoll::EventData::new_u64(id),
                epoll::EventFlags::IN,
            )
            .is_err()
            {
                continue;
            }
            self.clients.insert(
                id,
                Client {
                    sock: s,
                    peer,
                    names: Vec::new(),
                    out: VecDeque::new(),
                    interest: (true, false),
                },
            );
        }
        Ok(())
    }

    /// Reads up to [`READ_BATCH`] requests from client `id` (fewer if its
    /// reply queue fills). `false`: drop the client.
    fn read(&mut self, id: u64, dead: &mut Vec<u64>) -> bool {
        for _ in 0..READ_BATCH {
            let Some(c) = self.clients.get(&id) else {
                return true;
            };
            if c.out.len() >= self.opts.max_queued {
                break;
            }
            let dg = match sock::recv(c.sock.as_fd()) {
                Ok(Recv::Msg(dg)) => dg,
                Ok(Recv::Empty) => break,
                Ok(Recv::Eof) | Err(_) => return false,
            };
            if !self.handle(id, dg, dead) {
                return false;
            }
        }
        self.update_interest(id)
    }

    /// Handles one request. `false`: the client broke the protocol (it was
    /// told so, best effort) and must be dropped.
    fn handle(&mut self, id: u64, dg: sock::Datagram, dead: &mut Vec<u64>) -> bool {
        if dg.local_failure {
            // We could not take the fds it sent (our fd table is full): not
            // its fault. Tell it to retry; keep it.
            let tag = tag_of(&dg.bytes);
            let m = BrokerMsg::Refused {
                tag,
                code: Refusal::Resources,
            };
            return self.queue(id, m.encode(), None);
        }
        let decoded = if dg.truncated {
            None
        } else {
            BrokerMsg::decode(&dg.bytes).ok()
        };
        let msg = match decoded {
            Some(m) if m.is_request() && m.fds() == dg.fds.len() => m,
            _ => {
                // Garbage, oversized, a reply kind, or the wrong number of
                // fds (all closed when `dg` drops). Tell it why, best effort.
                let tag = tag_of(&dg.bytes);
                if let Some(c) = self.clients.get(&id) {
                    let m = BrokerMsg::Refused {
                        tag,
                        code: Refusal::Malformed,
                    };
                    let _ = sock::send(c.sock.as_fd(), &m.encode(), None);
                }
                return false;
            }
        };
        let Some(peer) = self.clients.get(&id).map(|c| c.peer) else {
            return false;
        };
        let reply = match msg {
            BrokerMsg::Register { tag, name, policy } => {
                match self.register(id, peer, name, policy) {
                    Ok(()) => BrokerMsg::Done { tag },
                    Err(code) => BrokerMsg::Refused { tag, code },
                }
            }
            BrokerMsg::Unregister { tag, name } => match self.names.get(&name) {
                Some(r) if r.owner == id => {
                    self.names.remove(&name);
                    if let Some(c) = self.clients.get_mut(&id) {
                        c.names.retain(|n| *n != name);
                    }
                    BrokerMsg::Done { tag }
                }
                _ => BrokerMsg::Refused {
                    tag,
                    code: Refusal::NotOwner,
                },
            },
            BrokerMsg::Lookup { tag, name } => {
                let mut fds = dg.fds;
                match fds.pop() {
                    Some(fd) => match self.lookup(peer, name, fd, dead) {
                        Ok(provider) => BrokerMsg::Introduced { tag, provider },
                        Err(code) => BrokerMsg::Refused { tag, code },
                    },
                    None => return false,
                }
            }
            // `is_request` was checked above.
            _ => return false,
        };
        self.queue(id, reply.encode(), None)
    }

    fn register(
        &mut self,
        id: u64,
        peer: Peer,
        name: Name,
        policy: LookupPolicy,
    ) -> Result<(), Refusal> {
        if name.reserved_uid().is_some_and(|u| u != peer.uid) {
            return Err(Refusal::Reserved);
        }
        if self.names.contains_key(&name) {
            return Err(Refusal::NameTaken);
        }
        let now = Instant::now();
        if let Some(&(uid, until)) = self.reserved.get(&name) {
            if until <= now {
                self.reserved.remove(&name);
            } else if uid != peer.uid {
                return Err(Refusal::Reserved);
            }
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return Err(Refusal::Malformed);
        };
        if c.names.len() >= self.opts.max_names_per_client {
            return Err(Refusal::TooManyNames);
        }
        c.names.push(name.clone());
        self.reserved.remove(&name);
        self.names.insert(
            name,
            Registration {
                owner: id,
                uid: peer.uid,
                policy,
            },
        );
        Ok(())
    }

    fn lookup(
        &mut self,
        consumer: Peer,
        name: Name,
        fd: OwnedFd,
        dead: &mut Vec<u64>,
    ) -> Result<Peer, Refusal> {
        let Some(reg) = self.names.get(&name) else {
            return Err(Refusal::NotFound);
        };
        if !reg.policy.allows(reg.uid, consumer.uid, consumer.gid) {
            return Err(Refusal::Denied);
        }
        if !sock::is_seqpacket(&fd) {
            return Err(Refusal::BadSocket);
        }
        let owner = reg.owner;
        let Some(p) = self.clients.get(&owner) else {
            return Err(Refusal::NotFound);
        };
        if p.out.len() >= self.opts.max_queued {
            return Err(Refusal::ProviderBusy);
        }
        let provider = p.peer;
        let m = BrokerMsg::Incoming { consumer, name };
        if !self.queue(owner, m.encode(), Some(fd)) {
            dead.push(owner);
            return Err(Refusal::NotFound);
        }
        Ok(provider)
    }

    /// Queues a message to client `id` and sends what its socket takes.
    /// `false`: the client is gone.
    fn queue(&mut self, id: u64, bytes: Vec<u8>, fd: Option<OwnedFd>) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        c.out.push_back((bytes, fd));
        self.flush(id)
    }

    /// Sends queued messages until the socket is full. `false`: the client
    /// is gone.
    fn flush(&mut self, id: u64) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return true;
        };
        while let Some((bytes, fd)) = c.out.front() {
            match sock::send(c.sock.as_fd(), bytes, fd.as_ref().map(|f| f.as_fd())) {
                Ok(true) => {
                    c.out.pop_front();
                }
                Ok(false) => break,
                // Our own limits (fds in flight for our uid, kernel
                // memory): not the client's fault. This one message is
                // lost (its fd closed; a consumer it introduced sees its
                // handshake fail); the client stays.
                Err(Errno::TOOMANYREFS | Errno::NOBUFS | Errno::NOMEM) => {
                    c.out.pop_front();
                }
                Err(_) => return false,
            }
        }
        self.update_interest(id)
    }

    /// Reads while the client's queue has room, writes while it is not
    /// empty. `false` if epoll refuses (the client is dropped).
    fn update_interest(&mut self, id: u64) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return true;
        };
        let want = (c.out.len() < self.opts.max_queued, !c.out.is_empty());
        if want == c.interest {
            return true;
        }
        let mut flags = epoll::EventFlags::empty();
        if want.0 {
            flags |= epoll::EventFlags::IN;
        }
        if want.1 {
            flags |= epoll::EventFlags::OUT;
        }
        c.interest = want;
        epoll::modify(&self.epoll, &c.sock, epoll::EventData::new_u64(id), flags).is_ok()
    }

    /// Drops a client: its names go (reserved to its uid for a while), its
    /// queued fds are closed.
    fn remove(&mut self, id: u64) {
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &c.sock);
        // An unrepresentable instant (a huge reservation): about 34 years.
        let now = Instant::now();
        let until = now
            .checked_add(self.opts.reservation)
            .or_else(|| now.checked_add(Duration::from_secs(1 << 30)));
        for n in c.names {
            self.names.remove(&n);
            if self.reserved.len() >= self.opts.max_reservations {
                let now = Instant::now();
                self.reserved.retain(|_, (_, t)| *t > now);
            }
            if let Some(until) = until.filter(|_| self.reserved.len() < self.opts.max_reservations)
            {
                self.reserved.insert(n, (c.peer.uid, until));
            }
        }
    }
}

/// The tag of a request, as far as it can be read (0 if not).
fn tag_of(b: &[u8]) -> u32 {
    b.get(4..8)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

impl AsFd for Broker {
    /// The broker's epoll fd: readable when [`Broker::step`] has work.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A broker that is stopped or hung with its accept backlog full
    /// still owns its socket file: the stale-socket probe of `bind` was a
    /// blocking connect, which slept until that broker would accept
    /// (never). Now the probe does not wait, and a full backlog counts as
    /// a live broker.
    #[test]
    fn binding_over_a_hung_broker_neither_blocks_nor_steals_its_socket() {
        use super::super::testing::{within, FullBacklog};
        let path = std::env::temp_dir().join(format!("shmsock-broker-full-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let full = FullBacklog::start(path.to_str().unwrap(), rustix::net::SocketType::SEQPACKET);
        let p = path.clone();
        let r = within(Duration::from_secs(60), move || {
            Broker::bind(&p).map(|_| ())
        });
        match r {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
            }
            r => panic!("{r:?}"),
        }
        assert!(path.exists(), "the live broker's socket file was removed");
        drop(full);
        let _ = std::fs::remove_file(&path);
    }

    /// Regression: a huge reservation (`Instant` overflow when a provider
    /// died) or step timeout (epoll's int of ms) must not panic or fail.
    #[test]
    fn huge_durations_do_not_panic() {
        let p = format!("@shmsock-broker-unit-{}", std::process::id());
        let mut b = BrokerOptions::new()
            .reservation(Duration::MAX)
            .bind(&p)
            .unwrap();
        let p2 = p.clone();
        // Registers, then dies: the broker reserves the name "forever".
        let t = std::thread::spawn(move || {
            drop(super::super::Provider::register(&p2, "x", LookupPolicy::Any).unwrap());
        });
        while !t.is_finished() || b.clients() > 0 {
            b.step(Some(Duration::from_millis(10))).unwrap();
        }
        t.join().unwrap();
        assert_eq!(b.names().count(), 0);
        assert_eq!(b.reserved.len(), 1);
        // A day-plus timeout: returns once there is work.
        let t = std::thread::spawn(move || super::super::lookup(&p, "x", Duration::from_secs(5)));
        // Accept, lookup, hang-up: each step returns once there is work.
        let mut seen = false;
        while !seen || b.clients() > 0 {
            b.step(Some(Duration::MAX)).unwrap();
            seen |= b.clients() > 0;
        }
        assert!(matches!(
            t.join().unwrap(),
            Err(Error::Refused(Refusal::NotFound))
        ));
    }
}
