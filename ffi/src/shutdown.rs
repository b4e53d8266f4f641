//! `shmsock_conn_shutdown`, `shmsock_sender_shutdown`,
//! `shmsock_receiver_shutdown`: ending a connection from any thread, as
//! `shutdown(2)` does for a socket, even while another thread is blocked in
//! a call on the same handle.
//!
//! That other thread holds the handle's busy bit (`registry.rs`) for the
//! whole of its blocking call, so the shutdown cannot go through the handle
//! table. Each connection takes a transport [`ShutdownHandle`] when it is
//! made (before its halves are split: the transport builds one only from a
//! whole connection) and this side table maps the handle values of the
//! connection and of its halves to it. The registry registers a value when
//! it hands it out and forgets it when it retires it, so a freed or forged
//! handle is simply not found. The shutdown handle owns duplicates of the
//! connection's two sockets: shutting it down after the connection was
//! freed touches no one else's file descriptors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use shmsock_transport::{Connection, ShutdownHandle};

use crate::conn::shmsock_conn;
use crate::halves::{shmsock_receiver, shmsock_sender};
use crate::registry::Kind;
use crate::status::{call, shmsock_status, Fail};

/// A connection's shutdown handle, shared by its halves; `None` if the
/// sockets could not be duplicated when it was made (fd limit).
pub(crate) type Shared = Arc<Option<ShutdownHandle>>;

/// Takes `c`'s shutdown handle. Never fails: a connection whose sockets
/// cannot be duplicated works, and its shutdown call reports why it cannot.
pub(crate) fn of(c: &Connection) -> Shared {
    Arc::new(c.shutdown_handle().ok())
}

static TABLE: Mutex<Option<HashMap<usize, (Kind, Shared)>>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<HashMap<usize, (Kind, Shared)>>> {
    // A map insert or remove cannot be left half-done by a panic elsewhere.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `h` (a handle of `kind`) shut down through `sd`.
pub(crate) fn register(h: usize, kind: Kind, sd: Shared) {
    table()
        .get_or_insert_with(HashMap::new)
        .insert(h, (kind, sd));
}

/// `h` is retired.
pub(crate) fn forget(h: usize) {
    if let Some(m) = table().as_mut() {
        m.remove(&h);
    }
}

fn shutdown_impl(func: &'static str, h: usize, kind: Kind) -> shmsock_status {
    call(func, || {
        if h == 0 {
            return Err(Fail::null(kind.name()));
        }
        let sd = match table().as_ref().and_then(|m| m.get(&h)) {
            Some((k, sd)) if *k == kind => sd.clone(),
            _ => {
                return Err(Fail::new(
                    shmsock_status::SHMSOCK_BAD_HANDLE,
                    format!(
                        "not a live {} handle (freed, or never returned by shmsock)",
                        kind.name()
                    ),
                ))
            }
        };
        // Outside the table's lock: `shutdown(2)` and a futex wake.
        match sd.as_ref() {
            Some(handle) => Ok(handle.shutdown()?),
            None => Err(Fail::new(
                shmsock_status::SHMSOCK_IO,
                "this connection has no shutdown handle: its sockets could not be duplicated when it was made (fd limit?)",
            )),
        }
    })
}

/// Ends the connection from any thread, as `shutdown(fd, SHUT_RDWR)` does
/// for a socket: every call on it (and on its halves), waiting or not,
/// returns `SHMSOCK_DISCONNECTED` (a receive first delivers what the peer
/// had already sent), and the peer sees the connection end as if this
/// process had closed it. The handle stays valid: free it as usual.
/// Calling it again, or after the peer left, does nothing more.
///
/// Thread-safety: thread-safe, and the one call that may run while another
/// thread is inside a call on the same handle (a blocked `shmsock_recv`,
/// `shmsock_send`, `shmsock_reader_next_chunk`, ...): that call wakes and
/// returns `SHMSOCK_DISCONNECTED`. Racing `shmsock_conn_free` is safe too
/// (the shutdown then either happens first or gives `SHMSOCK_BAD_HANDLE`).
///
/// Errors: `SHMSOCK_INVALID_ARGUMENT` (NULL), `SHMSOCK_BAD_HANDLE` (freed
/// handle), `SHMSOCK_IO` (`shutdown(2)` failed, or the connection could not
/// duplicate its sockets for this when it was made: `EMFILE`).
#[no_mangle]
pub extern "C" fn shmsock_conn_shutdown(conn: *mut shmsock_conn) -> shmsock_status {
    shutdown_impl("shmsock_conn_shutdown", conn.addr(), Kind::Conn)
}

/// As `shmsock_conn_shutdown`, through a sender: ends the whole connection
/// (both halves). Thread-safe, also while another thread is blocked on
/// this sender or its receiver.
#[no_mangle]
pub extern "C" fn shmsock_sender_shutdown(tx: *mut shmsock_sender) -> shmsock_status {
    shutdown_impl("shmsock_sender_shutdown", tx.addr(), Kind::Sender)
}

/// As `shmsock_conn_shutdown`, through a receiver: ends the whole
/// connection (both halves). Thread-safe, also while another thread is
/// blocked on this receiver or its sender.
#[no_mangle]
pub extern "C" fn shmsock_receiver_shutdown(rx: *mut shmsock_receiver) -> shmsock_status {
    shutdown_impl("shmsock_receiver_shutdown", rx.addr(), Kind::Receiver)
}
