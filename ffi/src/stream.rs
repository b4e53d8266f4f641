//! `shmsock_writer` and `shmsock_reader`: messages of any size streamed
//! chunk by chunk (the transport's [`MessageWriter`] and [`MessageReader`]).
//!
//! The writer or reader itself borrows its connection's (or half's) sender
//! or receiver, so it lives inside that object as a loan (`endpoint.rs`),
//! exactly as a write grant or a received message does. The handle C holds
//! is a ticket naming the owner's handle and the loan's id: every call
//! looks the owner up through the handle table, so a writer whose
//! connection was freed gives `SHMSOCK_BAD_HANDLE`, never a dangling
//! borrow, and the owner refuses other sends (receives) while the loan is
//! out, with `SHMSOCK_BUSY`.
//!
//! [`MessageWriter`]: shmsock_transport::MessageWriter
//! [`MessageReader`]: shmsock_transport::MessageReader

use std::ffi::c_void;

use crate::conn::{shmsock_conn, with_rx, with_tx};
use crate::endpoint::{shmsock_chunk, Rx, Tx, Wait};
use crate::halves::{shmsock_receiver, shmsock_sender};
use crate::registry::{self, Kind, Obj};
use crate::status::{call, shmsock_status, Fail};
use crate::{bytes_arg, handle, put};

/// A message of any size being written in place, chunk by chunk
/// (`shmsock_write_message`): each chunk is ring space that the receiver
/// consumes while you fill the next, so a message far larger than the ring
/// goes through with no staging buffer and no copy on the sending side.
///
/// Ownership: it borrows the connection or sender that made it, which
/// refuses other sends (`SHMSOCK_BUSY`) until `shmsock_writer_free`;
/// receiving is unaffected. Freeing the connection or sender first ends it
/// (the writer handle then gives `SHMSOCK_BAD_HANDLE`; free it anyway).
///
/// Thread-safety: one thread at a time (`SHMSOCK_BUSY` otherwise), and its
/// calls also hold its connection or sender for their duration. It may move
/// between threads.
#[derive(Debug)]
pub struct shmsock_writer {
    _opaque: [u8; 0],
}

/// A message being read piece by piece (`shmsock_read_message`): each
/// piece is one ring record, copied out and released at once, so memory
/// stays bounded by the ring whatever the message's size, and processing
/// starts before the message's end has arrived.
///
/// Ownership: it borrows the connection or receiver that made it, which
/// refuses other receives (`SHMSOCK_BUSY`) until `shmsock_reader_free`;
/// sending is unaffected. Freeing the connection or receiver first ends it
/// (the reader handle then gives `SHMSOCK_BAD_HANDLE`; free it anyway).
///
/// Thread-safety: as `shmsock_writer`.
#[derive(Debug)]
pub struct shmsock_reader {
    _opaque: [u8; 0],
}

/// What a writer or reader handle names: a loan of its owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    owner: usize,
    owner_kind: Kind,
    id: u64,
}

/// The ticket of writer or reader `h`, with the owner's handle checked
/// while `h` is held: `f` runs on the owner.
fn on_ticket<R>(
    h: usize,
    kind: Kind,
    f: impl FnOnce(Ticket) -> Result<R, Fail>,
) -> Result<R, Fail> {
    registry::with(h, kind, |o| match o {
        Obj::Writer(t) | Obj::Reader(t) => {
            let t = *t;
            f(t).map_err(|e| {
                if e.status == shmsock_status::SHMSOCK_BAD_HANDLE {
                    Fail::new(
                        shmsock_status::SHMSOCK_BAD_HANDLE,
                        format!(
                            "the {} has ended (its connection or half was freed, or it was replaced)",
                            kind.name()
                        ),
                    )
                } else {
                    e
                }
            })
        }
        _ => Err(Fail::invalid("not a writer or reader")),
    })
}

fn on_tx<R>(h: usize, f: impl FnOnce(&mut Tx, u64) -> Result<R, Fail>) -> Result<R, Fail> {
    on_ticket(h, Kind::Writer, |t| {
        with_tx(t.owner, t.owner_kind, |tx| f(tx, t.id))
    })
}

