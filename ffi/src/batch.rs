//! Batches: many small messages published with one cursor store and at
//! most one wake-up (`shmsock_send_batch`), or received with one release
//! (`shmsock_recv_batch`): the transport's `Sender::send_batch` and
//! `Receiver::recv_batch`.

use std::ffi::c_void;

use crate::conn::{shmsock_conn, with_rx, with_tx};
use crate::endpoint::Wait;
use crate::halves::{shmsock_receiver, shmsock_sender};
use crate::registry::Kind;
use crate::status::{call, shmsock_status, Fail};
use crate::{bytes_arg, put};

/// One message of a batch to send: `len` bytes at `data` (NULL allowed
/// when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(non_camel_case_types)] // C naming
pub struct shmsock_buf {
    /// First byte of the message.
    pub data: *const c_void,
    /// Its length.
    pub len: usize,
}

/// Called by `shmsock_recv_batch` on each message, in order: `len` bytes
/// at `data`, a copy in this process's memory valid only during the call.
/// `ctx` is the caller's pointer, passed through. The callback must return
/// normally (no `longjmp`, no C++ exception) and must not call shmsock on
/// the same connection or receiver (that gives `SHMSOCK_BUSY`).
pub type shmsock_batch_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, data: *const u8, len: usize)>;

/// # Safety
/// As `shmsock_send_batch`.
unsafe fn send_batch_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    msgs: *const shmsock_buf,
    count: usize,
    wait: Wait,
    sent: *mut usize,
) -> shmsock_status {
    call(func, || {
        if sent.is_null() {
            return Err(Fail::null("sent"));
        }
        if count > 0 && msgs.is_null() {
            return Err(Fail::null("msgs (with count > 0)"));
        }
        if count > isize::MAX as usize / size_of::<shmsock_buf>() {
            return Err(Fail::invalid("count is too large"));
        }
        let bufs: &[shmsock_buf] = if count == 0 {
            &[]
        } else {
            // SAFETY: non-null, `count` elements readable by the caller's
            // contract, and the byte size fits `isize` (checked above).
            unsafe { std::slice::from_raw_parts(msgs, count) }
        };
        let slices = bufs
            .iter()
            // SAFETY: each buffer is readable for its `len` bytes by the
            // caller's contract.
            .map(|b| unsafe { bytes_arg(b.data, b.len) })
            .collect::<Result<Vec<&[u8]>, Fail>>()?;
        let n = with_tx(h, kind, |tx| tx.send_batch(&slices, wait))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(sent, n) }
    })
}

/// Sends the `count` messages of `msgs` in order, publishing them to the
/// peer together (one cursor store, at most one wake-up): for a stream of
/// small messages this costs a fraction of one `shmsock_send` each. When
/// the ring fills, what is written so far is published and the call waits
/// for space (per the default timeout, which bounds all its waiting);
/// messages larger than `shmsock_conn_max_inline` are streamed as
/// `shmsock_send` does. Stores in `*sent` how many were sent, from the
/// first: `count`, or fewer if an error (a timeout, the peer's departure)
/// came after at least one was sent (then the call returns `SHMSOCK_OK`,
/// as `write(2)` returns a short count; the next call reports a lasting
/// error). Send the rest with `msgs + *sent`.
///
/// Errors (nothing was sent): as `shmsock_send`; `SHMSOCK_TOO_LARGE` if
/// any message is above the peer's limit; `SHMSOCK_INVALID_ARGUMENT` for
/// NULL `sent`, or NULL `msgs` with `count > 0`.
///
/// # Safety
/// `msgs` is valid for reading `count` `shmsock_buf`s (or `count` is 0),
/// each valid for reading its `len` bytes; `sent` is NULL or valid for
/// writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_send_batch(
    conn: *mut shmsock_conn,
    msgs: *const shmsock_buf,
    count: usize,
    sent: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_batch_impl(
            "shmsock_send_batch",
            conn.addr(),
            Kind::Conn,
            msgs,
            count,
            Wait::Default,
            sent,
        )
    }
}

/// As `shmsock_send_batch` with its own timeout in nanoseconds for all the
/// call's waiting (`SHMSOCK_FOREVER`: none).
///
/// # Safety
/// As `shmsock_send_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_send_batch_timeout(
    conn: *mut shmsock_conn,
    msgs: *const shmsock_buf,
    count: usize,
    timeout_ns: u64,
    sent: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_batch_impl(
            "shmsock_send_batch_timeout",
            conn.addr(),
            Kind::Conn,
            msgs,
            count,
            Wait::ns(timeout_ns),
            sent,
        )
    }
}

/// As `shmsock_send_batch`, on a sender.
///
/// # Safety
/// As `shmsock_send_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_send_batch(
    tx: *mut shmsock_sender,
    msgs: *const shmsock_buf,
    count: usize,
    sent: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_batch_impl(
            "shmsock_sender_send_batch",
            tx.addr(),
            Kind::Sender,
            msgs,
            count,
            Wait::Default,
            sent,
        )
    }
}

