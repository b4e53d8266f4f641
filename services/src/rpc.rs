//! Request/response over shmsock connections.
//!
//! Every message starts with a 16-byte [`RpcHeader`]: the request id the
//! client chose (echoed in the reply), the message kind (the
//! application's; typed messages carry their `KIND` there) and flags. A
//! [`Client`] may have many requests outstanding at once and waits for
//! each with its own timeout; replies arrive in any order and are matched
//! by id. A [`Server`] serves many clients, each on its own thread, and
//! answers each request in turn.
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use shmsock_services::rpc::{Client, Server};
//!
//! # fn main() -> Result<(), shmsock_services::Error> {
//! let server = Server::serve("/tmp/rpc-doc.sock")?;
//! std::thread::spawn(move || server.run(|req| Ok(req.body.iter().rev().copied().collect())));
//! let mut client = Client::connect("/tmp/rpc-doc.sock")?;
//! // Two requests outstanding at once, each with its own timeout.
//! let a = client.send_request(1, b"abc")?;
//! let b = client.send_request(1, b"xyz")?;
//! assert_eq!(client.wait(b, Duration::from_secs(5))?, b"zyx");
//! assert_eq!(client.wait(a, Duration::from_secs(5))?, b"cba");
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmsock_transport::{Builder, Connection, Credentials};

use crate::error::{Error, Result};
use crate::service::{Pending, ServiceListener, ToTarget};
use crate::wire::{rpc_flags, LookupPolicy, RpcHeader, WireError, RPC_HEADER};

/// Default most requests a client may have outstanding (sent, reply not
/// yet taken), counting requests whose wait timed out until their late
/// reply arrives.
pub const DEFAULT_MAX_OUTSTANDING: usize = 4096;

/// The id of a request, for [`Client::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

impl RequestId {
    /// The id on the wire.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A reply received before anyone waited for it.
#[derive(Debug)]
struct Reply {
    kind: u32,
    result: std::result::Result<Vec<u8>, String>,
}

/// The client side: sends requests, matches replies by id.
///
/// Not `Sync`: share one between threads behind a `Mutex`, or give each
/// thread its own client.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    next_id: u64,
    /// Sent, reply not yet received.
    outstanding: HashSet<u64>,
    /// Whose wait timed out: a late reply is dropped.
    abandoned: HashSet<u64>,
    /// Received, not yet taken.
    done: HashMap<u64, Reply>,
    max_outstanding: usize,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to a server by path or name (see [`ToTarget`]) with default
    /// transport options.
    ///
    /// # Errors
    /// As [`crate::connect`].
    pub fn connect(target: impl ToTarget) -> Result<Client> {
        Self::connect_with(target, &Builder::new())
    }

    /// Connects with `opts`.
    ///
    /// # Errors
    /// As [`crate::connect`].
    pub fn connect_with(target: impl ToTarget, opts: &Builder) -> Result<Client> {
        Ok(Client::from_connection(crate::connect(target, opts)?))
    }

    /// Uses an established connection.
    pub fn from_connection(conn: Connection) -> Client {
        Client {
            conn,
            next_id: 1,
            outstanding: HashSet::new(),
            abandoned: HashSet::new(),
            done: HashMap::new(),
            max_outstanding: DEFAULT_MAX_OUTSTANDING,
            buf: Vec::new(),
        }
    }

    /// Sets the most requests outstanding at once (at least 1).
    pub fn max_outstanding(mut self, n: usize) -> Self {
        self.max_outstanding = n.max(1);
        self
    }

    /// Requests outstanding (including abandoned ones whose reply has not
    /// arrived).
    pub fn outstanding(&self) -> usize {
        self.outstanding.len() + self.abandoned.len()
    }

    /// Sends a request of `kind` and waits up to `timeout` for its reply.
    ///
    /// # Errors
    /// As [`Client::send_request`] and [`Client::wait`].
    pub fn call(&mut self, kind: u32, body: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let id = self.send_request(kind, body)?;
        self.wait(id, timeout)
    }

