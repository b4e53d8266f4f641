//! `shmsock_sender` and `shmsock_receiver`: the halves of a split
//! connection. Each function behaves as its `shmsock_conn` counterpart
//! (the bodies are shared, in `conn.rs`).

use std::ffi::c_void;

use crate::conn::{commit_impl, get_impl, recv_impl, release_impl, reserve_impl, send_impl};
use crate::endpoint::{shmsock_credentials, shmsock_grant, shmsock_message, Wait};
use crate::registry::{self, Kind, Obj};
use crate::status::{call, shmsock_status, Fail};

/// The sending half of a split connection (`shmsock_conn_split`).
///
/// Thread-safety: one thread at a time (`SHMSOCK_BUSY` otherwise, except
/// `shmsock_sender_shutdown`, callable from any thread at any time); it may
/// be used concurrently with its `shmsock_receiver` on another thread, and
/// may move between threads.
#[derive(Debug)]
pub struct shmsock_sender {
    _opaque: [u8; 0],
}

/// The receiving half of a split connection (`shmsock_conn_split`).
///
/// Thread-safety: one thread at a time (`SHMSOCK_BUSY` otherwise, except
/// `shmsock_receiver_shutdown`, callable from any thread at any time); it may
/// be used concurrently with its `shmsock_sender` on another thread, and
/// may move between threads.
#[derive(Debug)]
pub struct shmsock_receiver {
    _opaque: [u8; 0],
}

/// As `shmsock_send`, on a sender.
///
/// # Safety
/// `data` is valid for reading `len` bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_send(
    tx: *mut shmsock_sender,
    data: *const c_void,
    len: usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_impl(
            "shmsock_sender_send",
            tx.addr(),
            Kind::Sender,
            data,
            len,
            Wait::Default,
        )
    }
}

/// As `shmsock_send_timeout`, on a sender.
///
/// # Safety
/// `data` is valid for reading `len` bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_send_timeout(
    tx: *mut shmsock_sender,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_impl(
            "shmsock_sender_send_timeout",
            tx.addr(),
            Kind::Sender,
            data,
            len,
            Wait::ns(timeout_ns),
        )
    }
}

/// As `shmsock_try_send`, on a sender (poll `shmsock_sender_fd` after
/// `SHMSOCK_WOULD_BLOCK`).
///
/// # Safety
/// `data` is valid for reading `len` bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_try_send(
    tx: *mut shmsock_sender,
    data: *const c_void,
    len: usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        send_impl(
            "shmsock_sender_try_send",
            tx.addr(),
            Kind::Sender,
            data,
            len,
            Wait::Now,
        )
    }
}

/// As `shmsock_reserve`, on a sender.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_reserve(
    tx: *mut shmsock_sender,
    len: usize,
    out: *mut shmsock_grant,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        reserve_impl(
            "shmsock_sender_reserve",
            tx.addr(),
            Kind::Sender,
            len,
            Wait::Default,
            out,
        )
    }
}

/// As `shmsock_reserve_timeout`, on a sender.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_reserve_timeout(
    tx: *mut shmsock_sender,
    len: usize,
    timeout_ns: u64,
    out: *mut shmsock_grant,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        reserve_impl(
            "shmsock_sender_reserve_timeout",
            tx.addr(),
            Kind::Sender,
            len,
            Wait::ns(timeout_ns),
            out,
        )
    }
}

/// As `shmsock_commit`, on a sender.
///
/// # Safety
/// `grant` is NULL or valid for reading and writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_commit(
    tx: *mut shmsock_sender,
    grant: *mut shmsock_grant,
    len: usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        commit_impl(
            "shmsock_sender_commit",
            tx.addr(),
            Kind::Sender,
            grant,
            len,
            true,
        )
    }
}

/// As `shmsock_abort`, on a sender.
///
/// # Safety
/// `grant` is NULL or valid for reading and writing a `shmsock_grant`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_abort(
    tx: *mut shmsock_sender,
    grant: *mut shmsock_grant,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        commit_impl(
            "shmsock_sender_abort",
            tx.addr(),
            Kind::Sender,
            grant,
            0,
            false,
        )
    }
}

/// As `shmsock_conn_send_fd`: the socket to poll (`POLLIN`) for ring space
/// after `shmsock_sender_try_send` returned `SHMSOCK_WOULD_BLOCK`, and for
/// the peer's hang-up. Owned by the sender.
///
/// # Safety
/// `fd` is NULL or valid for writing an `int`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_fd(
    tx: *mut shmsock_sender,
    fd: *mut i32,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_sender_fd",
            tx.addr(),
            Kind::Sender,
            fd,
            |o| match o {
                Obj::Sender(t) => Ok(t.fd()),
                _ => Err(Fail::invalid("not a sender")),
            },
        )
    }
}