/// As `shmsock_send_batch_timeout`, on a sender.
///
/// # Safety
/// As `shmsock_send_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_send_batch_timeout(
    tx: *mut shmsock_sender,
    msgs: *const shmsock_buf,
    count: usize,
    timeout_ns: u64,
    sent: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_batch_impl(
            "shmsock_sender_send_batch_timeout",
            tx.addr(),
            Kind::Sender,
            msgs,
            count,
            Wait::ns(timeout_ns),
            sent,
        )
    }
}

/// # Safety
/// As `shmsock_recv_batch`.
#[allow(clippy::too_many_arguments)] // the C call's five plus its name, handle kind and wait
unsafe fn recv_batch_impl(
    func: &'static str,
    h: usize,
    kind: Kind,
    max: usize,
    wait: Wait,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    call(func, || {
        let Some(f) = f else {
            return Err(Fail::null("f"));
        };
        if received.is_null() {
            return Err(Fail::null("received"));
        }
        if max == 0 {
            return Err(Fail::invalid("max is 0"));
        }
        let n = with_rx(h, kind, |rx| {
            rx.recv_batch(max, wait, |m| {
                // SAFETY: `f` is a valid function by the caller's contract;
                // `m` is readable for its length during the call.
                unsafe { f(ctx, m.as_ptr(), m.len()) }
            })
        })?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(received, n) }
    })
}

/// Receives up to `max` messages (at least 1) with one release of their
/// ring space (one cursor store, at most one wake-up for the sender),
/// calling `f(ctx, data, len)` on each in order. Waits per the wait
/// strategy and the default timeout until one message is ready, then takes
/// those that are ready without waiting again. Stores in `*received` how
/// many `f` was given. Keep `max` modest (tens to hundreds): the sender
/// gets the space back only when the call returns. A message larger than
/// one ring record ends the batch; the next call returns it, alone.
///
/// Errors: as `shmsock_recv` (when no message was given to `f`; an error
/// after the first ends the batch, and the next call returns it if it
/// lasts); `SHMSOCK_INVALID_ARGUMENT` for NULL `f` or `received`, or `max`
/// 0; `SHMSOCK_BUSY` if a message or reader is outstanding.
///
/// # Safety
/// `f` is NULL or a function that returns normally (see
/// `shmsock_batch_fn`); `received` is NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_recv_batch(
    conn: *mut shmsock_conn,
    max: usize,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_batch_impl(
            "shmsock_recv_batch",
            conn.addr(),
            Kind::Conn,
            max,
            Wait::Default,
            f,
            ctx,
            received,
        )
    }
}

/// As `shmsock_recv_batch` with its own timeout in nanoseconds for the
/// first message (`SHMSOCK_FOREVER`: none).
///
/// # Safety
/// As `shmsock_recv_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_recv_batch_timeout(
    conn: *mut shmsock_conn,
    max: usize,
    timeout_ns: u64,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_batch_impl(
            "shmsock_recv_batch_timeout",
            conn.addr(),
            Kind::Conn,
            max,
            Wait::ns(timeout_ns),
            f,
            ctx,
            received,
        )
    }
}

/// As `shmsock_recv_batch` without waiting: `SHMSOCK_WOULD_BLOCK` if no
/// message is ready (then poll `shmsock_conn_recv_fd` and call again).
///
/// # Safety
/// As `shmsock_recv_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_try_recv_batch(
    conn: *mut shmsock_conn,
    max: usize,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_batch_impl(
            "shmsock_try_recv_batch",
            conn.addr(),
            Kind::Conn,
            max,
            Wait::Now,
            f,
            ctx,
            received,
        )
    }
}

/// As `shmsock_recv_batch`, on a receiver.
///
/// # Safety
/// As `shmsock_recv_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_recv_batch(
    rx: *mut shmsock_receiver,
    max: usize,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_batch_impl(
            "shmsock_receiver_recv_batch",
            rx.addr(),
            Kind::Receiver,
            max,
            Wait::Default,
            f,
            ctx,
            received,
        )
    }
}

/// As `shmsock_recv_batch_timeout`, on a receiver.
///
/// # Safety
/// As `shmsock_recv_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_recv_batch_timeout(
    rx: *mut shmsock_receiver,
    max: usize,
    timeout_ns: u64,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_batch_impl(
            "shmsock_receiver_recv_batch_timeout",
            rx.addr(),
            Kind::Receiver,
            max,
            Wait::ns(timeout_ns),
            f,
            ctx,
            received,
        )
    }
}

/// As `shmsock_try_recv_batch`, on a receiver.
///
/// # Safety
/// As `shmsock_recv_batch`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_try_recv_batch(
    rx: *mut shmsock_receiver,
    max: usize,
    f: shmsock_batch_fn,
    ctx: *mut c_void,
    received: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_batch_impl(
            "shmsock_receiver_try_recv_batch",
            rx.addr(),
            Kind::Receiver,
            max,
            Wait::Now,
            f,
            ctx,
            received,
        )
    }
}
