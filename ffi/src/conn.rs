//! `shmsock_conn`: connect, send, zero-copy reserve/commit, receive,
//! split, fds and peer credentials. The bodies are shared with the halves
//! (`halves.rs`) through the `*_impl` functions here.

use std::ffi::{c_char, c_void};

use crate::endpoint::{shmsock_credentials, shmsock_grant, shmsock_message, Conn, Rx, Tx, Wait};
use crate::halves::{shmsock_receiver, shmsock_sender};
use crate::options::{builder_of, shmsock_options};
use crate::registry::{self, Kind, Obj};
use crate::status::{call, shmsock_status, Fail};
use crate::{bytes_arg, handle, path_arg, put};

/// A bidirectional connection (the counterpart of a connected Unix socket):
/// one shared-memory ring per direction plus a control socket.
///
/// Thread-safety: one thread at a time. A call while another thread is
/// inside a call on the same handle returns `SHMSOCK_BUSY` (never a data
/// race), except `shmsock_conn_shutdown`, which any thread may call at any
/// time to end the connection and wake a blocked call. To send on one
/// thread and receive on another, split it with `shmsock_conn_split`. The
/// handle may move between threads.
#[derive(Debug)]
pub struct shmsock_conn {
    _opaque: [u8; 0],
}

/// Runs `f` on the sending half of the connection or sender `h`.
pub(crate) fn with_tx<R>(
    h: usize,
    kind: Kind,
    f: impl FnOnce(&mut Tx) -> Result<R, Fail>,
) -> Result<R, Fail> {
    registry::with(h, kind, |o| match o {
        Obj::Conn(c) => f(&mut c.tx),
        Obj::Sender(t) => f(t),
        _ => Err(Fail::invalid("not a connection or sender")),
    })
}

/// Runs `f` on the receiving half of the connection or receiver `h`.
pub(crate) fn with_rx<R>(
    h: usize,
    kind: Kind,
    f: impl FnOnce(&mut Rx) -> Result<R, Fail>,
) -> Result<R, Fail> {
    registry::with(h, kind, |o| match o {
        Obj::Conn(c) => f(&mut c.rx),
        Obj::Receiver(r) => f(r),
        _ => Err(Fail::invalid("not a connection or receiver")),
    })
}

/// # Safety
/// As `shmsock_send`.
pub(crate) unsafe fn send_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    data: *const c_void,
    len: usize,
    wait: Wait,
) -> shmsock_status {
    call(func, || {
        // SAFETY: forwarded from the caller's contract.
        let data = unsafe { bytes_arg(data, len) }?;
        with_tx(h, kind, |tx| tx.send(data, wait))
    })
}

/// # Safety
/// As `shmsock_reserve`.
pub(crate) unsafe fn reserve_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    len: usize,
    wait: Wait,
    out: *mut shmsock_grant,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let g = with_tx(h, kind, |tx| tx.reserve(len, wait))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, g) }
    })
}

/// Reads the id of a grant or message struct from C.
///
/// # Safety
/// `p` is NULL or valid for reading a `T`.
unsafe fn id_of<T>(p: *const T, id: impl FnOnce(&T) -> u64) -> Result<u64, Fail> {
    if p.is_null() {
        return Err(Fail::null("grant or message"));
    }
    // SAFETY: non-null and readable by the caller's contract; the struct has
    // no invalid bit patterns (pointers, integers).
    Ok(id(unsafe { &*p }))
}

/// # Safety
/// As `shmsock_commit`.
pub(crate) unsafe fn commit_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    g: *mut shmsock_grant,
    len: usize,
    commit: bool,
) -> shmsock_status {
    call(func, || {
        // SAFETY: forwarded from the caller's contract.
        let id = unsafe { id_of(g, |g| g.id) }?;
        let r = with_tx(h, kind, |tx| {
            if commit {
                tx.commit(id, len)
            } else {
                tx.abort(id)
            }
        });
        // The loan is over unless it was refused as not ours (or, for a
        // commit, as too long: the caller may retry).
        if !matches!(&r, Err(f) if f.status == shmsock_status::SHMSOCK_INVALID_ARGUMENT
            || f.status == shmsock_status::SHMSOCK_BAD_HANDLE
            || f.status == shmsock_status::SHMSOCK_BUSY)
        {
            let empty = shmsock_grant {
                data: std::ptr::null_mut(),
                len: 0,
                id: 0,
            };
            // SAFETY: non-null (checked by `id_of`), writable by the
            // caller's contract.
            unsafe { put(g, empty) }?;
        }
        r
    })
}

