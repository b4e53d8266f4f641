//! `shmsock_listener`: bind, accept (blocking, with a timeout, or for
//! `poll` loops), its pollable fd.

use std::ffi::c_char;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use shmsock_transport::{Connection, Listener};

use crate::conn::shmsock_conn;
use crate::endpoint::Conn;
use crate::options::{builder_of, shmsock_options};
use crate::registry::{self, Kind, Obj};
use crate::status::{call, shmsock_status, Fail};
use crate::{handle, path_arg, put, SHMSOCK_FOREVER};

/// A listening socket that accepts shmsock connections (the counterpart of
/// a `socket` + `bind` + `listen` Unix socket). Handshakes of many clients
/// run concurrently inside it: a slow client holds up no one.
///
/// Thread-safety: thread-safe. Several threads may accept on one listener
/// at once; `shmsock_listener_free` may be called while another thread is
/// blocked in `shmsock_accept` (the listener is then closed when that call
/// returns; its socket file is removed at that point).
#[derive(Debug)]
pub struct shmsock_listener {
    _opaque: [u8; 0],
}

fn listener_of(l: *mut shmsock_listener) -> Result<Arc<Listener>, Fail> {
    registry::with_shared(l.addr(), Kind::Listener, |o| match o {
        Obj::Listener(l) => Ok(l.clone()),
        _ => Err(Fail::invalid("not a listener")),
    })
}

/// Binds a listener at `path` (a filesystem path, or `@name` for a Linux
/// abstract socket) with `opts` (NULL: defaults). A stale socket file
/// (nobody listening) is replaced; a live one gives `SHMSOCK_IO` with
/// `errno` `EADDRINUSE`. The socket file is removed by
/// `shmsock_listener_free`.
///
/// Errors: `SHMSOCK_INVALID_ARGUMENT` (NULL `path` or `out`, invalid
/// options), `SHMSOCK_BAD_HANDLE` (`opts` not live), `SHMSOCK_IO`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_listen(
    path: *const c_char,
    opts: *const shmsock_options,
    out: *mut *mut shmsock_listener,
) -> shmsock_status {
    call("shmsock_listen", || {
        // SAFETY: forwarded from the caller's contract.
        let path = unsafe { path_arg(path) }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // The slot first: a full table fails before the path is bound.
        let slot = registry::reserve()?;
        let l = builder_of(opts)?.bind(path)?;
        let h = slot.fill(Obj::Listener(Arc::new(l)));
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, handle(h)) }
    })
}

/// Common tail of the accept calls: registers the connection in the slot
/// reserved before accepting.
///
/// # Safety
/// `out` is non-null and valid for writing a pointer.
unsafe fn give(
    slot: registry::Reserved,
    c: Connection,
    out: *mut *mut shmsock_conn,
) -> Result<(), Fail> {
    let h = slot.fill(Obj::Conn(Box::new(Conn::new(c))));
    // SAFETY: as the caller promises.
    unsafe { put(out, handle(h)) }
}

/// Waits for the next client whose handshake completes and stores its
/// connection in `*out`. A client that hangs up before its handshake is
/// skipped.
///
/// Errors: `SHMSOCK_TIMEOUT` (a client did not finish its handshake in
/// time; accept again), `SHMSOCK_PROTOCOL`, `SHMSOCK_HANDSHAKE`,
/// `SHMSOCK_CREDENTIALS` (that client failed; accept again), `SHMSOCK_IO`
/// (also when the handle table is full, checked first: the next client
/// stays queued for a later accept), `SHMSOCK_INVALID_ARGUMENT`,
/// `SHMSOCK_BAD_HANDLE`.
///
/// # Safety
/// `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_accept(
    l: *mut shmsock_listener,
    out: *mut *mut shmsock_conn,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { accept_impl("shmsock_accept", l, out, Some(SHMSOCK_FOREVER)) }
}

/// As `shmsock_accept`, but gives up with `SHMSOCK_TIMEOUT` after
/// `timeout_ns` nanoseconds (`SHMSOCK_FOREVER`: no limit). Handshakes still
/// in progress stay pending for the next call.
///
/// # Safety
/// `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_accept_timeout(
    l: *mut shmsock_listener,
    timeout_ns: u64,
    out: *mut *mut shmsock_conn,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { accept_impl("shmsock_accept_timeout", l, out, Some(timeout_ns)) }
}

/// Advances every pending handshake that can advance without waiting and
/// stores the first finished connection in `*out`; `SHMSOCK_WOULD_BLOCK`
/// if none finished. For `poll` loops: when `shmsock_listener_fd` is
/// readable, call it until it returns `SHMSOCK_WOULD_BLOCK`. Errors as
/// `shmsock_accept` (one failed client per call).
///
/// # Safety
/// `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_try_accept(
    l: *mut shmsock_listener,
    out: *mut *mut shmsock_conn,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { accept_impl("shmsock_try_accept", l, out, None) }
}

/// # Safety
/// `out` is NULL or valid for writing a pointer.
unsafe fn accept_impl(
    func: &'static str,
    l: *mut shmsock_listener,
    out: *mut *mut shmsock_conn,
    timeout_ns: Option<u64>,
) -> shmsock_status {
    call(func, || {
        let l = listener_of(l)?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // The slot before the client: with the handle table full, an
        // accepted client used to be dropped (it saw a disconnect right
        // after its handshake); now the call fails and the client waits
        // in the listener for a later accept.
        let slot = registry::reserve()?;
        let c = match timeout_ns {
            None => l.try_accept()?.ok_or_else(Fail::would_block)?,
            Some(SHMSOCK_FOREVER) => l.accept_timeout(Duration::MAX)?,
            Some(ns) => l.accept_timeout(Duration::from_nanos(ns))?,
        };
        // SAFETY: non-null (checked above), writable by the caller's contract.
        unsafe { give(slot, c, out) }
    })
}

/// Stores in `*fd` a file descriptor that becomes readable whenever
/// `shmsock_try_accept` can make progress (for `poll`/`epoll`; an epoll fd,
/// level-triggered). It belongs to the listener: do not read, close or
/// modify it; it is valid until `shmsock_listener_free`.
///
/// # Safety
/// `fd` is NULL or valid for writing an `int`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_listener_fd(
    l: *mut shmsock_listener,
    fd: *mut i32,
) -> shmsock_status {
    call("shmsock_listener_fd", || {
        let l = listener_of(l)?;
        // SAFETY: forwarded from the caller's contract.
        unsafe { put(fd, l.as_fd().as_raw_fd()) }
    })
}

/// Closes the listener and removes its socket file (if it is still the file
/// it created). Connections accepted from it are not affected. NULL is a
/// no-op returning `SHMSOCK_OK`; a freed handle gives `SHMSOCK_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn shmsock_listener_free(l: *mut shmsock_listener) -> shmsock_status {
    call("shmsock_listener_free", || {
        if l.is_null() {
            return Ok(());
        }
        drop(registry::remove_shared(l.addr(), Kind::Listener)?);
        Ok(())
    })
}
