//! `shmsock_options`: connection and listener options (the transport's
//! `Builder`).

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use shmsock_transport::{Builder, CredentialsPolicy, WaitStrategy};

use crate::endpoint::shmsock_credentials;
use crate::registry::{self, Kind, Obj};
use crate::status::{call, shmsock_status, Fail};
use crate::{handle, put, SHMSOCK_FOREVER};

/// Options for `shmsock_connect` and `shmsock_listen`: ring size, wait
/// strategy, timeouts, credentials policy, socket mode. Created by
/// `shmsock_options_new`, freed by `shmsock_options_free`; the connect and
/// listen calls copy what they need, so the options may be freed (or
/// changed and reused) right after.
///
/// Thread-safety: one thread at a time; a call while another thread is
/// inside a call on the same handle returns `SHMSOCK_BUSY`.
#[derive(Debug)]
pub struct shmsock_options {
    _opaque: [u8; 0],
}

/// `shmsock_options_set_wait`: busy-poll the ring (lowest latency, burns a
/// core while waiting).
pub const SHMSOCK_WAIT_SPIN: u32 = 0;
/// `shmsock_options_set_wait`: sleep on the socket at once (a system call
/// on each side per wake-up; no spinning).
pub const SHMSOCK_WAIT_BLOCK: u32 = 1;
/// `shmsock_options_set_wait`: spin up to `spin_ns`, then sleep (the
/// default, with 50 µs).
pub const SHMSOCK_WAIT_ADAPTIVE: u32 = 2;

/// `shmsock_options_set_credentials`: any peer the socket file's
/// permissions let in (the default).
pub const SHMSOCK_PEER_ANY: u32 = 0;
/// `shmsock_options_set_credentials`: only processes of our effective uid.
pub const SHMSOCK_PEER_SAME_UID: u32 = 1;
/// `shmsock_options_set_credentials`: only processes of the given uid.
pub const SHMSOCK_PEER_UID: u32 = 2;

/// A custom credentials check: returns true to accept the peer. Called
/// during the handshake (before any memory is shared) on the thread that
/// runs `shmsock_accept`/`shmsock_connect`, possibly on several threads
/// at once. It should be quick (it holds up that handshake), and must not
/// unwind: a C++ exception thrown through it aborts the process.
pub type shmsock_credentials_check =
    Option<unsafe extern "C" fn(creds: *const shmsock_credentials, user: *mut c_void) -> bool>;

/// The user pointer of a credentials check.
struct UserPtr(*mut c_void);
// SAFETY: shmsock only hands the pointer back to the caller's callback; the
// header documents that the callback may run on any thread that accepts or
// connects, so making that safe is the caller's contract.
unsafe impl Send for UserPtr {}
// SAFETY: as above: shared only to be passed back, never dereferenced here.
unsafe impl Sync for UserPtr {}

fn with_opts(
    opts: *mut shmsock_options,
    f: impl FnOnce(Builder) -> Result<Builder, Fail>,
) -> Result<(), Fail> {
    registry::with(opts.addr(), Kind::Options, |o| match o {
        Obj::Options(b) => {
            *b = f(b.clone())?;
            Ok(())
        }
        _ => Err(Fail::invalid("not options")),
    })
}

/// The options named by `opts`, or the defaults for NULL.
pub(crate) fn builder_of(opts: *const shmsock_options) -> Result<Builder, Fail> {
    if opts.is_null() {
        return Ok(Builder::new());
    }
    registry::with(opts.addr(), Kind::Options, |o| match o {
        Obj::Options(b) => Ok(b.clone()),
        _ => Err(Fail::invalid("not options")),
    })
}

fn duration_ns(ns: u64) -> Duration {
    if ns == SHMSOCK_FOREVER {
        Duration::MAX
    } else {
        Duration::from_nanos(ns)
    }
}

/// Creates options with the defaults: 1 MiB rings, 64 MiB message and
/// peer-ring limits, adaptive waiting (50 µs spin), 5 s handshake timeout,
/// no call timeout, any peer, socket mode 0600.
///
/// Returns `SHMSOCK_OK` and stores the handle in `*out`;
/// `SHMSOCK_INVALID_ARGUMENT` if `out` is NULL.
///
/// # Safety
/// `out` is NULL or valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn shmsock_options_new(out: *mut *mut shmsock_options) -> shmsock_status {
    call("shmsock_options_new", || {
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let h = registry::insert(Obj::Options(Builder::new()))?;
        // SAFETY: non-null, writable by the caller's contract.
        unsafe { put(out, handle(h)) }
    })
}

