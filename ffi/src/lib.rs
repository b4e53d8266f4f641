//! The C ABI of [shmsock](https://docs.rs/shmsock): a static and a shared
//! library (`libshmsock_ffi.a`/`.so`, staged as `libshmsock` by
//! `scripts/c-examples.sh`) and the header `include/shmsock.h`, generated
//! from this crate by cbindgen (the `header` test checks that the committed
//! copy is current; `SHMSOCK_BLESS=1 cargo test -p shmsock-ffi --test header`
//! rewrites it).
//!
//! It wraps the blocking API of [`shmsock_transport`]: listeners,
//! connections and their halves are opaque handles with a `_free` each,
//! every function returns a [`shmsock_status`], and `docs/c-api.md` maps the
//! classic socket calls onto it.
//!
//! How the boundary is kept safe:
//! - every entry point runs under `catch_unwind` (`status.rs`): no panic
//!   crosses into C;
//! - handles are generation-checked table entries, never pointers that
//!   shmsock follows (`registry.rs`): NULL, freed, forged and wrong-type
//!   handles give an error, and a handle used by two threads at once gives
//!   `SHMSOCK_BUSY` instead of a data race;
//! - what a connection lends (a write grant, a received message, a message
//!   being written or read chunk by chunk) is tied to it with an id, and
//!   the connection refuses other work while a loan is out (`endpoint.rs`,
//!   `stream.rs`);
//! - a shutdown from another thread goes through a side table of shutdown
//!   handles, not through the (possibly busy) handle (`shutdown.rs`).
//!
//! What remains the caller's contract (and is undefined behaviour if
//! broken, as in any C library): pointers to data and out-parameters must
//! be valid for the stated lengths, and a message's or grant's `data`
//! must not be used after its release, commit or abort, or after the
//! connection is freed.
//!
//! # Example (Rust calling the C ABI, as a C program would)
//! ```no_run
//! use shmsock_ffi::*;
//! let mut conn = std::ptr::null_mut();
//! // SAFETY: a NUL-terminated path and a valid out-pointer.
//! let st = unsafe { shmsock_connect(c"/tmp/echo.sock".as_ptr(), std::ptr::null(), &mut conn) };
//! assert_eq!(st, shmsock_status::SHMSOCK_OK);
//! // SAFETY: 4 readable bytes.
//! let st = unsafe { shmsock_send(conn, b"ping".as_ptr().cast(), 4) };
//! assert_eq!(st, shmsock_status::SHMSOCK_OK);
//! assert_eq!(shmsock_conn_free(conn), shmsock_status::SHMSOCK_OK);
//! ```

// The public items are the C ABI: named as C names them.
#![allow(non_camel_case_types)]

mod batch;
mod conn;
mod endpoint;
mod halves;
mod listener;
mod options;
#[cfg(test)]
mod race_tests;
mod registry;
mod shutdown;
mod status;
mod stream;
#[cfg(test)]
mod table_full_tests;

pub use batch::*;
pub use conn::*;
pub use endpoint::{shmsock_chunk, shmsock_credentials, shmsock_grant, shmsock_message};
pub use halves::*;
pub use listener::*;
pub use options::*;
pub use shutdown::{shmsock_conn_shutdown, shmsock_receiver_shutdown, shmsock_sender_shutdown};
pub use status::{shmsock_last_errno, shmsock_last_error, shmsock_status, shmsock_status_str};
pub use stream::*;

use std::ffi::{c_char, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use status::Fail;

/// A timeout that never expires (for every `timeout_ns` parameter).
pub const SHMSOCK_FOREVER: u64 = u64::MAX;

/// Version of the header, `MAJOR * 10000 + MINOR * 100 + PATCH`; compare
/// with `shmsock_version()` to detect a header/library mismatch.
pub const SHMSOCK_VERSION_NUMBER: u32 = 100;

/// This library's version number (compare with `SHMSOCK_VERSION_NUMBER`
/// from the header to detect a header/library mismatch). Thread-safe.
#[no_mangle]
pub extern "C" fn shmsock_version() -> u32 {
    const _: () = assert!(
        SHMSOCK_VERSION_NUMBER == version_number(env!("CARGO_PKG_VERSION").as_bytes()),
        "SHMSOCK_VERSION_NUMBER must match the crate version"
    );
    SHMSOCK_VERSION_NUMBER
}

/// `MAJOR * 10000 + MINOR * 100 + PATCH` of a `x.y.z` version string.
const fn version_number(v: &[u8]) -> u32 {
    let mut parts = [0u32; 3];
    let (mut i, mut p) = (0, 0);
    while i < v.len() && p < 3 {
        match v[i] {
            b'.' => p += 1,
            d @ b'0'..=b'9' => parts[p] = parts[p] * 10 + (d - b'0') as u32,
            _ => break,
        }
        i += 1;
    }
    parts[0] * 10000 + parts[1] * 100 + parts[2]
}

/// A socket path from C: any bytes but NUL (`@name` for an abstract socket).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn path_arg<'a>(p: *const c_char) -> Result<&'a Path, Fail> {
    if p.is_null() {
        return Err(Fail::null("path"));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Fail::invalid("path is empty"));
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// A byte buffer from C; `data` may be NULL only when `len` is 0.
///
/// # Safety
/// If `len > 0`, `data` points to `len` readable bytes that stay unchanged
/// for the call.
unsafe fn bytes_arg<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Fail::null("data (with len > 0)"));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid("len exceeds PTRDIFF_MAX"));
    }
    // SAFETY: non-null, `len <= isize::MAX`, and readable for `len` bytes
    // by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// Writes `v` through an out-pointer from C.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
unsafe fn put<T>(out: *mut T, v: T) -> Result<(), Fail> {
    if out.is_null() {
        return Err(Fail::null("out-parameter"));
    }
    // SAFETY: non-null and writable by the caller's contract; `write` does
    // not read (or drop) what was there.
    unsafe { out.write(v) };
    Ok(())
}

/// A handle value as the opaque pointer C holds.
fn handle<T>(h: usize) -> *mut T {
    std::ptr::without_provenance_mut(h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_number_parses() {
        assert_eq!(super::version_number(b"0.1.0"), 100);
        assert_eq!(super::version_number(b"1.2.3"), 10203);
        assert_eq!(super::version_number(b"2.10.0-rc1"), 21000);
    }
}