    /// Sends a request without waiting for its reply.
    ///
    /// # Errors
    /// [`Error::Limit`] with too many requests outstanding; the transport's
    /// send errors.
    pub fn send_request(&mut self, kind: u32, body: &[u8]) -> Result<RequestId> {
        self.check_room()?;
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, kind, 0, body)?;
        self.outstanding.insert(id);
        Ok(RequestId(id))
    }

    /// Refuses a new request while `max_outstanding` requests wait for
    /// their reply: outstanding ones, replies not yet collected, and
    /// abandoned ones (timed out) whose late reply has not come. The last
    /// ones count too, so a server that never answers cannot make us
    /// remember ids without bound.
    fn check_room(&self) -> Result<()> {
        if self.outstanding.len() + self.done.len() + self.abandoned.len() >= self.max_outstanding {
            return Err(Error::Limit("too many requests outstanding"));
        }
        Ok(())
    }

    /// Sends a request that wants no reply.
    ///
    /// # Errors
    /// The transport's send errors.
    pub fn send_oneway(&mut self, kind: u32, body: &[u8]) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, kind, rpc_flags::ONEWAY, body)
    }

    fn send(&mut self, id: u64, kind: u32, flags: u16, body: &[u8]) -> Result<()> {
        let h = RpcHeader { id, kind, flags };
        self.buf.clear();
        self.buf.extend_from_slice(&h.encode());
        self.buf.extend_from_slice(body);
        self.conn.send(&self.buf)?;
        Ok(())
    }

    /// Sends a request whose body is written in place into the ring (no
    /// intermediate buffer): `fill` gets exactly `len` bytes to write.
    ///
    /// # Errors
    /// As [`Client::send_request`]; [`shmsock_transport::Error::MessageTooLarge`]
    /// if `16 + len` does not fit one ring record.
    pub fn send_request_with(
        &mut self,
        kind: u32,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<RequestId> {
        self.check_room()?;
        let id = self.next_id;
        self.next_id += 1;
        let total = RPC_HEADER
            .checked_add(len)
            .ok_or(Error::Limit("request too large"))?;
        let mut g = self.conn.reserve(total)?;
        let h = RpcHeader { id, kind, flags: 0 };
        g[..RPC_HEADER].copy_from_slice(&h.encode());
        fill(&mut g[RPC_HEADER..]);
        g.commit()?;
        self.outstanding.insert(id);
        Ok(RequestId(id))
    }

    /// Waits up to `timeout` for the reply to `id`. Replies to other
    /// requests that arrive meanwhile are kept for their own `wait`.
    ///
    /// On timeout the request is abandoned: its reply, if it comes later,
    /// is dropped.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Remote`] if the server answered with an
    /// error; [`Error::Protocol`] for a malformed reply or one to a request
    /// we never sent; the transport's errors ([`Error::Transport`] with
    /// `Disconnected` if the server went away).
    pub fn wait(&mut self, id: RequestId, timeout: Duration) -> Result<Vec<u8>> {
        self.wait_kind(id, timeout).map(|(_, body)| body)
    }

    /// As [`Client::wait`], also giving the reply's message kind.
    ///
    /// # Errors
    /// As [`Client::wait`].
    pub fn wait_kind(&mut self, id: RequestId, timeout: Duration) -> Result<(u32, Vec<u8>)> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(r) = self.done.remove(&id.0) {
                return r.result.map(|b| (r.kind, b)).map_err(Error::Remote);
            }
            if !self.outstanding.contains(&id.0) {
                return Err(Error::Limit("no such request outstanding"));
            }
            let left = match deadline {
                None => Duration::MAX,
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            let msg = if left.is_zero() {
                Err(shmsock_transport::Error::Timeout)
            } else {
                self.conn.recv_timeout(left).map(|m| m.into_vec())
            };
            let msg = match msg {
                Ok(m) => m,
                Err(shmsock_transport::Error::Timeout) => {
                    self.outstanding.remove(&id.0);
                    self.abandoned.insert(id.0);
                    return Err(Error::Timeout);
                }
                Err(e) => return Err(e.into()),
            };
            let (h, body) = RpcHeader::decode(&msg)?;
            if h.flags & rpc_flags::REPLY == 0 {
                return Err(Error::Protocol(WireError::Flags(h.flags)));
            }
            if self.abandoned.remove(&h.id) {
                continue;
            }
            if !self.outstanding.remove(&h.id) {
                return Err(Error::Protocol(WireError::UnknownId(h.id)));
            }
            let result = if h.flags & rpc_flags::ERROR != 0 {
                Err(String::from_utf8_lossy(body).into_owned())
            } else {
                Ok(body.to_vec())
            };
            self.done.insert(
                h.id,
                Reply {
                    kind: h.kind,
                    result,
                },
            );
        }
    }

    /// The underlying connection.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// One request as the server's handler sees it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The client's id for it.
    pub id: u64,
    /// The message kind.
    pub kind: u32,
    /// The body (copied out of the ring: the client could otherwise change
    /// it while the handler reads).
    pub body: &'a [u8],
    /// The client's credentials (`SO_PEERCRED`).
    pub client: Credentials,
    /// Whether the client wants no reply.
    pub oneway: bool,
}

/// Options of a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Transport options for every connection.
    pub transport: Builder,
    /// Who may look the name up (ignored for a path).
    pub policy: LookupPolicy,
    /// Most clients served at once (default 64); further clients are
    /// dropped right after their handshake.
    pub max_clients: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            transport: Builder::new(),
            policy: LookupPolicy::SameUid,
            max_clients: 64,
        }
    }
}

