//! An echo server that serves many clients from one thread with `poll(2)`.
//!
//! Run: `cargo run --release --example echo_server -- /tmp/echo.sock`
//! then one or more `cargo run --release --example echo_client -- /tmp/echo.sock`.
//!
//! The readiness rule (see `docs/design.md`): a connection's fd becomes
//! readable when the peer wakes us, and the peer only wakes a reader that
//! armed the wake-up. `try_recv` arms it when it finds the ring empty, so
//! drain each readable connection with `try_recv` until it returns
//! `Ok(None)`, and only then go back to `poll`.
//!
//! The listener follows the same rule: its fd is readable whenever a
//! handshake can advance, and `try_accept` advances them without ever
//! waiting, so a client that connects and stays silent never stalls the
//! others. Call it until it returns `Ok(None)`.

use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use shmsock::{Builder, Connection, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/shmsock-echo.sock".into());
    let listener = Builder::new()
        .timeout(Some(Duration::from_secs(1)))
        .handshake_timeout(Duration::from_millis(500))
        .bind(&path)?;
    eprintln!("echo server on {path}");
    let mut conns: Vec<Connection> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        // Serve every connection until its ring is empty (which arms it).
        let mut i = 0;
        while i < conns.len() {
            if serve(&mut conns[i], &mut buf) {
                i += 1;
            } else {
                let c = conns.swap_remove(i);
                eprintln!("client {:?} left", c.peer_credentials().pid);
            }
        }
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 1);
        fds.push(PollFd::new(&listener, PollFlags::IN));
        for c in &conns {
            fds.push(PollFd::from_borrowed_fd(c.as_fd(), PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let accept_ready = !fds[0].revents().is_empty();
        drop(fds);
        // Bounded: each call does a bounded amount of work, and a flood of
        // clients is served again after one round of the others.
        for _ in 0..if accept_ready { 64 } else { 0 } {
            match listener.try_accept() {
                Ok(Some(c)) => {
                    eprintln!("client {:?} joined", c.peer_credentials().pid);
                    conns.push(c);
                }
                Ok(None) => break,
                // A bad client is its own problem; keep serving the rest.
                Err(e) => eprintln!("handshake failed: {e}"),
            }
        }
    }
}

/// Echoes what is ready; returns false when the connection is finished.
fn serve(c: &mut Connection, buf: &mut Vec<u8>) -> bool {
    let pid = c.peer_credentials().pid;
    loop {
        let n = match c.try_recv() {
            Ok(Some(m)) => {
                if m.len() > buf.len() {
                    buf.resize(m.len(), 0);
                }
                m.copy_to(buf)
            }
            Ok(None) => return true,
            Err(Error::Disconnected) => return false,
            Err(e) => {
                eprintln!("dropping client {pid:?}: {e}");
                return false;
            }
        };
        if let Err(e) = c.send(&buf[..n]) {
            eprintln!("dropping client {pid:?}: {e}");
            return false;
        }
    }
}
