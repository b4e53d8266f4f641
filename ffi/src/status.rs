//! The error model: a status code per call, `errno` where the operating
//! system gave one, and a thread-local message; every entry point runs
//! inside [`call`], which turns a panic into [`shmsock_status::SHMSOCK_PANIC`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use shmsock_transport::Error;

/// Result of every shmsock call. `SHMSOCK_OK` is 0; the other values are
/// stable (new ones may be added, existing ones never change meaning).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // C naming: this is the header's `shmsock_status`
pub enum shmsock_status {
    /// Success.
    SHMSOCK_OK = 0,
    /// A `try_` call found nothing to do now (no message, no ring space, no
    /// finished handshake). Not an error: poll the handle's fd and retry.
    /// Sets no message.
    SHMSOCK_WOULD_BLOCK = 1,
    /// The call's timeout expired.
    SHMSOCK_TIMEOUT = 2,
    /// The peer closed the connection or died (what `EPIPE`/`ECONNRESET`
    /// and a zero-length `recv` mean on a socket). Everything it sent before
    /// was delivered first. The handle stays valid; only `_free` is useful.
    SHMSOCK_DISCONNECTED = 3,
    /// A NULL pointer where one is not allowed, an unknown enum value, a
    /// length out of range, or an invalid option combination.
    SHMSOCK_INVALID_ARGUMENT = 4,
    /// The handle is not a live handle of the expected type: already freed,
    /// or never returned by shmsock (see `docs/c-api.md` for what is and is
    /// not detected).
    SHMSOCK_BAD_HANDLE = 5,
    /// The handle is in use: another thread is inside a call on it, or a
    /// message or write grant it lent is still outstanding (release, commit
    /// or abort it first).
    SHMSOCK_BUSY = 6,
    /// The message exceeds what the peer accepts, or what `reserve` can
    /// place in the ring (see `shmsock_conn_max_inline`).
    SHMSOCK_TOO_LARGE = 7,
    /// The peer broke the protocol (wrote invalid values into shared memory,
    /// sent a malformed control message). Drop the connection.
    SHMSOCK_PROTOCOL = 8,
    /// The handshake failed: protocol version mismatch, or the peer
    /// rejected us.
    SHMSOCK_HANDSHAKE = 9,
    /// The peer's credentials are refused by the configured policy.
    SHMSOCK_CREDENTIALS = 10,
    /// A system call failed: `errno` (and `shmsock_last_errno`) tell which.
    SHMSOCK_IO = 11,
    /// A bug in shmsock: a Rust panic was caught at the boundary. The
    /// handle involved may be in an unspecified (but memory-safe) state.
    SHMSOCK_PANIC = 12,
    /// The sender gave up the message being read piece by piece
    /// (`shmsock_reader_next_chunk`) before its end: its send timed out, or
    /// it freed its `shmsock_writer` unfinished. The pieces already read are
    /// all there is of it; the connection is fine (free the reader and read
    /// the next message).
    SHMSOCK_ABANDONED = 13,
    /// A message stream has no more chunks: the writer's message is fully
    /// committed (sent), or the reader's message fully read. Not an error
    /// (the `EOF` of a stream); sets no message.
    SHMSOCK_END = 14,
}

use shmsock_status::*;

/// A failed call: status, `errno` (0: none) and message.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: shmsock_status,
    pub(crate) errno: i32,
    pub(crate) msg: Cow<'static, str>,
}

impl Fail {
    pub(crate) fn new(status: shmsock_status, msg: impl Into<Cow<'static, str>>) -> Self {
        Fail {
            status,
            errno: 0,
            msg: msg.into(),
        }
    }

    pub(crate) fn invalid(msg: impl Into<Cow<'static, str>>) -> Self {
        Fail::new(SHMSOCK_INVALID_ARGUMENT, msg)
    }

    pub(crate) fn busy(msg: &'static str) -> Self {
        Fail::new(SHMSOCK_BUSY, msg)
    }

    pub(crate) fn would_block() -> Self {
        Fail::new(SHMSOCK_WOULD_BLOCK, "")
    }

    pub(crate) fn end() -> Self {
        Fail::new(SHMSOCK_END, "")
    }

    pub(crate) fn null(what: &'static str) -> Self {
        Fail::invalid(format!("{what} is NULL"))
    }
}