/// # Safety
/// As `shmsock_recv`.
pub(crate) unsafe fn recv_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    wait: Wait,
    out: *mut shmsock_message,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let m = with_rx(h, kind, |rx| rx.recv(wait))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, m) }
    })
}

/// # Safety
/// As `shmsock_release`.
pub(crate) unsafe fn release_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    m: *mut shmsock_message,
) -> shmsock_status {
    call(func, || {
        // SAFETY: forwarded from the caller's contract.
        let id = unsafe { id_of(m, |m| m.id) }?;
        with_rx(h, kind, |rx| rx.release(id))?;
        let empty = shmsock_message {
            data: std::ptr::null(),
            len: 0,
            id: 0,
        };
        // SAFETY: non-null (checked by `id_of`), writable by the caller's
        // contract.
        unsafe { put(m, empty) }
    })
}

/// # Safety
/// `out` is NULL or valid for writing a `T`.
pub(crate) unsafe fn get_impl<T>(
    func: &'static str,
    h: usize,
    kind: Kind,
    out: *mut T,
    f: impl FnOnce(&mut Obj) -> Result<T, Fail>,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let v = registry::with(h, kind, f)?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, v) }
    })
}

/// Connects to the listener at `path` (`@name`: abstract socket) with
/// `opts` (NULL: defaults) and runs the handshake (bounded by the options'
/// handshake timeout). On success stores the connection in `*out`.
///
/// Errors: `SHMSOCK_IO` (`errno` `ENOENT`, `ECONNREFUSED`, ...; or the
/// handle table is full, checked before connecting),
/// `SHMSOCK_TIMEOUT` (connect to a full accept backlog, or handshake), `SHMSOCK_HANDSHAKE`,
/// `SHMSOCK_CREDENTIALS`, `SHMSOCK_PROTOCOL`, `SHMSOCK_INVALID_ARGUMENT`
/// (NULL `path`/`out`, invalid options), `SHMSOCK_BAD_HANDLE` (`opts`).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for
/// writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_connect(
    path: *const c_char,
    opts: *const shmsock_options,
    out: *mut *mut shmsock_conn,
) -> shmsock_status {
    call("shmsock_connect", || {
        // SAFETY: forwarded from the caller's contract.
        let path = unsafe { path_arg(path) }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // The slot first: a full table must not cost the server a
        // connection it accepted for nothing.
        let slot = registry::reserve()?;
        let c = builder_of(opts)?.connect(path)?;
        let h = slot.fill(Obj::Conn(Box::new(Conn::new(c))));
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, handle(h)) }
    })
}

/// Runs the client side of the handshake over `fd`, one end of a connected
/// Unix `SOCK_SEQPACKET` socket (`socketpair(AF_UNIX, SOCK_SEQPACKET, 0,
/// sv)`, the other end given to `shmsock_accept_fd`, typically in a child
/// after `fork`). `fd` is consumed whatever the result: shmsock closes it on
/// failure and owns it on success. The peer credentials are those of the
/// process that created the pair (as `SO_PEERCRED` reports on any socket
/// pair). Errors as `shmsock_connect`;
/// `SHMSOCK_INVALID_ARGUMENT` for a negative `fd` (not consumed).
///
/// # Safety
/// `fd` is an open file descriptor that the caller owns and gives up (no
/// one else may close or use it); `out` is NULL or valid for writing a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_connect_fd(
    fd: i32,
    opts: *const shmsock_options,
    out: *mut *mut shmsock_conn,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { over_fd("shmsock_connect_fd", fd, opts, out, true) }
}

/// Runs the server side of the handshake over `fd`, the other end of the
/// socket pair of `shmsock_connect_fd`. `fd` is consumed whatever the
/// result. Errors as `shmsock_accept`; a peer that hangs up before its
/// handshake gives `SHMSOCK_DISCONNECTED`.
///
/// # Safety
/// As `shmsock_connect_fd`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_accept_fd(
    fd: i32,
    opts: *const shmsock_options,
    out: *mut *mut shmsock_conn,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { over_fd("shmsock_accept_fd", fd, opts, out, false) }
}