fn on_rx<R>(h: usize, f: impl FnOnce(&mut Rx, u64) -> Result<R, Fail>) -> Result<R, Fail> {
    on_ticket(h, Kind::Reader, |t| {
        with_rx(t.owner, t.owner_kind, |rx| f(rx, t.id))
    })
}

/// Frees writer or reader `h`, ending its loan on the owner first (an owner
/// already freed is fine), in one hold of `h`: if the owner is busy, the
/// ticket and its loan both stay; once the loan is ended, nothing can keep
/// the ticket from being removed.
fn free_ticket(
    h: usize,
    kind: Kind,
    end: impl FnOnce(Ticket) -> Result<(), Fail>,
) -> Result<(), Fail> {
    if h == 0 {
        return Ok(());
    }
    drop(registry::remove_with(h, kind, |o| match o {
        Obj::Writer(t) | Obj::Reader(t) => match end(*t) {
            Err(e) if e.status == shmsock_status::SHMSOCK_BAD_HANDLE => Ok(()),
            r => r,
        },
        _ => Err(Fail::invalid("not a writer or reader")),
    })?);
    Ok(())
}

// --- writer ----------------------------------------------------------------

/// # Safety
/// `out` is NULL or valid for writing a pointer.
unsafe fn write_message_impl(
    func: &'static str,
    owner: usize,
    owner_kind: Kind,
    len: usize,
    out: *mut *mut shmsock_writer,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // The slot before the loan: a full table fails the call before
        // the message is started.
        let slot = registry::reserve()?;
        let h = with_tx(owner, owner_kind, |tx| {
            let id = tx.write_message(len)?;
            let ticket = Ticket {
                owner,
                owner_kind,
                id,
            };
            Ok(slot.fill(Obj::Writer(ticket)))
        })?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, handle(h)) }
    })
}

/// Starts a message of `len` bytes (any size up to the peer's limit) to be
/// written in place: get each chunk with `shmsock_writer_next_chunk`, fill
/// it, `shmsock_writer_commit` it; after the last commit the message is
/// sent. A message that fits one ring record is one chunk; a larger one
/// streams through the ring in fragments. Free the writer with
/// `shmsock_writer_free` (before the last commit, that abandons the
/// message: the receiver never sees it, or its reader gets
/// `SHMSOCK_ABANDONED`).
///
/// Errors: `SHMSOCK_TOO_LARGE` (above the peer's limit),
/// `SHMSOCK_DISCONNECTED`, `SHMSOCK_BUSY` (a grant or writer is
/// outstanding, or another thread is in a call), `SHMSOCK_INVALID_ARGUMENT`
/// (NULL `out`), `SHMSOCK_BAD_HANDLE`, `SHMSOCK_IO` (the handle table is
/// full: no message was started).
///
/// # Safety
/// `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_write_message(
    conn: *mut shmsock_conn,
    len: usize,
    out: *mut *mut shmsock_writer,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { write_message_impl("shmsock_write_message", conn.addr(), Kind::Conn, len, out) }
}

/// As `shmsock_write_message`, on a sender.
///
/// # Safety
/// `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_sender_write_message(
    tx: *mut shmsock_sender,
    len: usize,
    out: *mut *mut shmsock_writer,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        write_message_impl(
            "shmsock_sender_write_message",
            tx.addr(),
            Kind::Sender,
            len,
            out,
        )
    }
}

/// # Safety
/// `out` is NULL or valid for writing a `shmsock_chunk`.
unsafe fn writer_next_impl(
    func: &'static str,
    w: *mut shmsock_writer,
    wait: Wait,
    out: *mut shmsock_chunk,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let c = on_tx(w.addr(), |tx, id| tx.writer_next(id, wait))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, c) }
    })
}

