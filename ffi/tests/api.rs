//! The C ABI called as a C program calls it: NULL and stale handles, error
//! codes, loans (grants and messages), split halves, fds and credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure should panic
#![allow(clippy::undocumented_unsafe_blocks)] // every call here is an FFI call with valid pointers unless the test says otherwise

use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};
use std::time::Duration;

use shmsock_ffi::shmsock_status::*;
use shmsock_ffi::*;

fn sock_path(name: &str) -> CString {
    let p = std::env::temp_dir().join(format!("shmsock-ffi-{}-{name}.sock", std::process::id()));
    CString::new(p.into_os_string().into_encoded_bytes()).unwrap()
}

fn last_error() -> String {
    let p = shmsock_last_error();
    assert!(!p.is_null());
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

const MS: u64 = 1_000_000;

/// A connected pair: (server side, client side, listener).
fn pair(name: &str) -> (*mut shmsock_conn, *mut shmsock_conn, *mut shmsock_listener) {
    let path = sock_path(name);
    let mut l = null_mut();
    assert_eq!(
        unsafe { shmsock_listen(path.as_ptr(), null(), &mut l) },
        SHMSOCK_OK
    );
    let lh = l as usize;
    let server = std::thread::spawn(move || {
        let mut c = null_mut();
        let st = unsafe { shmsock_accept_timeout(lh as *mut _, 10_000 * MS, &mut c) };
        (st, c as usize)
    });
    let mut client = null_mut();
    assert_eq!(
        unsafe { shmsock_connect(path.as_ptr(), null(), &mut client) },
        SHMSOCK_OK
    );
    let (st, s) = server.join().unwrap();
    assert_eq!(st, SHMSOCK_OK, "{}", last_error());
    (s as *mut shmsock_conn, client, l)
}

#[test]
fn null_arguments_are_invalid_not_ub() {
    let mut conn = null_mut();
    let mut msg = shmsock_message {
        data: null(),
        len: 0,
        id: 0,
    };
    let mut grant = shmsock_grant {
        data: null_mut(),
        len: 0,
        id: 0,
    };
    let mut fd = 0;
    unsafe {
        assert_eq!(
            shmsock_connect(null(), null(), &mut conn),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert!(last_error().contains("path is NULL"), "{}", last_error());
        assert_eq!(
            shmsock_connect(c"/x".as_ptr(), null(), null_mut()),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_listen(c"".as_ptr(), null(), null_mut()),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_send(null_mut(), b"x".as_ptr().cast(), 1),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_try_send(null_mut(), null(), 0),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(shmsock_recv(null_mut(), &mut msg), SHMSOCK_INVALID_ARGUMENT);
        assert_eq!(
            shmsock_reserve(null_mut(), 8, &mut grant),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_commit(null_mut(), &mut grant, 0),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_release(null_mut(), null_mut()),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_conn_recv_fd(null_mut(), &mut fd),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_accept(null_mut(), &mut conn),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_listener_fd(null_mut(), &mut fd),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_sender_send(null_mut(), null(), 0),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_receiver_try_recv(null_mut(), &mut msg),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(shmsock_options_new(null_mut()), SHMSOCK_INVALID_ARGUMENT);
        assert_eq!(
            shmsock_options_set_wait(null_mut(), 0, 0),
            SHMSOCK_INVALID_ARGUMENT
        );
        // Freeing NULL is a no-op, as free(NULL) is.
        assert_eq!(shmsock_conn_free(null_mut()), SHMSOCK_OK);
        assert_eq!(shmsock_listener_free(null_mut()), SHMSOCK_OK);
        assert_eq!(shmsock_sender_free(null_mut()), SHMSOCK_OK);
        assert_eq!(shmsock_receiver_free(null_mut()), SHMSOCK_OK);
        assert_eq!(shmsock_options_free(null_mut()), SHMSOCK_OK);
    }
}

#[test]
fn freed_forged_and_mistyped_handles_are_refused() {
    let mut opts = null_mut();
    unsafe {
        assert_eq!(shmsock_options_new(&mut opts), SHMSOCK_OK);
        // A handle of another type.
        assert_eq!(shmsock_send(opts.cast(), null(), 0), SHMSOCK_BAD_HANDLE);
        assert_eq!(shmsock_options_free(opts), SHMSOCK_OK);
        // Use after free, double free.
        assert_eq!(shmsock_options_set_timeout(opts, 5), SHMSOCK_BAD_HANDLE);
        assert_eq!(shmsock_options_free(opts), SHMSOCK_BAD_HANDLE);
        assert!(last_error().contains("not a live shmsock_options handle"));
        // Forged values never dereferenced.
        for forged in [1usize, 0xdead_beef, usize::MAX, 0x4141_4141_4141_4141] {
            assert_eq!(shmsock_conn_free(forged as *mut _), SHMSOCK_BAD_HANDLE);
            assert_eq!(shmsock_listener_free(forged as *mut _), SHMSOCK_BAD_HANDLE);
        }
    }
}

#[test]
fn options_validate_their_values() {
    let mut opts = null_mut();
    unsafe {
        assert_eq!(shmsock_options_new(&mut opts), SHMSOCK_OK);
        assert_eq!(
            shmsock_options_set_wait(opts, 99, 0),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_options_set_credentials(opts, 7, 0),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_options_set_socket_mode(opts, 0o17777),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_options_set_credentials_check(opts, None, null_mut()),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert_eq!(
            shmsock_options_set_wait(opts, SHMSOCK_WAIT_SPIN, 0),
            SHMSOCK_OK
        );
        // A bad ring size is refused when it is used.
        assert_eq!(shmsock_options_set_ring_capacity(opts, 5000), SHMSOCK_OK);
        let path = sock_path("badopts");
        let mut l = null_mut();
        assert_eq!(
            shmsock_listen(path.as_ptr(), opts, &mut l),
            SHMSOCK_INVALID_ARGUMENT
        );
        assert!(last_error().contains("power of two"), "{}", last_error());
        assert_eq!(shmsock_options_free(opts), SHMSOCK_OK);
    }
}

#[test]
fn connect_to_nothing_reports_errno() {
    let path = sock_path("nobody");
    let mut c = null_mut();
    unsafe {
        assert_eq!(shmsock_connect(path.as_ptr(), null(), &mut c), SHMSOCK_IO);
    }
    assert_eq!(shmsock_last_errno(), libc::ENOENT);
    assert!(c.is_null());
}

#[test]
fn send_recv_reserve_and_the_loans() {
    let (s, c, l) = pair("loans");
    unsafe {
        // Copying send, zero-copy receive.
        assert_eq!(shmsock_send(c, b"hello".as_ptr().cast(), 5), SHMSOCK_OK);
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        assert_eq!(shmsock_recv_timeout(s, 5_000 * MS, &mut m), SHMSOCK_OK);
        assert_eq!(std::slice::from_raw_parts(m.data, m.len), b"hello");
        // One message at a time: a second receive is refused while it is out.
        let mut m2 = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        assert_eq!(shmsock_try_recv(s, &mut m2), SHMSOCK_BUSY);
        // Sending on the same connection is unaffected.
        assert_eq!(shmsock_send(s, b"back".as_ptr().cast(), 4), SHMSOCK_OK);
        // A forged message id is refused and changes nothing.
        let mut fake = shmsock_message {
            data: m.data,
            len: m.len,
            id: m.id + 1,
        };
        assert_eq!(shmsock_release(s, &mut fake), SHMSOCK_INVALID_ARGUMENT);
        assert_eq!(shmsock_release(s, &mut m), SHMSOCK_OK);
        assert!(m.data.is_null() && m.len == 0 && m.id == 0);
        // Double release.
        assert_eq!(shmsock_release(s, &mut fake), SHMSOCK_INVALID_ARGUMENT);
        assert_eq!(shmsock_try_recv(s, &mut m), SHMSOCK_WOULD_BLOCK);
        assert_eq!(shmsock_recv_timeout(s, MS, &mut m), SHMSOCK_TIMEOUT);

        // Zero-copy send: reserve, write, commit fewer bytes.
        let mut g = shmsock_grant {
            data: null_mut(),
            len: 0,
            id: 0,
        };
        assert_eq!(shmsock_reserve(s, 16, &mut g), SHMSOCK_OK);
        assert_eq!(g.len, 16);
        std::ptr::copy_nonoverlapping(b"zero-copy".as_ptr(), g.data, 9);
        assert_eq!(shmsock_send(s, null(), 0), SHMSOCK_BUSY);
        assert_eq!(shmsock_commit(s, &mut g, 17), SHMSOCK_INVALID_ARGUMENT);
        assert_eq!(shmsock_commit(s, &mut g, 9), SHMSOCK_OK);
        assert!(g.data.is_null() && g.id == 0);
        // Abort sends nothing.
        assert_eq!(shmsock_reserve_timeout(s, 4, 0, &mut g), SHMSOCK_OK);
        assert_eq!(shmsock_abort(s, &mut g), SHMSOCK_OK);
        assert_eq!(shmsock_abort(s, &mut g), SHMSOCK_INVALID_ARGUMENT);

        let mut max = 0usize;
        assert_eq!(shmsock_conn_max_inline(s, &mut max), SHMSOCK_OK);
        assert_eq!(shmsock_reserve(s, max + 1, &mut g), SHMSOCK_TOO_LARGE);

        for want in [&b"back"[..], b"zero-copy"] {
            assert_eq!(shmsock_recv_timeout(c, 5_000 * MS, &mut m), SHMSOCK_OK);
            assert_eq!(std::slice::from_raw_parts(m.data, m.len), want);
            assert_eq!(shmsock_release(c, &mut m), SHMSOCK_OK);
        }

        // A large message streams through the ring and arrives whole.
        let big: Vec<u8> = (0..3 * max).map(|i| (i % 251) as u8).collect();
        let cc = c as usize;
        let big2 = big.clone();
        let t = std::thread::spawn(move || {
            shmsock_send(cc as *mut _, big2.as_ptr().cast(), big2.len())
        });
        assert_eq!(shmsock_recv_timeout(s, 10_000 * MS, &mut m), SHMSOCK_OK);
        assert_eq!(std::slice::from_raw_parts(m.data, m.len), &big[..]);
        assert_eq!(t.join().unwrap(), SHMSOCK_OK);
        // Freeing with a message out releases it.
        assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
        assert_eq!(
            shmsock_recv_timeout(c, 5_000 * MS, &mut m),
            SHMSOCK_DISCONNECTED
        );
        // As on a socket, sends notice the hang-up within a bounded number of
        // calls (the sender checks the socket every 256 sends), not at once.
        let mut st = SHMSOCK_OK;
        for _ in 0..1000 {
            st = shmsock_send_timeout(c, b"x".as_ptr().cast(), 1, 5_000 * MS);
            if st != SHMSOCK_OK {
                break;
            }
        }
        assert_eq!(st, SHMSOCK_DISCONNECTED);
        assert_eq!(shmsock_conn_free(c), SHMSOCK_OK);
        assert_eq!(shmsock_conn_free(c), SHMSOCK_BAD_HANDLE);
        assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
    }
}

#[test]
fn credentials_and_fds() {
    let (s, c, l) = pair("creds");
    unsafe {
        let mut cr = shmsock_credentials::default();
        assert_eq!(shmsock_conn_peer_credentials(s, &mut cr), SHMSOCK_OK);
        assert_eq!(cr.pid, std::process::id() as i32);
        assert_eq!(cr.uid, libc::geteuid());
        let (mut a, mut b, mut lf) = (-1, -1, -1);
        assert_eq!(shmsock_conn_recv_fd(s, &mut a), SHMSOCK_OK);
        assert_eq!(shmsock_conn_send_fd(s, &mut b), SHMSOCK_OK);
        assert_eq!(shmsock_listener_fd(l, &mut lf), SHMSOCK_OK);
        assert!(a >= 0 && b >= 0 && lf >= 0 && a != b);
        // The receive fd turns readable when the peer sends.
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        assert_eq!(shmsock_try_recv(s, &mut m), SHMSOCK_WOULD_BLOCK);
        assert_eq!(shmsock_send(c, b"wake".as_ptr().cast(), 4), SHMSOCK_OK);
        let mut p = libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        };
        assert_eq!(libc::poll(&mut p, 1, 10_000), 1);
        assert_eq!(shmsock_try_recv(s, &mut m), SHMSOCK_OK);
        assert_eq!(shmsock_release(s, &mut m), SHMSOCK_OK);
        for h in [s, c] {
            assert_eq!(shmsock_conn_free(h), SHMSOCK_OK);
        }
        assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
    }
}

#[test]
fn split_halves_work_on_two_threads() {
    let (s, c, l) = pair("split");
    unsafe {
        // A split with a loan out is refused and leaves the connection whole.
        let mut g = shmsock_grant {
            data: null_mut(),
            len: 0,
            id: 0,
        };
        assert_eq!(shmsock_reserve(c, 8, &mut g), SHMSOCK_OK);
        let (mut tx, mut rx) = (null_mut(), null_mut());
        assert_eq!(shmsock_conn_split(c, &mut tx, &mut rx), SHMSOCK_BUSY);
        assert_eq!(shmsock_abort(c, &mut g), SHMSOCK_OK);
        assert_eq!(shmsock_conn_split(c, &mut tx, &mut rx), SHMSOCK_OK);
        // The connection handle is consumed.
        assert_eq!(shmsock_send(c, null(), 0), SHMSOCK_BAD_HANDLE);
        let n = 1000u32;
        let txh = tx as usize;
        let sender = std::thread::spawn(move || {
            for i in 0..n {
                let st = shmsock_sender_send(txh as *mut _, i.to_le_bytes().as_ptr().cast(), 4);
                assert_eq!(st, SHMSOCK_OK);
            }
        });
        // Echo on the server side, read back on the receiver.
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        for i in 0..n {
            assert_eq!(shmsock_recv_timeout(s, 10_000 * MS, &mut m), SHMSOCK_OK);
            assert_eq!(shmsock_send(s, m.data.cast(), m.len), SHMSOCK_OK);
            assert_eq!(shmsock_release(s, &mut m), SHMSOCK_OK);
            assert_eq!(
                shmsock_receiver_recv_timeout(rx, 10_000 * MS, &mut m),
                SHMSOCK_OK
            );
            assert_eq!(std::slice::from_raw_parts(m.data, m.len), i.to_le_bytes());
            assert_eq!(shmsock_receiver_release(rx, &mut m), SHMSOCK_OK);
        }
        sender.join().unwrap();
        let mut cr = shmsock_credentials::default();
        assert_eq!(shmsock_sender_peer_credentials(tx, &mut cr), SHMSOCK_OK);
        assert_eq!(cr.pid, std::process::id() as i32);
        assert_eq!(shmsock_sender_free(tx), SHMSOCK_OK);
        assert_eq!(shmsock_receiver_free(rx), SHMSOCK_OK);
        assert_eq!(shmsock_receiver_free(rx), SHMSOCK_BAD_HANDLE);
        assert_eq!(
            shmsock_recv_timeout(s, 5_000 * MS, &mut m),
            SHMSOCK_DISCONNECTED
        );
        assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
        assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
    }
}

#[test]
fn a_second_thread_gets_busy_not_a_data_race() {
    let (s, c, l) = pair("busy");
    let sh = s as usize;
    let blocked = std::thread::spawn(move || {
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        let st = unsafe { shmsock_recv_timeout(sh as *mut _, 10_000 * MS, &mut m) };
        if st == SHMSOCK_OK {
            assert_eq!(unsafe { shmsock_release(sh as *mut _, &mut m) }, SHMSOCK_OK);
        }
        st
    });
    // Wait until the other thread is inside its call (it is, once a call
    // from here sees BUSY); bounded, so a broken build fails instead of
    // hanging.
    let mut saw_busy = false;
    for _ in 0..10_000 {
        let st = unsafe { shmsock_send(s, b"x".as_ptr().cast(), 1) };
        if st == SHMSOCK_BUSY {
            saw_busy = true;
            break;
        }
        assert_eq!(st, SHMSOCK_OK);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(saw_busy, "the receiving thread never held the handle");
    assert_eq!(shmsock_conn_free(s), SHMSOCK_BUSY);
    unsafe {
        assert_eq!(shmsock_send(c, b"go".as_ptr().cast(), 2), SHMSOCK_OK);
    }
    assert_eq!(blocked.join().unwrap(), SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(c), SHMSOCK_OK);
    assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
}

#[test]
fn a_credentials_check_can_refuse() {
    unsafe extern "C" fn refuse_all(
        _: *const shmsock_credentials,
        calls: *mut std::ffi::c_void,
    ) -> bool {
        // SAFETY: `calls` is the AtomicU32 below, alive for the test.
        unsafe { &*(calls as *const std::sync::atomic::AtomicU32) }
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        false
    }
    let calls = std::sync::atomic::AtomicU32::new(0);
    let path = sock_path("refuse");
    let (mut opts, mut l) = (null_mut(), null_mut());
    unsafe {
        assert_eq!(shmsock_options_new(&mut opts), SHMSOCK_OK);
        let user = &calls as *const _ as *mut std::ffi::c_void;
        assert_eq!(
            shmsock_options_set_credentials_check(opts, Some(refuse_all), user),
            SHMSOCK_OK
        );
        assert_eq!(shmsock_listen(path.as_ptr(), opts, &mut l), SHMSOCK_OK);
        assert_eq!(shmsock_options_free(opts), SHMSOCK_OK);
        let lh = l as usize;
        let server = std::thread::spawn(move || {
            let mut c = null_mut();
            shmsock_accept_timeout(lh as *mut _, 10_000 * MS, &mut c)
        });
        let mut c = null_mut();
        let st = shmsock_connect(path.as_ptr(), null(), &mut c);
        assert_ne!(st, SHMSOCK_OK);
        assert_eq!(server.join().unwrap(), SHMSOCK_CREDENTIALS);
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
    }
}

#[test]
fn a_handshake_over_a_socketpair() {
    let mut sv = [0; 2];
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    let server = std::thread::spawn(move || {
        let mut c = null_mut();
        let st = unsafe { shmsock_accept_fd(sv[0], null(), &mut c) };
        (st, c as usize)
    });
    let mut c = null_mut();
    unsafe {
        assert_eq!(shmsock_connect_fd(sv[1], null(), &mut c), SHMSOCK_OK);
        let (st, s) = server.join().unwrap();
        assert_eq!(st, SHMSOCK_OK);
        let s = s as *mut shmsock_conn;
        assert_eq!(shmsock_send(c, b"pair".as_ptr().cast(), 4), SHMSOCK_OK);
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        assert_eq!(shmsock_recv_timeout(s, 10_000 * MS, &mut m), SHMSOCK_OK);
        assert_eq!(std::slice::from_raw_parts(m.data, m.len), b"pair");
        assert_eq!(shmsock_release(s, &mut m), SHMSOCK_OK);
        assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
        assert_eq!(shmsock_conn_free(c), SHMSOCK_OK);
        assert_eq!(
            shmsock_connect_fd(-1, null(), &mut c),
            SHMSOCK_INVALID_ARGUMENT
        );
    }
}
