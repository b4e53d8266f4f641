//! Brokers for in-process tests: a real [`Broker`] on a thread that can be
//! stopped (its death is what a provider sees when a broker dies), and a
//! hung one that accepts connections and never answers.
#![allow(clippy::unwrap_used)] // test helpers: a failure is the test's failure

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::net::SocketFlags;

use super::{sock, Broker};

/// A unique abstract socket name.
pub(crate) fn abstract_path(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: only uniqueness matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("@shmsock-test-{tag}-{}-{n}", std::process::id())
}

/// A real broker served on a thread until [`ThreadBroker::stop`].
pub(crate) struct ThreadBroker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ThreadBroker {
    pub(crate) fn start(path: &str) -> ThreadBroker {
        let mut broker = Broker::bind(path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            // Relaxed: a stop flag polled every step; nothing rides on it.
            while !flag.load(Ordering::Relaxed) {
                broker.step(Some(Duration::from_millis(5))).unwrap();
            }
            // Dropping the broker closes every client connection.
        });
        ThreadBroker {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the broker: its socket and every connection close.
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for ThreadBroker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A "broker" that accepts connections (on a thread) and never answers.
pub(crate) struct HungBroker {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl HungBroker {
    pub(crate) fn start(path: &str) -> HungBroker {
        let listener = sock::seqpacket(SocketFlags::NONBLOCK).unwrap();
        rustix::net::bind(&listener, &sock::socket_addr(path.as_ref()).unwrap()).unwrap();
        rustix::net::listen(&listener, 16).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&accepted));
        let thread = std::thread::spawn(move || {
            let mut held: Vec<OwnedFd> = Vec::new();
            // Relaxed: a stop flag and a counter; nothing rides on them.
            while !flag.load(Ordering::Relaxed) {
                match rustix::net::accept(&listener) {
                    Ok(s) => {
                        held.push(s);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            // Dropping `held` and the listener: the peers see EOF.
        });
        HungBroker {
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Closes the listener and every accepted connection.
    pub(crate) fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for HungBroker {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A Unix socket at `path` that listens, never accepts, and has its accept
/// backlog full: a blocking `connect` there sleeps in the kernel until the
/// listener accepts (never), a non-blocking one fails with `EAGAIN`. What a
/// stopped or hung broker or publisher looks like to a newcomer.
pub(crate) struct FullBacklog {
    _listener: OwnedFd,
    /// The connections that fill the backlog.
    _queued: Vec<OwnedFd>,
}

impl FullBacklog {
    pub(crate) fn start(path: &str, ty: rustix::net::SocketType) -> FullBacklog {
        use rustix::io::Errno;
        use rustix::net::AddressFamily;
        let addr = sock::socket_addr(path.as_ref()).unwrap();
        let listener =
            rustix::net::socket_with(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None).unwrap();
        rustix::net::bind(&listener, &addr).unwrap();
        // Backlog 0: Linux queues one connection, then refuses more.
        rustix::net::listen(&listener, 0).unwrap();
        let mut queued = Vec::new();
        loop {
            let s = rustix::net::socket_with(
                AddressFamily::UNIX,
                ty,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )
            .unwrap();
            match rustix::net::connect(&s, &addr) {
                Ok(()) => queued.push(s),
                Err(Errno::AGAIN) => break,
                Err(Errno::INTR) => {}
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(queued.len() < 1024, "the backlog never filled");
        }
        FullBacklog {
            _listener: listener,
            _queued: queued,
        }
    }
}

/// Runs `f` on a thread and waits up to `limit` for it: a call that blocks
/// forever fails the test (its thread is left behind) instead of hanging
/// the test binary.
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("the call did not return within {limit:?}"),
    }
}