/// The first `io::Error` in `e`'s source chain.
fn os_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Disconnected => SHMSOCK_DISCONNECTED,
            Error::Timeout => SHMSOCK_TIMEOUT,
            Error::Abandoned => SHMSOCK_ABANDONED,
            Error::Protocol { .. } => SHMSOCK_PROTOCOL,
            Error::VersionMismatch { .. } | Error::Rejected(_) => SHMSOCK_HANDSHAKE,
            Error::CredentialsRefused { .. } => SHMSOCK_CREDENTIALS,
            Error::MessageTooLarge { .. } => SHMSOCK_TOO_LARGE,
            Error::Config(_) => SHMSOCK_INVALID_ARGUMENT,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock => {
                return Fail::would_block()
            }
            Error::Io { .. } | Error::Shm(_) => SHMSOCK_IO,
            // `Error` is non-exhaustive: a future kind is reported as I/O
            // with its message rather than lost.
            _ => SHMSOCK_IO,
        };
        let errno = os_error(&e).map_or(0, errno_of);
        let msg = match status {
            SHMSOCK_DISCONNECTED => Cow::Borrowed("peer disconnected"),
            SHMSOCK_TIMEOUT => Cow::Borrowed("timed out"),
            _ => Cow::Owned(e.to_string()),
        };
        Fail { status, errno, msg }
    }
}

/// The errno of an I/O error: its raw OS error, else the usual errno of
/// its kind (an error built from an `ErrorKind` has no raw value).
fn errno_of(io: &std::io::Error) -> i32 {
    use std::io::ErrorKind as K;
    if let Some(e) = io.raw_os_error() {
        return e;
    }
    match io.kind() {
        K::NotFound => libc::ENOENT,
        K::PermissionDenied => libc::EACCES,
        K::ConnectionRefused => libc::ECONNREFUSED,
        K::ConnectionReset => libc::ECONNRESET,
        K::BrokenPipe => libc::EPIPE,
        K::AddrInUse => libc::EADDRINUSE,
        K::AddrNotAvailable => libc::EADDRNOTAVAIL,
        K::WouldBlock => libc::EAGAIN,
        K::InvalidInput => libc::EINVAL,
        K::TimedOut => libc::ETIMEDOUT,
        K::Interrupted => libc::EINTR,
        K::OutOfMemory => libc::ENOMEM,
        K::Unsupported => libc::EOPNOTSUPP,
        _ => libc::EIO,
    }
}

thread_local! {
    static LAST: RefCell<Last> = const { RefCell::new(Last { msg: None, errno: 0 }) };
}

struct Last {
    msg: Option<CString>,
    errno: i32,
}

/// Records `fail` as this thread's last error (prefixed with the function
/// name), sets `errno` if the failure has one, and returns its status.
fn report(func: &'static str, fail: Fail) -> shmsock_status {
    if matches!(fail.status, SHMSOCK_WOULD_BLOCK | SHMSOCK_END) {
        return fail.status;
    }
    let text = format!("{func}: {}", fail.msg).replace('\0', "\\0");
    let msg = CString::new(text).ok();
    // `try_with`: during thread teardown the slot may be gone; the status
    // still reaches the caller.
    let _ = LAST.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.msg = msg;
            l.errno = fail.errno;
        }
    });
    if fail.errno != 0 {
        set_errno(fail.errno);
    }
    fail.status
}

fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns the calling thread's errno
    // slot, valid for the thread's lifetime.
    unsafe { *libc::__errno_location() = e };
}

/// Runs one entry point: catches panics, records failures. The reporting
/// itself (formatting, the thread-local) runs under a second
/// `catch_unwind`, so not even a panic there crosses into C.
pub(crate) fn call(func: &'static str, f: impl FnOnce() -> Result<(), Fail>) -> shmsock_status {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    catch_unwind(AssertUnwindSafe(|| match outcome {
        Ok(Ok(())) => SHMSOCK_OK,
        Ok(Err(fail)) => report(func, fail),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown payload".to_owned());
            drop(payload);
            report(
                func,
                Fail::new(SHMSOCK_PANIC, format!("internal panic: {what}")),
            )
        }
    }))
    .unwrap_or(SHMSOCK_PANIC)
}

/// Message of the most recent failed shmsock call on the calling thread
/// (`"function: what happened"`), or NULL if none failed yet. Successful
/// calls, `SHMSOCK_WOULD_BLOCK` and `SHMSOCK_END` leave it unchanged. The string is owned by
/// shmsock and stays valid until the next failing shmsock call on this
/// thread. Thread-safe.
#[no_mangle]
pub extern "C" fn shmsock_last_error() -> *const c_char {
    catch_unwind(|| {
        LAST.try_with(|l| match l.try_borrow() {
            Ok(l) => l.msg.as_ref().map_or(std::ptr::null(), |m| m.as_ptr()),
            Err(_) => std::ptr::null(),
        })
        .unwrap_or(std::ptr::null())
    })
    .unwrap_or(std::ptr::null())
}

