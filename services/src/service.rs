//! One API for both ways of reaching a service: a socket path (plain
//! shmsock, no broker) or a name (through a broker).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmsock_transport::{Builder, Connection, Listener};

use crate::broker::{Introduction, Provider};
use crate::error::{Error, Result};
use crate::name::Target;
use crate::wire::LookupPolicy;

/// Anything that names a service: a [`Target`], or text parsed with
/// [`Target::parse`] (paths start with `/`, `.` or `@`), or a path.
pub trait ToTarget {
    /// The target.
    ///
    /// # Errors
    /// [`Error::BadName`] for text that is neither a path nor a valid name.
    fn to_target(self) -> Result<Target>;
}

impl ToTarget for Target {
    fn to_target(self) -> Result<Target> {
        Ok(self)
    }
}
impl ToTarget for &Target {
    fn to_target(self) -> Result<Target> {
        Ok(self.clone())
    }
}
impl ToTarget for &str {
    fn to_target(self) -> Result<Target> {
        Target::parse(self)
    }
}
impl ToTarget for &String {
    fn to_target(self) -> Result<Target> {
        Target::parse(self)
    }
}
impl ToTarget for &Path {
    fn to_target(self) -> Result<Target> {
        Ok(Target::Path(self.to_owned()))
    }
}
impl ToTarget for PathBuf {
    fn to_target(self) -> Result<Target> {
        Ok(Target::Path(self))
    }
}

/// Connects to a service: directly to a socket path, or by name through
/// the broker (lookup, then the shmsock handshake over the introduced
/// socket). The handshake timeout of `opts`
/// ([`Builder::handshake_timeout`], default 5 s) bounds the whole call: the
/// connect (also to a listener or broker whose accept backlog is full), the
/// lookup and the handshake share one deadline.
///
/// # Errors
/// The transport's connect errors; for a name, those of
/// [`lookup`](crate::broker::lookup) too; a timeout
/// ([`Error::is_timeout`]) if the deadline passes (a hung broker or
/// provider).
pub fn connect(target: impl ToTarget, opts: &Builder) -> Result<Connection> {
    match target.to_target()? {
        Target::Path(p) => Ok(opts.connect(p)?),
        Target::Name { broker, name } => {
            let deadline = Instant::now().checked_add(opts.get_handshake_timeout());
            let (sock, _provider) = crate::broker::lookup_name(&broker, &name, deadline)?;
            // What is left of the deadline for the handshake (`None`: no
            // limit, which `Duration::MAX` says to the transport).
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            Ok(opts.clone().handshake_timeout(left).connect_socket(sock)?)
        }
    }
}

/// The server side of a service, by path (a shmsock [`Listener`]) or by
/// name (a [`Provider`] registered with a broker).
#[derive(Debug)]
pub struct ServiceListener {
    inner: Inner,
    opts: Builder,
}

#[derive(Debug)]
enum Inner {
    Path(Listener),
    Name(Provider),
}

/// A client taken in by [`ServiceListener::accept_pending`] whose handshake
/// may still have to run: finish it with [`Pending::finish`], for example
/// in the thread that will serve it, so that a slow client delays nobody.
#[derive(Debug)]
pub enum Pending {
    /// The handshake is done (a listener runs handshakes concurrently).
    Ready(Box<Connection>),
    /// A consumer introduced by the broker; the handshake is still to run.
    Introduced(Introduction),
}

impl Pending {
    /// Runs the handshake if it is still due.
    ///
    /// # Errors
    /// As [`shmsock_transport::Builder::accept_socket`].
    pub fn finish(self, opts: &Builder) -> Result<Connection> {
        match self {
            Pending::Ready(c) => Ok(*c),
            Pending::Introduced(i) => i.accept(opts),
        }
    }
}

impl ServiceListener {
    /// Binds a listener at a path, or registers a name with its broker
    /// with lookup policy `policy` (ignored for a path: the socket file's
    /// mode and the transport's credentials policy apply there). The
    /// registration (connecting to the broker and its answer) is bounded
    /// by the handshake timeout of `opts` ([`Builder::handshake_timeout`],
    /// default 5 s).
    ///
    /// # Errors
    /// [`shmsock_transport::Listener::bind`]'s errors, or
    /// [`Provider::register_timeout`]'s.
    pub fn bind(
        target: impl ToTarget,
        opts: Builder,
        policy: LookupPolicy,
    ) -> Result<ServiceListener> {
        let inner = match target.to_target()? {
            Target::Path(p) => Inner::Path(opts.bind(p)?),
            Target::Name { broker, name } => {
                let t = opts.get_handshake_timeout();
                Inner::Name(Provider::register_timeout(
                    broker,
                    name.as_str(),
                    policy,
                    t,
                )?)
            }
        };
        Ok(ServiceListener { inner, opts })
    }

    /// Waits for the next client and runs its handshake.
    ///
    /// # Errors
    /// As [`ServiceListener::accept_pending`] and [`Pending::finish`].
    pub fn accept(&mut self) -> Result<Connection> {
        let opts = self.opts.clone();
        self.accept_pending()?.finish(&opts)
    }

