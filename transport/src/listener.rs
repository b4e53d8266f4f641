//! The server side: a listening `SOCK_SEQPACKET` Unix socket, and the set of
//! handshakes in progress, driven concurrently through one epoll fd (the
//! listening socket, every pending client socket, and a timerfd armed at
//! the earliest handshake deadline).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::error::{Error, Result};
use crate::handshake::driver::{Accept, Pending, Step};
use crate::handshake::socket_addr;
use crate::options::Builder;
use crate::socket_path::{self, SocketFile};
use crate::Connection;

/// Most handshakes in progress at once. When a new client arrives and the
/// set is full, an expired handshake is dropped first, else the oldest:
/// a flood of connections cannot grow our memory or fd use.
const MAX_PENDING: usize = 64;
/// Most connections taken from the listening socket in one step, so that
/// a flood cannot keep one call busy.
const ACCEPT_BATCH: usize = 16;
/// epoll tokens of the listening socket and the deadline timer; pending
/// handshakes use their own ids, counted from 0.
const LISTENER: u64 = u64::MAX;
const TIMER: u64 = u64::MAX - 1;

/// A listening socket that accepts shmsock connections.
///
/// The socket file is created with mode 0600 (see
/// [`Builder::socket_mode`]) and removed when the listener drops (only if
/// it is still the file we created).
///
/// Handshakes run concurrently, without threads: each accepted client
/// waits in a bounded set of pending handshakes (each with its own
/// deadline) until its `Hello` arrives, so a slow or silent client never
/// holds up the others. [`accept`](Listener::accept) waits on the
/// listening socket and every pending client at once and returns the first
/// handshake that finishes; [`try_accept`](Listener::try_accept) never
/// waits, for event loops.
#[derive(Debug)]
pub struct Listener {
    /// The listening socket (non-blocking).
    sock: OwnedFd,
    /// The socket file we created (removed on drop if still ours).
    file: Option<SocketFile>,
    opts: Builder,
    /// Boxed: keeps `Listener` small for enums that hold one.
    hs: Box<Handshakes>,
}

/// The machinery that drives pending handshakes.
#[derive(Debug)]
struct Handshakes {
    /// Interest in the listening socket, `timer` and every pending client
    /// socket.
    epoll: OwnedFd,
    /// Armed at the earliest pending deadline, so that expiry makes the
    /// epoll fd readable too.
    timer: OwnedFd,
    nonblocking: AtomicBool,
    pending: Mutex<PendingSet>,
}

// A listener may be shared by accepting threads (the pending set is behind
// a mutex that no one holds while waiting).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Listener>();
};

/// The handshakes in progress, oldest first.
#[derive(Default)]
struct PendingSet {
    slots: Vec<(u64, Pending)>,
    next_id: u64,
    /// The deadline the timer is armed for.
    armed: Option<Instant>,
}

impl std::fmt::Debug for PendingSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSet")
            .field("pending", &self.slots.len())
            .finish()
    }
}

impl Listener {
    /// Binds with default options. `path` starting with `@` names a Linux
    /// abstract socket (no file).
    ///
    /// A stale socket file at `path` (nobody listening) is replaced; a live
    /// one is refused with [`Error::Io`] of kind `AddrInUse`; a file that is
    /// not a socket is never removed.
    ///
    /// # Errors
    /// [`Error::Io`] with the path.
    pub fn bind(path: impl AsRef<Path>) -> Result<Listener> {
        Self::bind_with(path, Builder::new())
    }