/// The `errno` of the most recent failed shmsock call on the calling thread,
/// or 0 if it had none (a failure that is not a system call's, such as
/// `SHMSOCK_TIMEOUT`). A failing call that has one also stores it in `errno`
/// itself. Thread-safe.
#[no_mangle]
pub extern "C" fn shmsock_last_errno() -> i32 {
    catch_unwind(|| {
        LAST.try_with(|l| l.try_borrow().map_or(0, |l| l.errno))
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

/// A static, human-readable name for `status` ("SHMSOCK_TIMEOUT", ...);
/// "SHMSOCK_UNKNOWN" for a value this library does not define. Never NULL.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn shmsock_status_str(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"SHMSOCK_OK\0",
        1 => b"SHMSOCK_WOULD_BLOCK\0",
        2 => b"SHMSOCK_TIMEOUT\0",
        3 => b"SHMSOCK_DISCONNECTED\0",
        4 => b"SHMSOCK_INVALID_ARGUMENT\0",
        5 => b"SHMSOCK_BAD_HANDLE\0",
        6 => b"SHMSOCK_BUSY\0",
        7 => b"SHMSOCK_TOO_LARGE\0",
        8 => b"SHMSOCK_PROTOCOL\0",
        9 => b"SHMSOCK_HANDSHAKE\0",
        10 => b"SHMSOCK_CREDENTIALS\0",
        11 => b"SHMSOCK_IO\0",
        12 => b"SHMSOCK_PANIC\0",
        13 => b"SHMSOCK_ABANDONED\0",
        14 => b"SHMSOCK_END\0",
        _ => b"SHMSOCK_UNKNOWN\0",
    };
    s.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        let p = shmsock_last_error();
        assert!(!p.is_null());
        // SAFETY: non-null pointers from shmsock_last_error are valid C
        // strings until the next failing call on this thread.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status() {
        let st = call("shmsock_test", || panic!("boom"));
        assert_eq!(st, SHMSOCK_PANIC);
        assert_eq!(last(), "shmsock_test: internal panic: boom");
        let st = call("shmsock_test", || panic!("{}", String::from("owned")));
        assert_eq!(st, SHMSOCK_PANIC);
        assert!(last().ends_with("owned"));
    }

    #[test]
    fn a_payload_that_panics_when_dropped_is_caught_too() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("bomb");
            }
        }
        let st = call("shmsock_test", || std::panic::panic_any(Bomb));
        assert_eq!(st, SHMSOCK_PANIC);
    }

    #[test]
    fn would_block_sets_no_message_and_success_keeps_the_last() {
        let st = call("first", || Err(Fail::invalid("bad")));
        assert_eq!(st, SHMSOCK_INVALID_ARGUMENT);
        assert_eq!(
            call("second", || Err(Fail::would_block())),
            SHMSOCK_WOULD_BLOCK
        );
        assert_eq!(call("third", || Err(Fail::end())), SHMSOCK_END);
        assert_eq!(call("fourth", || Ok(())), SHMSOCK_OK);
        assert_eq!(last(), "first: bad");
    }

    #[test]
    fn io_errors_carry_errno() {
        let e = Error::Io {
            op: "connect",
            path: None,
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        let st = call("shmsock_connect", || Err(e.into()));
        assert_eq!(st, SHMSOCK_IO);
        assert_eq!(shmsock_last_errno(), libc::ENOENT);
        // SAFETY: reading this thread's errno slot.
        assert_eq!(unsafe { *libc::__errno_location() }, libc::ENOENT);
        assert!(last().starts_with("shmsock_connect: connect failed"));
    }

    #[test]
    fn an_error_without_a_raw_errno_gets_its_kinds() {
        let e = Error::Io {
            op: "bind",
            path: None,
            source: std::io::ErrorKind::AddrInUse.into(),
        };
        assert_eq!(call("shmsock_listen", || Err(e.into())), SHMSOCK_IO);
        assert_eq!(shmsock_last_errno(), libc::EADDRINUSE);
    }

    #[test]
    fn every_status_has_a_name() {
        for s in 0..=14 {
            // SAFETY: shmsock_status_str returns static C strings.
            let name = unsafe { CStr::from_ptr(shmsock_status_str(s)) };
            assert_ne!(name.to_bytes(), b"SHMSOCK_UNKNOWN", "status {s}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(shmsock_status_str(-7)) };
        assert_eq!(unknown.to_bytes(), b"SHMSOCK_UNKNOWN");
    }
}