/// Stores in `*out` the next chunk to fill, waiting for ring space per the
/// wait strategy and the default timeout: write `out->len` bytes (the
/// message's bytes from `out->offset`) at `out->data`, then
/// `shmsock_writer_commit`. Returns `SHMSOCK_END` (not an error) once every
/// chunk is committed: the message is sent. Called again before the commit,
/// it returns the same chunk. `out->data` is valid until the commit, or
/// `shmsock_writer_free`. An empty message has one empty chunk.
///
/// Errors: `SHMSOCK_TIMEOUT` (call again), `SHMSOCK_DISCONNECTED`,
/// `SHMSOCK_PROTOCOL`, `SHMSOCK_IO` (after these, free the writer: the
/// message is abandoned), `SHMSOCK_BAD_HANDLE` (freed writer, or its
/// connection was freed), `SHMSOCK_BUSY`, `SHMSOCK_INVALID_ARGUMENT`.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_chunk`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_writer_next_chunk(
    w: *mut shmsock_writer,
    out: *mut shmsock_chunk,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { writer_next_impl("shmsock_writer_next_chunk", w, Wait::Default, out) }
}

/// As `shmsock_writer_next_chunk` with its own timeout in nanoseconds for
/// this call's wait (`SHMSOCK_FOREVER`: none).
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_chunk`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_writer_next_chunk_timeout(
    w: *mut shmsock_writer,
    timeout_ns: u64,
    out: *mut shmsock_chunk,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        writer_next_impl(
            "shmsock_writer_next_chunk_timeout",
            w,
            Wait::ns(timeout_ns),
            out,
        )
    }
}

/// Publishes the chunk from the last `shmsock_writer_next_chunk` (all of
/// it: fill the whole chunk first); the message is sent with its last
/// chunk. The chunk's `data` is invalid afterwards.
///
/// Errors: `SHMSOCK_INVALID_ARGUMENT` (no chunk outstanding),
/// `SHMSOCK_DISCONNECTED` (the wake-up for the peer could not be sent: it
/// is gone), `SHMSOCK_BAD_HANDLE`, `SHMSOCK_BUSY`.
#[no_mangle]
pub extern "C" fn shmsock_writer_commit(w: *mut shmsock_writer) -> shmsock_status {
    call("shmsock_writer_commit", || {
        on_tx(w.addr(), |tx, id| tx.writer_commit(id))
    })
}

/// Copies the whole message (`len` must be the writer's length) through
/// the writer's chunks: the same as filling each chunk from `data` in turn.
/// Any chunk outstanding is given up first. Waits per the default timeout
/// for each chunk.
///
/// Errors: `SHMSOCK_INVALID_ARGUMENT` (`len` is not the message's length,
/// or the message is already complete), and as
/// `shmsock_writer_next_chunk`.
///
/// # Safety
/// `data` is valid for reading `len` bytes (or `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn shmsock_writer_write_all(
    w: *mut shmsock_writer,
    data: *const c_void,
    len: usize,
) -> shmsock_status {
    call("shmsock_writer_write_all", || {
        // SAFETY: forwarded from the caller's contract.
        let data = unsafe { bytes_arg(data, len) }?;
        on_tx(w.addr(), |tx, id| tx.writer_write_all(id, data))
    })
}

/// Stores in `*len` the length of the writer's message and in `*done`
/// (if not NULL) whether every chunk is committed.
///
/// # Safety
/// `len` is NULL or valid for writing a `size_t`; `done` is NULL or valid
/// for writing a `bool`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_writer_len(
    w: *mut shmsock_writer,
    len: *mut usize,
    done: *mut bool,
) -> shmsock_status {
    call("shmsock_writer_len", || {
        if len.is_null() {
            return Err(Fail::null("len"));
        }
        let (n, d) = on_tx(w.addr(), |tx, id| tx.writer_state(id))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(len, n) }?;
        if !done.is_null() {
            // SAFETY: non-null, writable by the caller's contract.
            unsafe { put(done, d) }?;
        }
        Ok(())
    })
}

