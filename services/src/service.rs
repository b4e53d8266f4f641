//! One API for both ways of reaching a service: a socket path (plain
//! shmsock, no broker) or a name (through a broker).

use std::path::{Path, PathBuf};
use std::time::Duration;

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
/// socket). The handshake timeout of `opts` also bounds the lookup.
///
/// # Errors
/// The transport's connect errors; for a name, those of
/// [`lookup`](crate::broker::lookup) too.
pub fn connect(target: impl ToTarget, opts: &Builder) -> Result<Connection> {
    match target.to_target()? {
        Target::Path(p) => Ok(opts.connect(p)?),
        Target::Name { broker, name } => {
            let t = opts_handshake_timeout(opts);
            let (sock, _provider) = crate::broker::lookup_name(&broker, &name, t)?;
            Ok(opts.connect_socket(sock)?)
        }
    }
}

fn opts_handshake_timeout(_opts: &Builder) -> Duration {
    // The builder does not expose its handshake timeout; lookups use the
    // transport's default of 5 s.
    Duration::from_secs(5)
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
    /// mode and the transport's credentials policy apply there).
    ///
    /// # Errors
    /// [`shmsock_transport::Listener::bind`]'s errors, or
    /// [`Provider::register`]'s.
    pub fn bind(
        target: impl ToTarget,
        opts: Builder,
        policy: LookupPolicy,
    ) -> Result<ServiceListener> {
        let inner = match target.to_target()? {
            Target::Path(p) => Inner::Path(opts.bind(p)?),
            Target::Name { broker, name } => {
                Inner::Name(Provider::register(broker, name.as_str(), policy)?)
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