/// As `shmsock_conn_peer_credentials`, on a sender.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_credentials`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_peer_credentials(
    tx: *mut shmsock_sender,
    out: *mut shmsock_credentials,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_sender_peer_credentials",
            tx.addr(),
            Kind::Sender,
            out,
            |o| match o {
                Obj::Sender(t) => Ok(t.peer()),
                _ => Err(Fail::invalid("not a sender")),
            },
        )
    }
}

/// As `shmsock_conn_max_inline`, on a sender.
///
/// # Safety
/// `out` is NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_max_inline(
    tx: *mut shmsock_sender,
    out: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_sender_max_inline",
            tx.addr(),
            Kind::Sender,
            out,
            |o| match o {
                Obj::Sender(t) => Ok(t.max_inline()),
                _ => Err(Fail::invalid("not a sender")),
            },
        )
    }
}

/// Closes the sending direction: the peer receives what was sent, then
/// `SHMSOCK_DISCONNECTED`. An outstanding grant is aborted. NULL is a no-op
/// returning `SHMSOCK_OK`; a freed handle gives `SHMSOCK_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn shmsock_sender_free(tx: *mut shmsock_sender) -> shmsock_status {
    call("shmsock_sender_free", || {
        if tx.is_null() {
            return Ok(());
        }
        drop(registry::remove(tx.addr(), Kind::Sender)?);
        Ok(())
    })
}

/// As `shmsock_recv`, on a receiver.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_recv(
    rx: *mut shmsock_receiver,
    out: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_impl(
            "shmsock_receiver_recv",
            rx.addr(),
            Kind::Receiver,
            Wait::Default,
            out,
        )
    }
}

/// As `shmsock_recv_timeout`, on a receiver.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_recv_timeout(
    rx: *mut shmsock_receiver,
    timeout_ns: u64,
    out: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_impl(
            "shmsock_receiver_recv_timeout",
            rx.addr(),
            Kind::Receiver,
            Wait::ns(timeout_ns),
            out,
        )
    }
}

/// As `shmsock_try_recv`, on a receiver (poll `shmsock_receiver_fd` after
/// `SHMSOCK_WOULD_BLOCK`).
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_try_recv(
    rx: *mut shmsock_receiver,
    out: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        recv_impl(
            "shmsock_receiver_try_recv",
            rx.addr(),
            Kind::Receiver,
            Wait::Now,
            out,
        )
    }
}

/// As `shmsock_release`, on a receiver.
///
/// # Safety
/// `msg` is NULL or valid for reading and writing a `shmsock_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_release(
    rx: *mut shmsock_receiver,
    msg: *mut shmsock_message,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { release_impl("shmsock_receiver_release", rx.addr(), Kind::Receiver, msg) }
}

/// As `shmsock_conn_recv_fd`: the socket to poll (`POLLIN`) after
/// `shmsock_receiver_try_recv` returned `SHMSOCK_WOULD_BLOCK`. Owned by the
/// receiver.
///
/// # Safety
/// `fd` is NULL or valid for writing an `int`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_fd(
    rx: *mut shmsock_receiver,
    fd: *mut i32,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_receiver_fd",
            rx.addr(),
            Kind::Receiver,
            fd,
            |o| match o {
                Obj::Receiver(r) => Ok(r.fd()),
                _ => Err(Fail::invalid("not a receiver")),
            },
        )
    }
}

/// As `shmsock_conn_peer_credentials`, on a receiver.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_credentials`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_peer_credentials(
    rx: *mut shmsock_receiver,
    out: *mut shmsock_credentials,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        get_impl(
            "shmsock_receiver_peer_credentials",
            rx.addr(),
            Kind::Receiver,
            out,
            |o| match o {
                Obj::Receiver(r) => Ok(r.peer()),
                _ => Err(Fail::invalid("not a receiver")),
            },
        )
    }
}

/// Closes the receiving direction (an outstanding message is released; its
/// `data` pointer dies with it). NULL is a no-op returning `SHMSOCK_OK`; a
/// freed handle gives `SHMSOCK_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn shmsock_receiver_free(rx: *mut shmsock_receiver) -> shmsock_status {
    call("shmsock_receiver_free", || {
        if rx.is_null() {
            return Ok(());
        }
        drop(registry::remove(rx.addr(), Kind::Receiver)?);
        Ok(())
    })
}