/// Frees options. NULL is a no-op returning `SHMSOCK_OK`; a freed or
/// foreign handle gives `SHMSOCK_BAD_HANDLE`.
#[no_mangle]
pub extern "C" fn shmsock_options_free(opts: *mut shmsock_options) -> shmsock_status {
    call("shmsock_options_free", || {
        if opts.is_null() {
            return Ok(());
        }
        drop(registry::remove(opts.addr(), Kind::Options)?);
        Ok(())
    })
}

/// Capacity in bytes of the ring this side writes into: a power of two
/// between 4 KiB and 1 TiB (checked when connecting or listening, which then
/// fail with `SHMSOCK_INVALID_ARGUMENT`). Messages up to half of it, less 8
/// bytes, travel inline (zero-copy on both sides); larger ones stream
/// through it in fragments. Default 1 MiB.
#[no_mangle]
pub extern "C" fn shmsock_options_set_ring_capacity(
    opts: *mut shmsock_options,
    bytes: u64,
) -> shmsock_status {
    call("shmsock_options_set_ring_capacity", || {
        with_opts(opts, |b| Ok(b.ring_capacity(bytes)))
    })
}

/// Sizes the ring so that messages of up to `len` bytes travel inline
/// (the smallest power of two of at least `2 * (len + 8)`, at least 4 KiB).
#[no_mangle]
pub extern "C" fn shmsock_options_set_max_inline_message(
    opts: *mut shmsock_options,
    len: usize,
) -> shmsock_status {
    call("shmsock_options_set_max_inline_message", || {
        with_opts(opts, |b| Ok(b.max_inline_message(len)))
    })
}

/// Largest ring the peer may ask us to map (default 64 MiB, at least 4 KiB):
/// bounds the peer memory one connection maps.
#[no_mangle]
pub extern "C" fn shmsock_options_set_max_peer_ring(
    opts: *mut shmsock_options,
    bytes: u64,
) -> shmsock_status {
    call("shmsock_options_set_max_peer_ring", || {
        with_opts(opts, |b| Ok(b.max_peer_ring(bytes)))
    })
}

/// Largest message this side accepts (default 64 MiB): bounds the memory a
/// peer can make us allocate for one message. The peer learns it in the
/// handshake; its sends above it fail with `SHMSOCK_TOO_LARGE`.
#[no_mangle]
pub extern "C" fn shmsock_options_set_max_message(
    opts: *mut shmsock_options,
    bytes: u64,
) -> shmsock_status {
    call("shmsock_options_set_max_message", || {
        with_opts(opts, |b| Ok(b.max_message(bytes)))
    })
}

/// Payload bytes of each fragment this side writes for a message larger
/// than the inline limit, or above the pipeline threshold
/// (`shmsock_options_set_pipeline_threshold`): rounded down to a multiple
/// of 8 and clamped to the ring's record limit; 0 (the default): 128 KiB
/// for a pipelined message, a quarter of the ring otherwise. Only the
/// sending side uses it: a receiver takes fragments of any size its ring
/// allows (`Builder::fragment_size`).
#[no_mangle]
pub extern "C" fn shmsock_options_set_fragment_size(
    opts: *mut shmsock_options,
    bytes: usize,
) -> shmsock_status {
    call("shmsock_options_set_fragment_size", || {
        with_opts(opts, |b| Ok(b.fragment_size(bytes)))
    })
}

/// Messages longer than `bytes` are sent by `shmsock_send` (and
/// `shmsock_try_send`, `shmsock_send_batch`) in fragments even when they
/// would fit one ring record, if the receiver has consumed everything sent
/// before (it is waiting for this one): it copies the first fragments out
/// while the sender still copies the next ones in, so the message arrives
/// sooner. Behind a backlog a message goes as one record. Fragments are
/// 128 KiB (at most a quarter of the ring). Default 256 KiB; `SIZE_MAX`
/// sends every message that fits one record as one record. Zero-copy
/// writes (`shmsock_reserve`, `shmsock_write_message`) are not affected.
#[no_mangle]
pub extern "C" fn shmsock_options_set_pipeline_threshold(
    opts: *mut shmsock_options,
    bytes: usize,
) -> shmsock_status {
    call("shmsock_options_set_pipeline_threshold", || {
        with_opts(opts, |b| Ok(b.pipeline_threshold(bytes)))
    })
}

/// How blocked calls wait: `SHMSOCK_WAIT_SPIN`, `SHMSOCK_WAIT_BLOCK`, or
/// `SHMSOCK_WAIT_ADAPTIVE` with its longest spin `spin_ns` (ignored by the
/// other two). Any other `strategy` gives `SHMSOCK_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn shmsock_options_set_wait(
    opts: *mut shmsock_options,
    strategy: u32,
    spin_ns: u64,
) -> shmsock_status {
    call("shmsock_options_set_wait", || {
        let w = match strategy {
            SHMSOCK_WAIT_SPIN => WaitStrategy::Spin,
            SHMSOCK_WAIT_BLOCK => WaitStrategy::Block,
            SHMSOCK_WAIT_ADAPTIVE => WaitStrategy::Adaptive {
                spin: Duration::from_nanos(spin_ns),
            },
            other => return Err(Fail::invalid(format!("unknown wait strategy {other}"))),
        };
        with_opts(opts, |b| Ok(b.wait(w)))
    })
}