/// Frees the writer. If its message is not complete it is abandoned: the
/// receiver never sees it (a receiver reading it piece by piece gets
/// `SHMSOCK_ABANDONED`), and the connection stays usable. The connection or
/// sender accepts other sends again. NULL is a no-op returning
/// `SHMSOCK_OK`; a freed handle gives `SHMSOCK_BAD_HANDLE`; `SHMSOCK_BUSY`
/// if another thread is inside a call on the writer or its connection (the
/// writer then stays valid).
#[no_mangle]
pub extern "C" fn shmsock_writer_free(w: *mut shmsock_writer) -> shmsock_status {
    call("shmsock_writer_free", || {
        free_ticket(w.addr(), Kind::Writer, |t| {
            with_tx(t.owner, t.owner_kind, |tx| {
                tx.writer_end(t.id);
                Ok(())
            })
        })
    })
}

// --- reader ----------------------------------------------------------------

/// # Safety
/// `out` is NULL or valid for writing a pointer; `len` is NULL or valid for
/// writing a `size_t`.
unsafe fn read_message_impl(
    func: &'static str,
    owner: usize,
    owner_kind: Kind,
    wait: Wait,
    out: *mut *mut shmsock_reader,
    len: *mut usize,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        // The slot before the message: with the table full, the reader
        // taken out of the ring used to be ended at once, which discarded
        // the message; now the call fails and the message stays queued.
        let slot = registry::reserve()?;
        let (h, n) = with_rx(owner, owner_kind, |rx| {
            let (id, n) = rx.read_message(wait)?;
            let ticket = Ticket {
                owner,
                owner_kind,
                id,
            };
            Ok((slot.fill(Obj::Reader(ticket)), n))
        })?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, handle(h)) }?;
        if !len.is_null() {
            // SAFETY: non-null, writable by the caller's contract.
            unsafe { put(len, n) }?;
        }
        Ok(())
    })
}

/// Waits (per the wait strategy and the default timeout) for the start of
/// the next message and starts reading it piece by piece: stores a reader
/// in `*out` and, if `len` is not NULL, the message's length (as its
/// sender announced it, at most this side's `max_message`) in `*len`. Read
/// the pieces with `shmsock_reader_next_chunk`; free the reader with
/// `shmsock_reader_free` (before the end, that skips the rest).
///
/// Errors: as `shmsock_recv` (`SHMSOCK_DISCONNECTED`, `SHMSOCK_TIMEOUT`,
/// `SHMSOCK_PROTOCOL`, `SHMSOCK_BUSY` if a message or reader is
/// outstanding, ...); `SHMSOCK_IO` if the handle table is full (checked
/// first: the message stays queued for the next call).
///
/// # Safety
/// `out` is NULL or valid for writing a pointer; `len` is NULL or valid for
/// writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_read_message(
    conn: *mut shmsock_conn,
    out: *mut *mut shmsock_reader,
    len: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        read_message_impl(
            "shmsock_read_message",
            conn.addr(),
            Kind::Conn,
            Wait::Default,
            out,
            len,
        )
    }
}

/// As `shmsock_read_message` with its own timeout in nanoseconds for the
/// wait for the message's start (`SHMSOCK_FOREVER`: none).
///
/// # Safety
/// As `shmsock_read_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_read_message_timeout(
    conn: *mut shmsock_conn,
    timeout_ns: u64,
    out: *mut *mut shmsock_reader,
    len: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        read_message_impl(
            "shmsock_read_message_timeout",
            conn.addr(),
            Kind::Conn,
            Wait::ns(timeout_ns),
            out,
            len,
        )
    }
}

/// As `shmsock_read_message`, on a receiver.
///
/// # Safety
/// As `shmsock_read_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_read_message(
    rx: *mut shmsock_receiver,
    out: *mut *mut shmsock_reader,
    len: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        read_message_impl(
            "shmsock_receiver_read_message",
            rx.addr(),
            Kind::Receiver,
            Wait::Default,
            out,
            len,
        )
    }
}