/// The server side: answers requests of many clients, one thread per
/// client.
#[derive(Debug)]
pub struct Server {
    listener: ServiceListener,
    max_clients: usize,
}

impl Server {
    /// Listens at a path, or registers a name with the broker (policy:
    /// same uid).
    ///
    /// # Errors
    /// As [`ServiceListener::bind`].
    pub fn serve(target: impl ToTarget) -> Result<Server> {
        Self::serve_with(target, ServerOptions::default())
    }

    /// As [`Server::serve`], with options.
    ///
    /// # Errors
    /// As [`ServiceListener::bind`]; [`Error::Config`] for `max_clients`
    /// of 0.
    pub fn serve_with(target: impl ToTarget, opts: ServerOptions) -> Result<Server> {
        if opts.max_clients == 0 {
            return Err(Error::Config("max_clients must be at least 1"));
        }
        Ok(Server {
            listener: ServiceListener::bind(target, opts.transport, opts.policy)?,
            max_clients: opts.max_clients,
        })
    }

    /// Serves clients until accepting fails for a reason of our own. Each
    /// client gets a thread that runs its handshake and then answers its
    /// requests in turn with `handler`: `Ok(body)` is sent as the reply,
    /// `Err(text)` as an error reply. A client that breaks the protocol is
    /// dropped; the others go on.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Transport`] from accepting.
    pub fn run<H>(mut self, handler: H) -> Result<()>
    where
        H: Fn(&Request<'_>) -> std::result::Result<Vec<u8>, String> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let active = Arc::new(AtomicUsize::new(0));
        loop {
            let pending = match self.listener.accept_pending() {
                Ok(p) => p,
                // One client's failed handshake or a lying broker: go on.
                Err(Error::Transport(_) | Error::Protocol(_)) => continue,
                Err(e) => return Err(e),
            };
            // Relaxed: a plain counter; no data is published through it.
            if active.load(Ordering::Relaxed) >= self.max_clients {
                drop(pending);
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            let opts = self.listener.options().clone();
            let h = Arc::clone(&handler);
            let a = Arc::clone(&active);
            let spawned = std::thread::Builder::new()
                .name("shmsock-rpc".into())
                .spawn(move || {
                    let _ = serve_client(pending, &opts, &*h);
                    a.fetch_sub(1, Ordering::Relaxed);
                });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Answers one client's requests until it hangs up or breaks the protocol.
///
/// # Errors
/// The handshake's or the connection's errors; [`Error::Protocol`] for a
/// malformed request.
pub fn serve_client<H>(pending: Pending, opts: &Builder, handler: &H) -> Result<()>
where
    H: Fn(&Request<'_>) -> std::result::Result<Vec<u8>, String> + ?Sized,
{
    let mut conn = pending.finish(opts)?;
    let client = conn.peer_credentials();
    let mut out = Vec::new();
    loop {
        let msg = match conn.recv() {
            Ok(m) => m.into_vec(),
            Err(shmsock_transport::Error::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let (h, body) = RpcHeader::decode(&msg)?;
        if h.flags & rpc_flags::REPLY != 0 {
            return Err(Error::Protocol(WireError::Flags(h.flags)));
        }
        let oneway = h.flags & rpc_flags::ONEWAY != 0;
        let req = Request {
            id: h.id,
            kind: h.kind,
            body,
            client,
            oneway,
        };
        let r = handler(&req);
        if oneway {
            continue;
        }
        let (flags, body) = match &r {
            Ok(b) => (rpc_flags::REPLY, b.as_slice()),
            Err(t) => (rpc_flags::REPLY | rpc_flags::ERROR, t.as_bytes()),
        };
        out.clear();
        out.extend_from_slice(
            &RpcHeader {
                id: h.id,
                kind: h.kind,
                flags,
            }
            .encode(),
        );
        out.extend_from_slice(body);
        match conn.send(&out) {
            Ok(()) => {}
            Err(shmsock_transport::Error::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_requests_count_against_the_limit() {
        // A server that never answers: every timed-out request used to be
        // remembered (so that its late reply could be dropped) without
        // bound, since the limit counted only outstanding and done ones.
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let server = std::thread::spawn(move || Builder::new().accept_socket(a).unwrap());
        let conn = Builder::new().connect_socket(b).unwrap();
        let _silent = server.join().unwrap();
        let mut c = Client::from_connection(conn).max_outstanding(4);
        for _ in 0..4 {
            let id = c.send_request(1, b"hello").unwrap();
            assert!(matches!(
                c.wait(id, Duration::from_millis(1)),
                Err(Error::Timeout)
            ));
        }
        assert!(matches!(c.send_request(1, b"hello"), Err(Error::Limit(_))));
        assert_eq!(c.outstanding(), 4);
        assert!(matches!(
            c.send_request_with(1, 8, |b| b.fill(0)),
            Err(Error::Limit(_))
        ));
    }
}
