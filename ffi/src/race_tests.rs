//! Check-then-act races between two threads on one handle, made
//! deterministic with the registry's test hook: the second thread's call
//! runs in the window right after the first thread releases the handle's
//! slot (as if it had been waiting there). A free or split that checks the
//! object in one hold and removes it in a second let that call change the
//! object in between; [`registry::remove_with`] does both in one hold.
#![allow(clippy::undocumented_unsafe_blocks)] // FFI calls with valid pointers

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use crate::registry::hook;
use crate::shmsock_status::*;
use crate::*;

pub(crate) fn last_error() -> String {
    let p = shmsock_last_error();
    if p.is_null() {
        return "-".into();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A connected pair over a socket pair: (server side, client side).
pub(crate) fn pair() -> (*mut shmsock_conn, *mut shmsock_conn) {
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
    assert_eq!(
        unsafe { shmsock_connect_fd(sv[1], null(), &mut c) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    let (st, s) = server.join().unwrap();
    assert_eq!(st, SHMSOCK_OK);
    (s as *mut shmsock_conn, c)
}

/// Runs `f` on another thread and waits for it (a call from "another
/// thread" that was waiting for the handle).
fn on_other_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap()
}

/// `shmsock_writer_free` ended the writer's loan in one hold of the writer
/// and removed the handle in a second: a call on the writer in between saw
/// a live handle whose writer had ended (and a free that then failed with
/// `SHMSOCK_BUSY` left it so, though "the writer then stays valid"). The
/// same for the reader.
#[test]
fn writer_and_reader_free_end_and_remove_in_one_hold() {
    let (s, c) = pair();
    let mut w = null_mut();
    assert_eq!(unsafe { shmsock_write_message(c, 64, &mut w) }, SHMSOCK_OK);
    let wh = w as usize;
    let (tx, rx) = std::sync::mpsc::channel();
    hook::after_release(wh, move || {
        tx.send(on_other_thread(move || {
            let mut n = 0usize;
            let st = unsafe { shmsock_writer_len(wh as *mut _, &mut n, null_mut()) };
            (st, last_error())
        }))
        .unwrap();
    });
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    assert!(
        !hook::pending(),
        "the free never released the writer's slot"
    );
    let (st, msg) = rx.recv().unwrap();
    assert_eq!(st, SHMSOCK_BAD_HANDLE);
    assert!(
        msg.contains("not a live"),
        "a call between the free's check and its removal saw: {msg}"
    );
    // The connection takes sends again.
    assert_eq!(
        unsafe { shmsock_send(c, b"ping".as_ptr().cast(), 4) },
        SHMSOCK_OK
    );

    // The reader: a message read piece by piece, freed.
    let mut r = null_mut();
    let mut len = 0usize;
    assert_eq!(
        unsafe { shmsock_read_message(s, &mut r, &mut len) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    assert_eq!(len, 4);
    let rh = r as usize;
    let (tx, rx) = std::sync::mpsc::channel();
    hook::after_release(rh, move || {
        tx.send(on_other_thread(move || {
            let mut n = 0usize;
            let st = unsafe { shmsock_reader_len(rh as *mut _, &mut n, null_mut()) };
            (st, last_error())
        }))
        .unwrap();
    });
    assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
    let (st, msg) = rx.recv().unwrap();
    assert_eq!(st, SHMSOCK_BAD_HANDLE);
    assert!(
        msg.contains("not a live"),
        "a call between the free's check and its removal saw: {msg}"
    );
    assert_eq!(shmsock_conn_free(c), SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
}

/// `shmsock_conn_split` checked for an outstanding loan in one hold and
/// consumed the connection in a second: a grant reserved in between moved
/// into the sender with no handle left to commit or abort it, and the
/// sender refused every send with `SHMSOCK_BUSY` for ever.
#[test]
fn split_checks_and_consumes_in_one_hold() {
    let (s, c) = pair();
    let ch = c as usize;
    let (tx_st, rx_st) = std::sync::mpsc::channel();
    hook::after_release(ch, move || {
        tx_st
            .send(on_other_thread(move || {
                let mut g = shmsock_grant {
                    data: null_mut(),
                    len: 0,
                    id: 0,
                };
                unsafe { shmsock_reserve(ch as *mut _, 8, &mut g) }
            }))
            .unwrap();
    });
    let (mut tx, mut rx) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { shmsock_conn_split(c, &mut tx, &mut rx) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    let reserved = rx_st.recv().unwrap();
    assert_eq!(
        reserved, SHMSOCK_BAD_HANDLE,
        "a grant was reserved mid-split"
    );
    // No grant is out on the sender: a send goes through.
    assert_eq!(
        unsafe { shmsock_sender_send(tx, b"x".as_ptr().cast(), 1) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    assert_eq!(shmsock_sender_free(tx), SHMSOCK_OK);
    assert_eq!(shmsock_receiver_free(rx), SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
}

/// With a loan out, split refuses and the connection stays whole.
#[test]
fn split_with_a_writer_out_is_busy_and_keeps_the_connection() {
    let (s, c) = pair();
    let mut w = null_mut();
    assert_eq!(unsafe { shmsock_write_message(c, 8, &mut w) }, SHMSOCK_OK);
    let (mut tx, mut rx) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { shmsock_conn_split(c, &mut tx, &mut rx) },
        SHMSOCK_BUSY
    );
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    assert_eq!(
        unsafe { shmsock_conn_split(c, &mut tx, &mut rx) },
        SHMSOCK_OK
    );
    assert_eq!(shmsock_sender_free(tx), SHMSOCK_OK);
    assert_eq!(shmsock_receiver_free(rx), SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(s), SHMSOCK_OK);
}