/// # Safety
/// As `shmsock_connect_fd`.
unsafe fn over_fd(
    func: &'static str,
    fd: i32,
    opts: *const shmsock_options,
    out: *mut *mut shmsock_conn,
    client: bool,
) -> shmsock_status {
    call(func, || {
        if fd < 0 {
            return Err(Fail::invalid(format!("fd {fd} is negative")));
        }
        // SAFETY: an open fd the caller owns and gives up (contract above);
        // from here on `OwnedFd` closes it on every path.
        let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let b = builder_of(opts)?;
        // The slot before the handshake: a full table fails the call
        // before the peer is made to finish a handshake for nothing.
        let slot = registry::reserve()?;
        let c = if client {
            b.connect_socket(sock)?
        } else {
            b.accept_socket(sock)?
        };
        let h = slot.fill(Obj::Conn(Box::new(Conn::new(c))));
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, handle(h)) }
    })
}

/// Closes the connection: the peer receives everything already sent, then
/// `SHMSOCK_DISCONNECTED`. An outstanding grant is aborted and an
/// outstanding message released (their `data` pointers die with it). NULL
/// is a no-op returning `SHMSOCK_OK`; a freed handle gives
/// `SHMSOCK_BAD_HANDLE`; a handle another thread is using gives
/// `SHMSOCK_BUSY` (and stays open).
#[no_mangle]
pub extern "C" fn shmsock_conn_free(conn: *mut shmsock_conn) -> shmsock_status {
    call("shmsock_conn_free", || {
        if conn.is_null() {
            return Ok(());
        }
        drop(registry::remove(conn.addr(), Kind::Conn)?);
        Ok(())
    })
}

/// Splits a connection into a sender and a receiver that can be used from
/// two threads at once. On success `conn` is consumed (its handle is no
/// longer valid) and the halves are stored in `*tx` and `*rx`; each must be
/// freed with its own `_free`. Fails with `SHMSOCK_IO` if the handle table
/// is full (1 Mi live handles; `conn` then stays valid and open), and with
/// `SHMSOCK_BUSY` if a grant,
/// message, writer or reader is outstanding on `conn`, or another thread is
/// inside a call on it (`conn` then stays valid). The check and the
/// consumption are one step: no other thread can take a loan out between
/// them.
///
/// # Safety
/// `tx` and `rx` are NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_conn_split(
    conn: *mut shmsock_conn,
    tx: *mut *mut shmsock_sender,
    rx: *mut *mut shmsock_receiver,
) -> shmsock_status {
    call("shmsock_conn_split", || {
        if tx.is_null() || rx.is_null() {
            return Err(Fail::null("tx or rx"));
        }
        // Both slots before `conn` is consumed: with the handle table
        // full, the halves used to be dropped after `conn` was retired,
        // which closed the connection and left the caller no handle.
        // Now a full table fails the call and `conn` stays valid.
        let (slot_tx, slot_rx) = (registry::reserve()?, registry::reserve()?);
        // Refuse while a loan is out, in the same hold that consumes the
        // handle (a grant taken between a check and the removal would move
        // into the sender with no handle left to end it).
        let c = registry::remove_with(conn.addr(), Kind::Conn, |o| match o {
            Obj::Conn(c) if c.tx.has_loan() || c.rx.has_loan() => Err(Fail::busy(
                "a grant, message, writer or reader is outstanding: end it first",
            )),
            _ => Ok(()),
        })?;
        let Obj::Conn(c) = c else {
            return Err(Fail::invalid("not a connection"));
        };
        let Conn { tx: t, rx: r } = *c;
        let ht = slot_tx.fill(Obj::Sender(Box::new(t)));
        let hr = slot_rx.fill(Obj::Receiver(Box::new(r)));
        // SAFETY: both non-null (checked above), writable by the caller's
        // contract.
        unsafe { put(tx, handle(ht)) }?;
        // SAFETY: as above.
        unsafe { put(rx, handle(hr)) }
    })
}

/// Sends `len` bytes from `data` (NULL allowed when `len` is 0), waiting for
/// ring space per the wait strategy and the default timeout (see
/// `shmsock_options_set_timeout`). Messages larger than
/// `shmsock_conn_max_inline` stream through the ring in fragments. Never
/// raises `SIGPIPE`; never fails with `EINTR`.
///
/// Errors: `SHMSOCK_DISCONNECTED` (peer gone: `EPIPE`/`ECONNRESET` on a
/// socket), `SHMSOCK_TIMEOUT`, `SHMSOCK_TOO_LARGE` (above the peer's
/// limit), `SHMSOCK_BUSY` (a grant is outstanding, or another thread is in
/// a call), `SHMSOCK_PROTOCOL`, `SHMSOCK_IO`, `SHMSOCK_INVALID_ARGUMENT`,
/// `SHMSOCK_BAD_HANDLE`.
///
/// # Safety
/// `data` is valid for reading `len` bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmsock_send(
    conn: *mut shmsock_conn,
    data: *const c_void,
    len: usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_impl(
            "shmsock_send",
            conn.addr(),
            Kind::Conn,
            data,
            len,
            Wait::Default,
        )
    }
}