    /// Binds with `opts`.
    ///
    /// # Errors
    /// As [`Listener::bind`], plus [`Error::Config`].
    pub fn bind_with(path: impl AsRef<Path>, opts: Builder) -> Result<Listener> {
        let path = path.as_ref();
        opts.validate()?;
        let addr = socket_addr(path)?;
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::io("socket", e))?;
        // Created before the socket file exists, so that their failure
        // leaves nothing behind.
        let epoll =
            epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| Error::io("epoll_create", e))?;
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )
        .map_err(|e| Error::io("timerfd_create", e))?;
        for (fd, token) in [(sock.as_fd(), LISTENER), (timer.as_fd(), TIMER)] {
            epoll::add(
                &epoll,
                fd,
                epoll::EventData::new_u64(token),
                epoll::EventFlags::IN,
            )
            .map_err(|e| Error::io("epoll_ctl", e))?;
        }
        socket_path::claim(path, "bind (a live listener owns this socket)")?;
        rustix::net::bind(&sock, &addr).map_err(|e| Error::io_path("bind", path, e))?;
        // Before listen(): nobody can connect until then, so the mode is
        // in place before the first client can reach the socket.
        let file = socket_path::own(path, opts.socket_mode)?;
        let listener = Listener {
            sock,
            file,
            opts,
            hs: Box::new(Handshakes {
                epoll,
                timer,
                nonblocking: AtomicBool::new(false),
                pending: Mutex::new(PendingSet::default()),
            }),
        };
        rustix::net::listen(&listener.sock, 128).map_err(|e| Error::io_path("listen", path, e))?;
        // Never block in accept4: readiness comes from the epoll fd.
        let fl = rustix::fs::fcntl_getfl(&listener.sock).map_err(|e| Error::io("fcntl", e))?;
        rustix::fs::fcntl_setfl(&listener.sock, fl | rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| Error::io("fcntl", e))?;
        Ok(listener)
    }

    /// Waits until a client's handshake finishes and returns it. Meanwhile
    /// every client that connects is taken in and its handshake advanced
    /// as its messages arrive, each bounded by the handshake timeout, so one
    /// slow client does not delay the others. A client that fails its
    /// handshake yields an error; the listener stays usable.
    ///
    /// After [`set_nonblocking(true)`](Listener::set_nonblocking) this is
    /// [`try_accept`](Listener::try_accept), with "nothing finished yet"
    /// reported as [`Error::Io`] of kind `WouldBlock`.
    ///
    /// # Errors
    /// [`Error::Io`] (`accept4`, `epoll_wait`, or a local failure during a
    /// handshake such as `EMFILE`), and the handshake errors of
    /// [`Builder::connect`]: [`Error::Timeout`] for a client that did not
    /// finish within the handshake timeout, [`Error::Protocol`],
    /// [`Error::VersionMismatch`], [`Error::CredentialsRefused`].
    ///
    /// A client that hangs up before sending anything (such as another
    /// process probing whether this listener is alive) is skipped silently.
    pub fn accept(&self) -> Result<Connection> {
        if self.hs.nonblocking.load(Ordering::Relaxed) {
            return self.try_accept()?.ok_or_else(|| {
                Error::io(
                    "accept",
                    std::io::Error::from(std::io::ErrorKind::WouldBlock),
                )
            });
        }
        self.accept_until(None)
    }

    /// As [`accept`](Listener::accept) (blocking), but gives up after
    /// `timeout` with [`Error::Timeout`]. Handshakes still in progress stay
    /// pending for the next call. `Duration::MAX` waits without limit.
    ///
    /// # Errors
    /// As [`Listener::accept`]; [`Error::Timeout`] also when `timeout`
    /// passes.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection> {
        match crate::handshake::deadline_after(timeout) {
            None => self.accept_until(None),
            Some(d) => self.accept_until(Some(d)),
        }
    }

    /// Advances every handshake that can advance without waiting, and
    /// returns the first that finished: `Ok(None)` if none did. For event
    /// loops: call it when [`as_fd`](AsFd::as_fd) is readable, until it
    /// returns `Ok(None)`. Each call does a bounded amount of work.
    ///
    /// # Errors
    /// As [`Listener::accept`], one finished handshake per call.
    pub fn try_accept(&self) -> Result<Option<Connection>> {
        let mut set = self.hs.pending.lock().unwrap_or_else(|e| e.into_inner());
        let r = self.step(&mut set);
        let armed = self.rearm(&mut set);
        match (r, armed) {
            (Some(Ok(c)), _) => Ok(Some(c)),
            (Some(Err(e)), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(None),
        }
    }

    fn accept_until(&self, deadline: Option<Instant>) -> Result<Connection> {
        let mut events = Vec::with_capacity(1);
        loop {
            if let Some(c) = self.try_accept()? {
                return Ok(c);
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    Some(timespec(left))
                }
            };
            // Sleep until something is ready; the step above handles it.
            // (No lock is held here: another thread may accept meanwhile.)
            events.clear();
            match epoll::wait(
                &self.hs.epoll,
                spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => return Err(Error::io("epoll_wait", e)),
            }
        }
    }

    /// One bounded round of progress: an expired handshake, else whatever
    /// epoll reports ready, until one handshake finishes.
    fn step(&self, set: &mut PendingSet) -> Option<Result<Connection>> {
        let now = Instant::now();
        if let Some(i) = set
            .slots
            .iter()
            .position(|(_, p)| p.deadline().is_some_and(|d| d <= now))
        {
            let (_, p) = self.remove(set, i);
            return finished(Err(p.expire()));
        }
        let mut events = Vec::with_capacity(MAX_PENDING + 2);
        match epoll::wait(
            &self.hs.epoll,
            spare_capacity(&mut events),
            Some(&timespec(Duration::ZERO)),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Some(Err(Error::io("epoll_wait", e))),
        }
        for ev in &events {
            match ev.data.u64() {
                LISTENER => {
                    if let Some(r) = self.accept_batch(set) {
                        return Some(r);
                    }
                }
                // Expiry is handled at the top of the next step. Read the
                // timer so that it stops being readable; it is re-armed
                // after this step.
                TIMER => {
                    let _ = rustix::io::read(&self.hs.timer, &mut [0u8; 8]);
                    set.armed = None;
                }
                id => {
                    let Some(i) = set.slots.iter().position(|(s, _)| *s == id) else {
                        continue;
                    };
                    let (id, p) = self.remove(set, i);
                    match p.step() {
                        Step::Waiting(p) => {
                            if let Err(e) = self.insert_at(set, i, id, p) {
                                return Some(Err(e));
                            }
                        }
                        Step::Done(r) => {
                            if let Some(r) = finished(r) {
                                return Some(r);
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// Takes up to [`ACCEPT_BATCH`] clients from the listening socket.
    fn accept_batch(&self, set: &mut PendingSet) -> Option<Result<Connection>> {
        for n in 0..ACCEPT_BATCH {
            let sock = match rustix::net::accept_with(&self.sock, SocketFlags::CLOEXEC) {
                Ok(s) => s,
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                Err(Errno::AGAIN) => return None,
                // accept4 takes an fd before it looks at the queue, so a
                // full fd table fails it even when nobody is waiting: after
                // the client that woke us, stop quietly (if another one is
                // waiting the socket stays readable and the next call
                // reports it).
                Err(Errno::MFILE | Errno::NFILE) if n > 0 => return None,
                Err(e) => return Some(Err(Error::io("accept", e))),
            };
            let p = match Pending::start(sock, &self.opts) {
                Ok(p) => p,
                Err(a) => match finished(Err(a)) {
                    Some(r) => return Some(r),
                    None => continue,
                },
            };
            // The Hello is often there already: try before registering (a
            // client that connected and hung up costs no epoll_ctl).
            match p.step() {
                Step::Done(r) => match finished(r) {
                    Some(r) => return Some(r),
                    None => continue,
                },
                Step::Waiting(p) => {
                    if let Err(e) = self.add(set, p) {
                        return Some(Err(e));
                    }
                }
            }
        }
        None
    }

    /// Adds a pending handshake, making room first if the set is full.
    fn add(&self, set: &mut PendingSet, p: Pending) -> Result<()> {
        if set.slots.len() >= MAX_PENDING {
            let now = Instant::now();
            let i = set
                .slots
                .iter()
                .position(|(_, p)| p.deadline().is_some_and(|d| d <= now))
                .unwrap_or(0);
            let (_, old) = self.remove(set, i);
            // Dropped without a result: the caller is busy with newer
            // clients. The client gets its Reject.
            let _ = old.expire();
        }
        let id = set.next_id;
        set.next_id += 1;
        let at = set.slots.len();
        self.insert_at(set, at, id, p)
    }

    /// Registers `p` with epoll and puts it at index `i`. If it cannot be
    /// registered (our failure, such as ENOMEM), it is dropped with a
    /// best-effort Reject that does not blame the client.
    fn insert_at(&self, set: &mut PendingSet, i: usize, id: u64, p: Pending) -> Result<()> {
        let r = epoll::add(
            &self.hs.epoll,
            p.fd(),
            epoll::EventData::new_u64(id),
            epoll::EventFlags::IN,
        );
        match r {
            Ok(()) => {
                set.slots.insert(i, (id, p));
                Ok(())
            }
            Err(e) => {
                let _ = p.fail_locally(Error::io("epoll_ctl", e));
                Err(Error::io("epoll_ctl", e))
            }
        }
    }

    /// Takes slot `i` out of the set and out of epoll.
    fn remove(&self, set: &mut PendingSet, i: usize) -> (u64, Pending) {
        let (id, p) = set.slots.remove(i);
        // Cannot fail for a registered fd; if it did, closing the socket
        // removes it anyway, and a returned connection's socket would only
        // cause a spurious wake-up.
        let _ = epoll::delete(&self.hs.epoll, p.fd());
        (id, p)
    }

    /// Arms the timer at the earliest pending deadline (disarms it if there
    /// is none), unless it is armed for that already.
    fn rearm(&self, set: &mut PendingSet) -> Result<()> {
        let earliest = set.slots.iter().filter_map(|(_, p)| p.deadline()).min();
        if earliest == set.armed {
            return Ok(());
        }
        let value = match earliest {
            // A zero it_value disarms; an expired deadline fires at once.
            Some(d) => timespec(
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1)),
            ),
            None => timespec(Duration::ZERO),
        };
        let spec = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: value,
        };
        timerfd_settime(&self.hs.timer, TimerfdTimerFlags::empty(), &spec)
            .map_err(|e| Error::io("timerfd_settime", e))?;
        set.armed = earliest;
        Ok(())
    }

    /// An endless iterator of [`Listener::accept`] results.
    pub fn incoming(&self) -> impl Iterator<Item = Result<Connection>> + '_ {
        std::iter::repeat_with(move || self.accept())
    }

    /// Makes [`accept`](Listener::accept) return `WouldBlock` instead of
    /// waiting (the same as [`try_accept`](Listener::try_accept) returning
    /// `Ok(None)`).
    ///
    /// # Errors
    /// None today; kept for compatibility.
    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        self.hs.nonblocking.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// The socket file's path (`None` for abstract sockets).
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(SocketFile::path)
    }
}

/// What a finished handshake gives the caller: nothing for a client that
/// hung up without a word.
fn finished(r: Result<Connection, Accept>) -> Option<Result<Connection>> {
    match r {
        Ok(c) => Some(Ok(c)),
        Err(Accept::HungUp) => None,
        Err(Accept::Failed(e)) => Some(Err(e)),
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

impl AsFd for Listener {
    /// An epoll fd: readable whenever [`Listener::try_accept`] can make
    /// progress (a client is waiting to be accepted, a pending client sent
    /// something or hung up, or a pending handshake's deadline passed).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.hs.epoll.as_fd()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A server that is stopped or hung with its accept backlog full still
    /// owns its socket file: `bind`'s stale-socket probe was a blocking
    /// connect, which slept until that server would accept (never). Now
    /// the probe does not wait and a full backlog counts as live.
    #[test]
    fn binding_over_a_hung_listener_neither_blocks_nor_steals_its_socket() {
        let path = std::env::temp_dir().join(format!("shmsock-full-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let addr = socket_addr(&path).unwrap();
        let sock = |flags| {
            rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC | flags,
                None,
            )
            .unwrap()
        };
        let hung = sock(SocketFlags::empty());
        rustix::net::bind(&hung, &addr).unwrap();
        // Backlog 0: Linux queues one connection, then refuses more.
        rustix::net::listen(&hung, 0).unwrap();
        let mut queued = Vec::new();
        loop {
            let s = sock(SocketFlags::NONBLOCK);
            match rustix::net::connect(&s, &addr) {
                Ok(()) => queued.push(s),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(queued.len() < 1024, "the backlog never filled");
        }
        // On a thread with a watchdog: the bug blocked forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Listener::bind(&p).map(drop));
        });
        let r = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("bind blocked on a hung listener");
        match r {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
            }
            r => panic!("{r:?}"),
        }
        assert!(path.exists(), "the live listener's socket file was removed");
        drop((hung, queued));
        let _ = std::fs::remove_file(&path);
    }
}