    /// As [`accept`](ServiceListener::accept), giving up after `timeout`
    /// in all: waiting for a client and its handshake share the deadline
    /// (a client that never runs its handshake costs at most what is left
    /// of it, not a whole handshake timeout).
    ///
    /// # Errors
    /// As [`ServiceListener::accept`]; a timeout ([`Error::is_timeout`]).
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection> {
        let deadline = Instant::now().checked_add(timeout);
        let pending = self.accept_pending_timeout(timeout)?;
        let mut opts = self.opts.clone();
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            opts = opts.handshake_timeout(left.min(self.opts.get_handshake_timeout()));
        }
        pending.finish(&opts)
    }

    /// Waits for the next client; for a name, without running the
    /// handshake yet (see [`Pending`]).
    ///
    /// # Errors
    /// [`shmsock_transport::Listener::accept`]'s or
    /// [`Provider::accept`]'s errors.
    pub fn accept_pending(&mut self) -> Result<Pending> {
        match &mut self.inner {
            Inner::Path(l) => Ok(Pending::Ready(Box::new(l.accept()?))),
            Inner::Name(p) => Ok(Pending::Introduced(p.accept()?)),
        }
    }

    /// As [`accept_pending`](ServiceListener::accept_pending), giving up
    /// after `timeout`.
    ///
    /// # Errors
    /// As [`ServiceListener::accept_pending`]; a timeout.
    pub fn accept_pending_timeout(&mut self, timeout: Duration) -> Result<Pending> {
        match &mut self.inner {
            Inner::Path(l) => Ok(Pending::Ready(Box::new(l.accept_timeout(timeout)?))),
            Inner::Name(p) => Ok(Pending::Introduced(p.accept_timeout(timeout)?)),
        }
    }

    /// The transport options used for handshakes.
    pub fn options(&self) -> &Builder {
        &self.opts
    }
}

impl From<Introduction> for Pending {
    fn from(i: Introduction) -> Pending {
        Pending::Introduced(i)
    }
}

// Errors cross threads (the rpc server's client threads).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Error>();
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::broker::testing::{abstract_path, within, FullBacklog, HungBroker};

    /// The fixed 5 s these calls used to wait for a broker, whatever the
    /// options said; generous for a busy machine.
    const BOUND: Duration = Duration::from_millis(2500);

    #[test]
    fn connecting_by_name_through_a_hung_broker_keeps_the_handshake_timeout() {
        // The lookup ignored the builder's handshake timeout (fixed 5 s),
        // and the handshake after it got a full timeout of its own.
        let path = abstract_path("connect-hung");
        let hung = HungBroker::start(&path);
        let target = Target::name_at(&path, "svc.connhung").unwrap();
        let (r, took) = within(Duration::from_secs(60), move || {
            let t = Instant::now();
            let opts = Builder::new().handshake_timeout(Duration::from_millis(200));
            (connect(target, &opts).map(|_| ()), t.elapsed())
        });
        assert!(r.as_ref().is_err_and(Error::is_timeout), "{r:?}");
        assert!(took < BOUND, "took {took:?}");
        drop(hung);
    }

    #[test]
    fn registering_with_a_hung_broker_keeps_the_handshake_timeout() {
        // Hung in two ways: accepting and never answering, and a full
        // accept backlog (the connect itself cannot complete).
        for full in [false, true] {
            let path = abstract_path("bind-hung");
            let _hung: Box<dyn std::any::Any> = if full {
                Box::new(FullBacklog::start(
                    &path,
                    rustix::net::SocketType::SEQPACKET,
                ))
            } else {
                Box::new(HungBroker::start(&path))
            };
            let target = Target::name_at(&path, "svc.bindhung").unwrap();
            let (r, took) = within(Duration::from_secs(60), move || {
                let t = Instant::now();
                let opts = Builder::new().handshake_timeout(Duration::from_millis(200));
                let r = ServiceListener::bind(target, opts, LookupPolicy::SameUid);
                (r.map(|_| ()), t.elapsed())
            });
            assert!(r.as_ref().is_err_and(Error::is_timeout), "{full}: {r:?}");
            assert!(took < BOUND, "{full}: took {took:?}");
        }
    }

    #[test]
    fn accept_timeout_bounds_the_handshake_of_a_mute_consumer() {
        // A consumer that looks the name up and never runs its handshake:
        // `accept` then waited a whole handshake timeout (5 s).
        use crate::broker::testing::ThreadBroker;
        let path = abstract_path("mute-consumer");
        let _broker = ThreadBroker::start(&path);
        let target = Target::name_at(&path, "svc.mute").unwrap();
        let mut l = ServiceListener::bind(target, Builder::new(), LookupPolicy::SameUid).unwrap();
        let (_mute, _) = crate::broker::lookup(&path, "svc.mute", Duration::from_secs(10)).unwrap();
        let (r, took) = within(Duration::from_secs(60), move || {
            let t = Instant::now();
            let r = l.accept_timeout(Duration::from_millis(200)).map(|_| ());
            (r, t.elapsed())
        });
        assert!(r.as_ref().is_err_and(Error::is_timeout), "{r:?}");
        assert!(took < BOUND, "took {took:?}");
    }

    #[test]
    fn provider_and_lookup_time_out_on_a_full_backlog() {
        let path = abstract_path("full");
        let _full = FullBacklog::start(&path, rustix::net::SocketType::SEQPACKET);
        let p = path.clone();
        let r = within(Duration::from_secs(60), move || {
            Provider::connect_timeout(&p, Duration::from_millis(100)).map(|_| ())
        });
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        let p = path.clone();
        let r = within(Duration::from_secs(60), move || {
            crate::broker::lookup(&p, "svc.full", Duration::from_millis(100)).map(|_| ())
        });
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    }
}
