//! The streaming calls (`shmsock_writer`, `shmsock_reader`) and the
//! cross-thread shutdown, called as a C program calls them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure should panic
#![allow(clippy::undocumented_unsafe_blocks)] // every call here is an FFI call with valid pointers unless the test says otherwise

use std::ffi::{CStr, CString};
use std::ptr::{null, null_mut};
use std::time::Duration;

use shmsock_ffi::shmsock_status::*;
use shmsock_ffi::*;

const MS: u64 = 1_000_000;
const LONG: u64 = 20_000 * MS;

fn sock_path(name: &str) -> CString {
    let p = std::env::temp_dir().join(format!(
        "shmsock-ffi-stream-{}-{name}.sock",
        std::process::id()
    ));
    CString::new(p.into_os_string().into_encoded_bytes()).unwrap()
}

fn last_error() -> String {
    let p = shmsock_last_error();
    if p.is_null() {
        return "-".into();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

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
        let st = unsafe { shmsock_accept_timeout(lh as *mut _, LONG, &mut c) };
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

fn free(server: *mut shmsock_conn, client: *mut shmsock_conn, l: *mut shmsock_listener) {
    assert_eq!(shmsock_conn_free(server), SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(client), SHMSOCK_OK);
    assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
}

/// Waits until another thread is inside a call on `conn` (its handle is
/// busy), so that what follows runs while that call blocks.
fn until_busy(busy: impl Fn() -> shmsock_status) {
    for _ in 0..20_000 {
        match busy() {
            SHMSOCK_BUSY => return,
            SHMSOCK_OK => std::thread::sleep(Duration::from_millis(1)),
            st => panic!("{st:?}: {}", last_error()),
        }
    }
    panic!("the other thread never entered its call");
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 13)) as u8
}

fn empty_chunk() -> shmsock_chunk {
    shmsock_chunk {
        data: null_mut(),
        len: 0,
        offset: 0,
    }
}

/// Writes `len` bytes of `pattern` through a writer on `conn`.
fn write_pattern(conn: usize, len: usize) -> shmsock_status {
    let conn = conn as *mut shmsock_conn;
    let mut w = null_mut();
    let st = unsafe { shmsock_write_message(conn, len, &mut w) };
    if st != SHMSOCK_OK {
        return st;
    }
    let mut chunks = 0;
    let mut c = empty_chunk();
    let end = loop {
        match unsafe { shmsock_writer_next_chunk_timeout(w, LONG, &mut c) } {
            SHMSOCK_OK => {}
            st => break st,
        }
        assert!(!c.data.is_null());
        let dst = unsafe { std::slice::from_raw_parts_mut(c.data, c.len) };
        for (k, b) in dst.iter_mut().enumerate() {
            *b = pattern(c.offset + k);
        }
        let st = shmsock_writer_commit(w);
        if st != SHMSOCK_OK {
            break st;
        }
        chunks += 1;
    };
    assert!(chunks >= 1);
    let mut n = 0;
    let mut done = false;
    assert_eq!(
        unsafe { shmsock_writer_len(w, &mut n, &mut done) },
        SHMSOCK_OK
    );
    assert_eq!((n, done), (len, end == SHMSOCK_END));
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    if end == SHMSOCK_END {
        SHMSOCK_OK
    } else {
        end
    }
}