/// As `shmsock_read_message_timeout`, on a receiver.
///
/// # Safety
/// As `shmsock_read_message`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_receiver_read_message_timeout(
    rx: *mut shmsock_receiver,
    timeout_ns: u64,
    out: *mut *mut shmsock_reader,
    len: *mut usize,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        read_message_impl(
            "shmsock_receiver_read_message_timeout",
            rx.addr(),
            Kind::Receiver,
            Wait::ns(timeout_ns),
            out,
            len,
        )
    }
}

/// # Safety
/// `out` is NULL or valid for writing a `shmsock_chunk`.
unsafe fn reader_next_impl(
    func: &'static str,
    r: *mut shmsock_reader,
    wait: Wait,
    out: *mut shmsock_chunk,
) -> shmsock_status {
    call(func, || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let c = on_rx(r.addr(), |rx, id| rx.reader_next(id, wait))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, c) }
    })
}

/// Stores in `*out` the next piece of the message (the message's bytes
/// from `out->offset`, `out->len` of them at `out->data`, valid until the
/// next call on the reader or its `_free`), waiting for it per the wait
/// strategy and the default timeout. Returns `SHMSOCK_END` (not an error)
/// once the whole message has been returned.
///
/// Errors: `SHMSOCK_ABANDONED` (the sender gave the message up midway: the
/// pieces already read are all there is; the connection is fine, free the
/// reader and read on), `SHMSOCK_TIMEOUT` (call again to continue),
/// `SHMSOCK_DISCONNECTED`, `SHMSOCK_PROTOCOL`, `SHMSOCK_BAD_HANDLE` (freed
/// reader, or its connection was freed), `SHMSOCK_BUSY`,
/// `SHMSOCK_INVALID_ARGUMENT`. After any of these but a timeout, further
/// calls return the same status.
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_chunk`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_reader_next_chunk(
    r: *mut shmsock_reader,
    out: *mut shmsock_chunk,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe { reader_next_impl("shmsock_reader_next_chunk", r, Wait::Default, out) }
}

/// As `shmsock_reader_next_chunk` with its own timeout in nanoseconds
/// (`SHMSOCK_FOREVER`: none).
///
/// # Safety
/// `out` is NULL or valid for writing a `shmsock_chunk`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_reader_next_chunk_timeout(
    r: *mut shmsock_reader,
    timeout_ns: u64,
    out: *mut shmsock_chunk,
) -> shmsock_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        reader_next_impl(
            "shmsock_reader_next_chunk_timeout",
            r,
            Wait::ns(timeout_ns),
            out,
        )
    }
}

/// Stores in `*len` the message's length and in `*remaining` (if not NULL)
/// the bytes not yet returned by `shmsock_reader_next_chunk`.
///
/// # Safety
/// `len` is NULL or valid for writing a `size_t`; `remaining` is NULL or
/// valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shmsock_reader_len(
    r: *mut shmsock_reader,
    len: *mut usize,
    remaining: *mut usize,
) -> shmsock_status {
    call("shmsock_reader_len", || {
        if len.is_null() {
            return Err(Fail::null("len"));
        }
        let (n, left) = on_rx(r.addr(), |rx, id| rx.reader_state(id))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(len, n) }?;
        if !remaining.is_null() {
            // SAFETY: non-null, writable by the caller's contract.
            unsafe { put(remaining, left) }?;
        }
        Ok(())
    })
}

/// Frees the reader; the rest of an unfinished message is skipped (the
/// next receive returns the next message). The connection or receiver
/// accepts other receives again. NULL is a no-op returning `SHMSOCK_OK`; a
/// freed handle gives `SHMSOCK_BAD_HANDLE`; `SHMSOCK_BUSY` if another
/// thread is inside a call on the reader or its connection (the reader then
/// stays valid).
#[no_mangle]
pub extern "C" fn shmsock_reader_free(r: *mut shmsock_reader) -> shmsock_status {
    call("shmsock_reader_free", || {
        free_ticket(r.addr(), Kind::Reader, |t| {
            with_rx(t.owner, t.owner_kind, |rx| {
                rx.reader_end(t.id);
                Ok(())
            })
        })
    })
}