/// As `shmsock_send` with its own timeout in nanoseconds (`SHMSOCK_FOREVER`:
/// none). A send that does not have to wait never reads the clock.
///
/// # Safety
/// As `shmsock_send`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_send_timeout(
    conn: *mut shmsock_conn,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_impl(
            "shmsock_send_timeout",
            conn.addr(),
            Kind::Conn,
            data,
            len,
            Wait::ns(timeout_ns),
        )
    }
}

/// Sends without waiting: `SHMSOCK_WOULD_BLOCK` if the ring is full. Then
/// the connection's send fd (`shmsock_conn_send_fd`) becomes readable when
/// space frees up (the peer wakes us): poll it and retry. Messages larger
/// than one ring record are streamed and may wait (bounded by the default
/// timeout). Errors as `shmsock_send`.
///
/// # Safety
/// As `shmsock_send`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_try_send(
    conn: *mut shmsock_conn,
    data: *const c_void,
    len: usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_impl(
            "shmsock_try_send",
            conn.addr(),
            Kind::Conn,
            data,
            len,
            Wait::Now,
        )
    }
}

/// Reserves `len` bytes of ring space for a zero-copy send, waiting per the
/// default timeout, and describes it in `*out`: write the message at
/// `out->data`, then `shmsock_commit` or `shmsock_abort`. `len` must be at
/// most `shmsock_conn_max_inline` (`SHMSOCK_TOO_LARGE` otherwise). Until the
/// grant ends, other sends and reserves on this connection return
/// `SHMSOCK_BUSY` (receiving is unaffected). Errors otherwise as
/// `shmsock_send`.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_reserve(
    conn: *mut shmsock_conn,
    len: usize,
    out: *mut shmsock_grant,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        reserve_impl(
            "shmsock_reserve",
            conn.addr(),
            Kind::Conn,
            len,
            Wait::Default,
            out,
        )
    }
}

/// As `shmsock_reserve` with its own timeout in nanoseconds (0: do not
/// wait, `SHMSOCK_TIMEOUT` if there is no room now; `SHMSOCK_FOREVER`:
/// none).
///
/// # Safety
/// As `shmsock_reserve`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_reserve_timeout(
    conn: *mut shmsock_conn,
    len: usize,
    timeout_ns: u64,
    out: *mut shmsock_grant,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        reserve_impl(
            "shmsock_reserve_timeout",
            conn.addr(),
            Kind::Conn,
            len,
            Wait::ns(timeout_ns),
            out,
        )
    }
}

/// Sends the first `len` bytes of the grant (`len` at most `grant->len`) and
/// zeroes `*grant`. A grant that is not this connection's outstanding one,
/// or a `len` above `grant->len`, gives `SHMSOCK_INVALID_ARGUMENT` and
/// changes nothing. `SHMSOCK_DISCONNECTED` if the peer is gone (the grant
/// is then over too).
///
/// # Safety
/// `grant` is NULL or valid for reading and writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_commit(
    conn: *mut shmsock_conn,
    grant: *mut shmsock_grant,
    len: usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { commit_impl("shmsock_commit", conn.addr(), Kind::Conn, grant, len, true) }
}

/// Gives the grant's space back without sending anything, and zeroes
/// `*grant`. A grant that is not this connection's outstanding one gives
/// `SHMSOCK_INVALID_ARGUMENT`.
///
/// # Safety
/// `grant` is NULL or valid for reading and writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_abort(
    conn: *mut shmsock_conn,
    grant: *mut shmsock_grant,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { commit_impl("shmsock_abort", conn.addr(), Kind::Conn, grant, 0, false) }
}

/// Receives the next message, waiting per the wait strategy and the default
/// timeout, and lends it in `*out` (zero-copy: see `shmsock_message`) until
/// `shmsock_release`. While it is out, other receives on this connection
/// return `SHMSOCK_BUSY` (sending is unaffected). Never fails with `EINTR`.
///
/// Errors: `SHMSOCK_DISCONNECTED` once the peer is gone and everything it
/// sent was received (a zero-length `recv` on a socket), `SHMSOCK_TIMEOUT`,
/// `SHMSOCK_PROTOCOL`, `SHMSOCK_BUSY`, `SHMSOCK_IO`,
/// `SHMSOCK_INVALID_ARGUMENT`, `SHMSOCK_BAD_HANDLE`.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_recv(
    conn: *mut shmsock_conn,
    out: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { recv_impl("shmsock_recv", conn.addr(), Kind::Conn, Wait::Default, out) }
}