/// Time allowed for the handshake, in nanoseconds (default 5 s;
/// `SHMSOCK_FOREVER`: no limit).
#[no_mangle]
pub extern "C" fn shmsock_options_set_handshake_timeout(
    opts: *mut shmsock_options,
    timeout_ns: u64,
) -> shmsock_status {
    call("shmsock_options_set_handshake_timeout", || {
        with_opts(opts, |b| Ok(b.handshake_timeout(duration_ns(timeout_ns))))
    })
}

/// Default timeout of `shmsock_send`, `shmsock_recv` and `shmsock_reserve`
/// (and of the halves' forms), in nanoseconds; `SHMSOCK_FOREVER` (the
/// default) waits without limit. The `_timeout` forms take their own.
#[no_mangle]
pub extern "C" fn shmsock_options_set_timeout(
    opts: *mut shmsock_options,
    timeout_ns: u64,
) -> shmsock_status {
    call("shmsock_options_set_timeout", || {
        let t = (timeout_ns != SHMSOCK_FOREVER).then(|| Duration::from_nanos(timeout_ns));
        with_opts(opts, |b| Ok(b.timeout(t)))
    })
}

/// Which peers may connect (checked before any memory is shared):
/// `SHMSOCK_PEER_ANY`, `SHMSOCK_PEER_SAME_UID`, or `SHMSOCK_PEER_UID` with
/// `uid` (ignored by the other two). A refused peer makes accept or connect
/// fail with `SHMSOCK_CREDENTIALS`. Replaces a check set with
/// `shmsock_options_set_credentials_check`.
#[no_mangle]
pub extern "C" fn shmsock_options_set_credentials(
    opts: *mut shmsock_options,
    policy: u32,
    uid: u32,
) -> shmsock_status {
    call("shmsock_options_set_credentials", || {
        let p = match policy {
            SHMSOCK_PEER_ANY => CredentialsPolicy::Any,
            SHMSOCK_PEER_SAME_UID => CredentialsPolicy::SameUid,
            SHMSOCK_PEER_UID => CredentialsPolicy::Uid(uid),
            other => return Err(Fail::invalid(format!("unknown credentials policy {other}"))),
        };
        with_opts(opts, |b| Ok(b.credentials(p)))
    })
}

/// Accepts only peers for which `check(creds, user)` returns true (see
/// `shmsock_credentials_check` for when it runs). `check` NULL gives
/// `SHMSOCK_INVALID_ARGUMENT`.
///
/// # Safety
/// `check` must be safe to call with `user` from any thread that accepts or
/// connects with these options, for as long as any listener or connection
/// made with them may still run a handshake.
#[no_mangle]
pub unsafe extern "C" fn shmsock_options_set_credentials_check(
    opts: *mut shmsock_options,
    check: shmsock_credentials_check,
    user: *mut c_void,
) -> shmsock_status {
    call("shmsock_options_set_credentials_check", || {
        let check = check.ok_or_else(|| Fail::null("check"))?;
        let user = UserPtr(user);
        let p = CredentialsPolicy::Custom(Arc::new(move |c| {
            let creds = shmsock_credentials::from(*c);
            let user = &user;
            // SAFETY: the caller's contract (see above): `check` may be
            // called with `user` from this thread; `creds` lives across the
            // call.
            unsafe { check(&creds, user.0) }
        }));
        with_opts(opts, |b| Ok(b.credentials(p)))
    })
}

/// Whether to fault in both rings' pages when connecting (default true:
/// `MAP_POPULATE`, so the first pass through a ring takes no page faults,
/// at the cost of a slower connect).
#[no_mangle]
pub extern "C" fn shmsock_options_set_prefault(
    opts: *mut shmsock_options,
    on: bool,
) -> shmsock_status {
    call("shmsock_options_set_prefault", || {
        with_opts(opts, |b| Ok(b.prefault(on)))
    })
}

/// Permission bits of a listener's socket file (default 0600).
#[no_mangle]
pub extern "C" fn shmsock_options_set_socket_mode(
    opts: *mut shmsock_options,
    mode: u32,
) -> shmsock_status {
    call("shmsock_options_set_socket_mode", || {
        if mode > 0o7777 {
            return Err(Fail::invalid(format!(
                "socket mode {mode:#o} has bits above 07777"
            )));
        }
        with_opts(opts, |b| Ok(b.socket_mode(mode)))
    })
}