#[test]
fn a_16_mib_message_streams_through_both_ends() {
    let (server, client, l) = pair("big");
    const LEN: usize = 16 << 20;
    let c = client as usize;
    let writer = std::thread::spawn(move || write_pattern(c, LEN));
    let mut r = null_mut();
    let mut len = 0;
    assert_eq!(
        unsafe { shmsock_read_message_timeout(server, LONG, &mut r, &mut len) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    assert_eq!(len, LEN);
    // The receiver refuses other receives while the reader is out.
    let mut m = shmsock_message {
        data: null(),
        len: 0,
        id: 0,
    };
    assert_eq!(unsafe { shmsock_try_recv(server, &mut m) }, SHMSOCK_BUSY);
    let (mut seen, mut pieces) = (0usize, 0);
    let mut c = empty_chunk();
    loop {
        match unsafe { shmsock_reader_next_chunk_timeout(r, LONG, &mut c) } {
            SHMSOCK_OK => {}
            SHMSOCK_END => break,
            st => panic!("{st:?}: {}", last_error()),
        }
        assert_eq!(c.offset, seen);
        let got = unsafe { std::slice::from_raw_parts(c.data, c.len) };
        for (k, b) in got.iter().enumerate() {
            assert_eq!(*b, pattern(seen + k), "byte {}", seen + k);
        }
        seen += c.len;
        pieces += 1;
    }
    assert_eq!(seen, LEN);
    assert!(pieces > 1, "a 16 MiB message takes several ring records");
    // END is sticky and sets no message.
    assert_eq!(unsafe { shmsock_reader_next_chunk(r, &mut c) }, SHMSOCK_END);
    let (mut n, mut left) = (0, 1);
    assert_eq!(
        unsafe { shmsock_reader_len(r, &mut n, &mut left) },
        SHMSOCK_OK
    );
    assert_eq!((n, left), (LEN, 0));
    assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
    assert_eq!(writer.join().unwrap(), SHMSOCK_OK, "{}", last_error());
    // Both ends are usable again.
    assert_eq!(
        unsafe { shmsock_send(client, b"after".as_ptr().cast(), 5) },
        SHMSOCK_OK
    );
    assert_eq!(
        unsafe { shmsock_recv_timeout(server, LONG, &mut m) },
        SHMSOCK_OK
    );
    assert_eq!(
        unsafe { std::slice::from_raw_parts(m.data, m.len) },
        b"after"
    );
    assert_eq!(unsafe { shmsock_release(server, &mut m) }, SHMSOCK_OK);
    free(server, client, l);
}

#[test]
fn small_and_empty_messages_are_one_chunk_and_recv_sees_them_whole() {
    let (server, client, l) = pair("small");
    for len in [0usize, 1, 100] {
        assert_eq!(write_pattern(client as usize, len), SHMSOCK_OK);
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        assert_eq!(
            unsafe { shmsock_recv_timeout(server, LONG, &mut m) },
            SHMSOCK_OK
        );
        let got = unsafe { std::slice::from_raw_parts(m.data, m.len) };
        assert_eq!(got, (0..len).map(pattern).collect::<Vec<_>>());
        assert_eq!(unsafe { shmsock_release(server, &mut m) }, SHMSOCK_OK);
    }
    // write_all, and a reader of an empty message ends at once.
    let mut w = null_mut();
    assert_eq!(
        unsafe { shmsock_write_message(client, 0, &mut w) },
        SHMSOCK_OK
    );
    assert_eq!(
        unsafe { shmsock_writer_write_all(w, null(), 1) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { shmsock_writer_write_all(w, null(), 0) },
        SHMSOCK_OK
    );
    let mut c = empty_chunk();
    assert_eq!(unsafe { shmsock_writer_next_chunk(w, &mut c) }, SHMSOCK_END);
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    let mut r = null_mut();
    assert_eq!(
        unsafe { shmsock_read_message_timeout(server, LONG, &mut r, null_mut()) },
        SHMSOCK_OK
    );
    assert_eq!(unsafe { shmsock_reader_next_chunk(r, &mut c) }, SHMSOCK_END);
    assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
    free(server, client, l);
}

#[test]
fn an_abandoned_message_gives_abandoned_and_the_connection_goes_on() {
    let (server, client, l) = pair("abandon");
    let len = 8 << 20; // far more than the ring: fragments
    let mut w = null_mut();
    assert_eq!(
        unsafe { shmsock_write_message(client, len, &mut w) },
        SHMSOCK_OK
    );
    // The sender refuses other sends while the writer is out.
    assert_eq!(
        unsafe { shmsock_send(client, b"x".as_ptr().cast(), 1) },
        SHMSOCK_BUSY
    );
    let mut c = empty_chunk();
    assert_eq!(unsafe { shmsock_writer_next_chunk(w, &mut c) }, SHMSOCK_OK);
    // Asking again before the commit gives the same chunk.
    let again = {
        let mut a = empty_chunk();
        assert_eq!(unsafe { shmsock_writer_next_chunk(w, &mut a) }, SHMSOCK_OK);
        a
    };
    assert_eq!((again.data, again.len, again.offset), (c.data, c.len, 0));
    unsafe { std::ptr::write_bytes(c.data, 7, c.len) };
    assert_eq!(shmsock_writer_commit(w), SHMSOCK_OK);
    assert_eq!(shmsock_writer_commit(w), SHMSOCK_INVALID_ARGUMENT);
    let first = c.len;
    // Give the message up after its first chunk.
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    assert_eq!(shmsock_writer_free(w), SHMSOCK_BAD_HANDLE);
    assert_eq!(
        unsafe { shmsock_writer_next_chunk(w, &mut c) },
        SHMSOCK_BAD_HANDLE
    );
    let mut r = null_mut();
    let mut n = 0;
    assert_eq!(
        unsafe { shmsock_read_message_timeout(server, LONG, &mut r, &mut n) },
        SHMSOCK_OK
    );
    assert_eq!(n, len);
    assert_eq!(
        unsafe { shmsock_reader_next_chunk_timeout(r, LONG, &mut c) },
        SHMSOCK_OK
    );
    assert_eq!(c.len, first);
    // The abort record comes with the sender's next message.
    assert_eq!(
        unsafe { shmsock_send(client, b"next".as_ptr().cast(), 4) },
        SHMSOCK_OK
    );
    assert_eq!(
        unsafe { shmsock_reader_next_chunk_timeout(r, LONG, &mut c) },
        SHMSOCK_ABANDONED,
        "{}",
        last_error()
    );
    // Sticky.
    assert_eq!(
        unsafe { shmsock_reader_next_chunk(r, &mut c) },
        SHMSOCK_ABANDONED
    );
    assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
    let mut m = shmsock_message {
        data: null(),
        len: 0,
        id: 0,
    };
    assert_eq!(
        unsafe { shmsock_recv_timeout(server, LONG, &mut m) },
        SHMSOCK_OK
    );
    assert_eq!(
        unsafe { std::slice::from_raw_parts(m.data, m.len) },
        b"next"
    );
    assert_eq!(unsafe { shmsock_release(server, &mut m) }, SHMSOCK_OK);
    free(server, client, l);
}

#[test]
fn null_freed_and_orphaned_stream_handles_are_errors() {
    let mut c = empty_chunk();
    let mut n = 0;
    assert_eq!(
        unsafe { shmsock_writer_next_chunk(null_mut(), &mut c) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(shmsock_writer_commit(null_mut()), SHMSOCK_INVALID_ARGUMENT);
    assert_eq!(
        unsafe { shmsock_reader_next_chunk(null_mut(), &mut c) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { shmsock_reader_len(null_mut(), &mut n, null_mut()) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(shmsock_writer_free(null_mut()), SHMSOCK_OK);
    assert_eq!(shmsock_reader_free(null_mut()), SHMSOCK_OK);
    assert_eq!(
        unsafe { shmsock_write_message(null_mut(), 1, &mut null_mut()) },
        SHMSOCK_INVALID_ARGUMENT
    );
    let (server, client, l) = pair("orphan");
    assert_eq!(
        unsafe { shmsock_write_message(client, 1, null_mut()) },
        SHMSOCK_INVALID_ARGUMENT
    );
    // A writer is not a reader.
    let mut w = null_mut();
    assert_eq!(
        unsafe { shmsock_write_message(client, 10, &mut w) },
        SHMSOCK_OK
    );
    assert_eq!(
        unsafe { shmsock_reader_next_chunk(w.cast(), &mut c) },
        SHMSOCK_BAD_HANDLE
    );
    // A second writer on the same connection is refused.
    let mut w2 = null_mut();
    assert_eq!(
        unsafe { shmsock_write_message(client, 10, &mut w2) },
        SHMSOCK_BUSY
    );
    // Split is refused while the writer is out.
    let (mut tx, mut rx) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { shmsock_conn_split(client, &mut tx, &mut rx) },
        SHMSOCK_BUSY
    );
    // Freeing the connection ends the writer: its handle is then orphaned.
    assert_eq!(unsafe { shmsock_writer_next_chunk(w, &mut c) }, SHMSOCK_OK);
    assert_eq!(shmsock_conn_free(client), SHMSOCK_OK);
    assert_eq!(shmsock_writer_commit(w), SHMSOCK_BAD_HANDLE);
    assert!(
        last_error().contains("shmsock_writer has ended"),
        "{}",
        last_error()
    );
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    // The peer saw nothing of it, then the hang-up.
    let mut r = null_mut();
    assert_eq!(
        unsafe { shmsock_read_message_timeout(server, LONG, &mut r, null_mut()) },
        SHMSOCK_DISCONNECTED
    );
    assert!(r.is_null());
    assert_eq!(shmsock_conn_free(server), SHMSOCK_OK);
    assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
}

#[test]
fn split_halves_stream_too() {
    let (server, client, l) = pair("halves");
    let (mut tx, mut rx) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { shmsock_conn_split(client, &mut tx, &mut rx) },
        SHMSOCK_OK
    );
    let (mut stx, mut srx) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { shmsock_conn_split(server, &mut stx, &mut srx) },
        SHMSOCK_OK
    );
    let len = 3 << 20;
    let data: Vec<u8> = (0..len).map(pattern).collect();
    let txh = tx as usize;
    let d2 = data.clone();
    let t = std::thread::spawn(move || {
        let mut w = null_mut();
        let st = unsafe { shmsock_sender_write_message(txh as *mut _, d2.len(), &mut w) };
        assert_eq!(st, SHMSOCK_OK);
        let st = unsafe { shmsock_writer_write_all(w, d2.as_ptr().cast(), d2.len()) };
        assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
        st
    });
    let mut r = null_mut();
    assert_eq!(
        unsafe { shmsock_receiver_read_message_timeout(srx, LONG, &mut r, null_mut()) },
        SHMSOCK_OK
    );
    let mut got = Vec::new();
    let mut c = empty_chunk();
    while unsafe { shmsock_reader_next_chunk_timeout(r, LONG, &mut c) } == SHMSOCK_OK {
        got.extend_from_slice(unsafe { std::slice::from_raw_parts(c.data, c.len) });
    }
    assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
    assert_eq!(t.join().unwrap(), SHMSOCK_OK);
    assert!(got == data, "the message arrived intact");
    for h in [tx as usize, stx as usize] {
        assert_eq!(shmsock_sender_free(h as *mut _), SHMSOCK_OK);
    }
    for h in [rx as usize, srx as usize] {
        assert_eq!(shmsock_receiver_free(h as *mut _), SHMSOCK_OK);
    }
    assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
}

#[test]
fn shutdown_from_another_thread_wakes_a_blocked_recv() {
    let (server, client, l) = pair("shutdown");
    let sh = server as usize;
    let blocked = std::thread::spawn(move || {
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        unsafe { shmsock_recv_timeout(sh as *mut _, SHMSOCK_FOREVER, &mut m) }
    });
    // The handle is busy for anything but a shutdown while recv blocks.
    until_busy(|| {
        let mut fd = -1;
        unsafe { shmsock_conn_recv_fd(server, &mut fd) }
    });
    assert_eq!(
        shmsock_conn_shutdown(server),
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    assert_eq!(blocked.join().unwrap(), SHMSOCK_DISCONNECTED);
    // Later calls fail at once; a second shutdown is harmless.
    assert_eq!(
        unsafe { shmsock_send(server, b"x".as_ptr().cast(), 1) },
        SHMSOCK_DISCONNECTED
    );
    assert_eq!(shmsock_conn_shutdown(server), SHMSOCK_OK);
    // The peer sees the end.
    let mut m = shmsock_message {
        data: null(),
        len: 0,
        id: 0,
    };
    assert_eq!(
        unsafe { shmsock_recv_timeout(client, LONG, &mut m) },
        SHMSOCK_DISCONNECTED
    );
    free(server, client, l);
    // Freed: the handle is gone from the shutdown table too.
    assert_eq!(shmsock_conn_shutdown(server), SHMSOCK_BAD_HANDLE);
    assert_eq!(shmsock_conn_shutdown(null_mut()), SHMSOCK_INVALID_ARGUMENT);
}

#[test]
fn shutdown_through_a_half_ends_both_and_wakes_a_blocked_reader() {
    let (server, client, l) = pair("shutdown-halves");
    let (mut tx, mut rx) = (null_mut(), null_mut());
    assert_eq!(
        unsafe { shmsock_conn_split(server, &mut tx, &mut rx) },
        SHMSOCK_OK
    );
    // The old connection handle is retired, in the shutdown table too.
    assert_eq!(shmsock_conn_shutdown(server), SHMSOCK_BAD_HANDLE);
    // A wrong kind is refused.
    assert_eq!(shmsock_sender_shutdown(rx.cast()), SHMSOCK_BAD_HANDLE);
    // A reader waiting for a message's next piece wakes too.
    let mut w = null_mut();
    assert_eq!(
        unsafe { shmsock_write_message(client, 4 << 20, &mut w) },
        SHMSOCK_OK
    );
    let mut c = empty_chunk();
    assert_eq!(unsafe { shmsock_writer_next_chunk(w, &mut c) }, SHMSOCK_OK);
    assert_eq!(shmsock_writer_commit(w), SHMSOCK_OK);
    let rh = rx as usize;
    let blocked = std::thread::spawn(move || {
        let mut r = null_mut();
        let st = unsafe {
            shmsock_receiver_read_message_timeout(rh as *mut _, LONG, &mut r, null_mut())
        };
        assert_eq!(st, SHMSOCK_OK);
        let mut c = empty_chunk();
        let mut st;
        loop {
            st = unsafe { shmsock_reader_next_chunk_timeout(r, SHMSOCK_FOREVER, &mut c) };
            if st != SHMSOCK_OK {
                break;
            }
        }
        assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
        st
    });
    until_busy(|| {
        let mut fd = -1;
        unsafe { shmsock_receiver_fd(rx, &mut fd) }
    });
    assert_eq!(shmsock_sender_shutdown(tx), SHMSOCK_OK, "{}", last_error());
    assert_eq!(blocked.join().unwrap(), SHMSOCK_DISCONNECTED);
    assert_eq!(shmsock_receiver_shutdown(rx), SHMSOCK_OK);
    assert_eq!(shmsock_writer_free(w), SHMSOCK_OK);
    assert_eq!(shmsock_sender_free(tx), SHMSOCK_OK);
    assert_eq!(shmsock_receiver_free(rx), SHMSOCK_OK);
    assert_eq!(shmsock_sender_shutdown(tx), SHMSOCK_BAD_HANDLE);
    assert_eq!(shmsock_conn_free(client), SHMSOCK_OK);
    assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
}

unsafe extern "C" fn collect(ctx: *mut std::ffi::c_void, data: *const u8, len: usize) {
    let out = unsafe { &mut *ctx.cast::<Vec<Vec<u8>>>() };
    out.push(unsafe { std::slice::from_raw_parts(data, len) }.to_vec());
}

#[test]
fn batches_send_and_receive_in_order() {
    let (server, client, l) = pair("batch");
    let mut max_inline = 0;
    assert_eq!(
        unsafe { shmsock_conn_max_inline(client, &mut max_inline) },
        SHMSOCK_OK
    );
    // Small messages, an empty one, and one streamed in fragments.
    let msgs: Vec<Vec<u8>> = (0..40usize)
        .map(|i| match i {
            7 => Vec::new(),
            20 => (0..max_inline * 3).map(pattern).collect(),
            _ => vec![i as u8; 1 + i % 50],
        })
        .collect();
    let bufs: Vec<shmsock_buf> = msgs
        .iter()
        .map(|m| shmsock_buf {
            data: m.as_ptr().cast(),
            len: m.len(),
        })
        .collect();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let ctx = (&raw mut got).cast();
    let mut n = 99;
    // Nothing yet: would block, sets no count.
    assert_eq!(
        unsafe { shmsock_try_recv_batch(server, 16, Some(collect), ctx, &mut n) },
        SHMSOCK_WOULD_BLOCK
    );
    let bh = bufs.as_ptr() as usize;
    let count = bufs.len();
    let c = client as usize;
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        let st = unsafe {
            shmsock_send_batch_timeout(c as *mut _, bh as *const _, count, LONG, &mut sent)
        };
        (st, sent)
    });
    while got.len() < msgs.len() {
        let st =
            unsafe { shmsock_recv_batch_timeout(server, 16, LONG, Some(collect), ctx, &mut n) };
        assert_eq!(st, SHMSOCK_OK, "{}", last_error());
        assert!((1..=16).contains(&n));
    }
    assert_eq!(sender.join().unwrap(), (SHMSOCK_OK, msgs.len()));
    assert!(got == msgs, "every message arrived once, in order");
    // Argument checks.
    assert_eq!(
        unsafe { shmsock_recv_batch(server, 16, None, ctx, &mut n) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { shmsock_recv_batch(server, 0, Some(collect), ctx, &mut n) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { shmsock_send_batch(client, null(), 3, &mut n) },
        SHMSOCK_INVALID_ARGUMENT
    );
    assert_eq!(
        unsafe { shmsock_send_batch(client, null(), 0, &mut n) },
        SHMSOCK_OK
    );
    assert_eq!(n, 0);
    assert_eq!(
        unsafe { shmsock_send_batch(client, bufs.as_ptr(), 1, null_mut()) },
        SHMSOCK_INVALID_ARGUMENT
    );
    free(server, client, l);
}

/// Pieces `shmsock_read_message` sees of one 1 MiB message sent with
/// `shmsock_send` through a 4 MiB ring (one record would hold it) by a
/// sender whose options set `shmsock_options_set_pipeline_threshold(t)`
/// and `shmsock_options_set_fragment_size(f)` (`None`: not set); every
/// byte checked, and `shmsock_recv` sees the next such message whole.
fn pieces_of_send(name: &str, threshold: Option<usize>, fragment: Option<usize>) -> Vec<usize> {
    const LEN: usize = 1 << 20;
    let mut opts = null_mut();
    assert_eq!(unsafe { shmsock_options_new(&mut opts) }, SHMSOCK_OK);
    assert_eq!(shmsock_options_set_ring_capacity(opts, 4 << 20), SHMSOCK_OK);
    if let Some(t) = threshold {
        assert_eq!(
            shmsock_options_set_pipeline_threshold(opts, t),
            SHMSOCK_OK,
            "{}",
            last_error()
        );
    }
    if let Some(f) = fragment {
        assert_eq!(
            shmsock_options_set_fragment_size(opts, f),
            SHMSOCK_OK,
            "{}",
            last_error()
        );
    }
    let path = sock_path(name);
    let mut l = null_mut();
    assert_eq!(
        unsafe { shmsock_listen(path.as_ptr(), opts, &mut l) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    assert_eq!(shmsock_options_free(opts), SHMSOCK_OK);
    let lh = l as usize;
    let data: Vec<u8> = (0..LEN).map(pattern).collect();
    let sender = std::thread::spawn(move || {
        let mut c = null_mut();
        let st = unsafe { shmsock_accept_timeout(lh as *mut _, LONG, &mut c) };
        if st != SHMSOCK_OK {
            return st;
        }
        for _ in 0..2 {
            let st = unsafe { shmsock_send(c, data.as_ptr().cast(), data.len()) };
            if st != SHMSOCK_OK {
                return st;
            }
        }
        // Until the receiver has read both (its reply).
        let mut m = shmsock_message {
            data: null(),
            len: 0,
            id: 0,
        };
        let st = unsafe { shmsock_recv_timeout(c, LONG, &mut m) };
        if st != SHMSOCK_OK {
            return st;
        }
        assert_eq!(unsafe { shmsock_release(c, &mut m) }, SHMSOCK_OK);
        shmsock_conn_free(c)
    });
    let mut client = null_mut();
    assert_eq!(
        unsafe { shmsock_connect(path.as_ptr(), null(), &mut client) },
        SHMSOCK_OK
    );
    let mut r = null_mut();
    let mut len = 0;
    assert_eq!(
        unsafe { shmsock_read_message_timeout(client, LONG, &mut r, &mut len) },
        SHMSOCK_OK,
        "{}",
        last_error()
    );
    assert_eq!(len, LEN);
    let (mut seen, mut pieces) = (0usize, Vec::new());
    let mut c = empty_chunk();
    loop {
        match unsafe { shmsock_reader_next_chunk_timeout(r, LONG, &mut c) } {
            SHMSOCK_OK => {}
            SHMSOCK_END => break,
            st => panic!("{st:?}: {}", last_error()),
        }
        assert_eq!(c.offset, seen);
        let got = unsafe { std::slice::from_raw_parts(c.data, c.len) };
        for (k, b) in got.iter().enumerate() {
            assert_eq!(*b, pattern(seen + k), "byte {}", seen + k);
        }
        seen += c.len;
        pieces.push(c.len);
    }
    assert_eq!(seen, LEN);
    assert_eq!(shmsock_reader_free(r), SHMSOCK_OK);
    let mut m = shmsock_message {
        data: null(),
        len: 0,
        id: 0,
    };
    assert_eq!(
        unsafe { shmsock_recv_timeout(client, LONG, &mut m) },
        SHMSOCK_OK
    );
    let got = unsafe { std::slice::from_raw_parts(m.data, m.len) };
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    assert_eq!(got.len(), LEN);
    assert_eq!(unsafe { shmsock_release(client, &mut m) }, SHMSOCK_OK);
    assert_eq!(
        unsafe { shmsock_send(client, b"done".as_ptr().cast(), 4) },
        SHMSOCK_OK
    );
    assert_eq!(sender.join().unwrap(), SHMSOCK_OK, "{}", last_error());
    assert_eq!(shmsock_conn_free(client), SHMSOCK_OK);
    assert_eq!(shmsock_listener_free(l), SHMSOCK_OK);
    pieces
}

#[test]
fn pipeline_threshold_decides_whether_send_splits_a_message_that_fits_one_record() {
    const LEN: usize = 1 << 20;
    // The default (256 KiB): a 1 MiB message goes in 128 KiB fragments
    // (the first 8 bytes short: the start header).
    let lens = pieces_of_send("pipe-default", None, None);
    assert_eq!(lens.len(), (LEN + 8).div_ceil(128 << 10), "{lens:?}");
    assert_eq!(lens[0], (128 << 10) - 8);
    // Set below the message: the same.
    let lens = pieces_of_send("pipe-on", Some(64 << 10), None);
    assert_eq!(lens.len(), (LEN + 8).div_ceil(128 << 10), "{lens:?}");
    // At the message's size, or off (SIZE_MAX): one record, one piece.
    assert_eq!(pieces_of_send("pipe-at", Some(LEN), None), [LEN]);
    assert_eq!(pieces_of_send("pipe-off", Some(usize::MAX), None), [LEN]);
}

#[test]
fn fragment_size_sets_the_pieces_of_a_large_send() {
    const LEN: usize = 1 << 20;
    // Pipelined (the default threshold): 64 KiB fragments instead of 128.
    let lens = pieces_of_send("frag-64k", None, Some(64 << 10));
    assert_eq!(lens.len(), (LEN + 8).div_ceil(64 << 10), "{lens:?}");
    assert_eq!(lens[0], (64 << 10) - 8);
    // Rounded down to a multiple of 8.
    let lens = pieces_of_send("frag-odd", None, Some((64 << 10) + 5));
    assert_eq!(lens[0], (64 << 10) - 8, "{lens:?}");
    // A NULL options handle is refused.
    assert_eq!(
        shmsock_options_set_fragment_size(null_mut(), 4096),
        SHMSOCK_INVALID_ARGUMENT
    );
}