/// As `shmsock_recv` with its own timeout in nanoseconds (`SHMSOCK_FOREVER`:
/// none). The timeout bounds the whole call, including reassembly of a large
/// message.
///
/// # Safety
/// As `shmsock_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_recv_timeout(
    conn: *mut shmsock_conn,
    timeout_ns: u64,
    out: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_impl(
            "shmsock_recv_timeout",
            conn.addr(),
            Kind::Conn,
            Wait::ns(timeout_ns),
            out,
        )
    }
}

/// Receives a message if one is ready, never blocking:
/// `SHMSOCK_WOULD_BLOCK` if none is. Then the connection's receive fd
/// (`shmsock_conn_recv_fd`) becomes readable as soon as the peer sends:
/// poll it and call again. Errors as `shmsock_recv` (never
/// `SHMSOCK_TIMEOUT`).
///
/// # Safety
/// As `shmsock_recv`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_try_recv(
    conn: *mut shmsock_conn,
    out: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { recv_impl("shmsock_try_recv", conn.addr(), Kind::Conn, Wait::Now, out) }
}

/// Ends the loan of a received message: its ring space is given back to the
/// peer and `*msg` is zeroed. A message that is not this connection's
/// outstanding one gives `SHMSOCK_INVALID_ARGUMENT`.
///
/// # Safety
/// `msg` is NULL or valid for reading and writing a `shmsock_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_release(
    conn: *mut shmsock_conn,
    msg: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { release_impl("shmsock_release", conn.addr(), Kind::Conn, msg) }
}

/// Stores in `*fd` the connection's receive socket, for `poll`/`epoll`
/// (`POLLIN`): readable when a message may be ready after
/// `shmsock_try_recv` returned `SHMSOCK_WOULD_BLOCK`, or when the peer hung
/// up. It belongs to the connection: never read, write or close it.
///
/// # Safety
/// `fd` is NULL or valid for writing an `int`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_conn_recv_fd(
    conn: *mut shmsock_conn,
    fd: *mut i32,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_conn_recv_fd",
            conn.addr(),
            Kind::Conn,
            fd,
            |o| match o {
                Obj::Conn(c) => Ok(c.rx.fd()),
                _ => Err(Fail::invalid("not a connection")),
            },
        )
    }
}

/// Stores in `*fd` the connection's send socket, for `poll`/`epoll`
/// (`POLLIN`): readable when ring space frees up after `shmsock_try_send`
/// returned `SHMSOCK_WOULD_BLOCK`, or when the peer hung up. It belongs to
/// the connection: never read, write or close it.
///
/// # Safety
/// `fd` is NULL or valid for writing an `int`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_conn_send_fd(
    conn: *mut shmsock_conn,
    fd: *mut i32,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_conn_send_fd",
            conn.addr(),
            Kind::Conn,
            fd,
            |o| match o {
                Obj::Conn(c) => Ok(c.tx.fd()),
                _ => Err(Fail::invalid("not a connection")),
            },
        )
    }
}

/// Stores the peer's credentials (`SO_PEERCRED` at connect time) in `*out`.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_credentials`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_conn_peer_credentials(
    conn: *mut shmsock_conn,
    out: *mut shmsock_credentials,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_conn_peer_credentials",
            conn.addr(),
            Kind::Conn,
            out,
            |o| match o {
                Obj::Conn(c) => Ok(c.tx.peer()),
                _ => Err(Fail::invalid("not a connection")),
            },
        )
    }
}

/// Stores in `*out` the largest message that travels inline (one ring
/// record, zero-copy on both sides; the most `shmsock_reserve` accepts).
/// Larger messages are streamed in fragments.
///
/// # Safety
/// `out` is NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_conn_max_inline(
    conn: *mut shmsock_conn,
    out: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_conn_max_inline",
            conn.addr(),
            Kind::Conn,
            out,
            |o| match o {
                Obj::Conn(c) => Ok(c.tx.max_inline()),
                _ => Err(Fail::invalid("not a connection")),
            },
        )
    }
}
