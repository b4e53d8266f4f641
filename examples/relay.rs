//! A relay server: every message a client sends is forwarded to every other
//! client, from ONE thread, without a `Mutex<Sender>` per destination and
//! without letting one stalled client block the others.
//!
//! The pattern:
//! - each connection is split into its [`Sender`] and [`Receiver`];
//! - every destination has a bounded queue of messages not yet sent;
//! - [`Sender::try_send`] never waits: when the destination's ring is full
//!   it returns `Ok(false)` and arms the space wake-up, after which the
//!   sender's fd becomes readable once the client has read something;
//! - one `poll(2)` covers the listener, every receiver (data wake-ups) and
//!   every sender with a non-empty queue (space wake-ups);
//! - while some destination's queue is full, the relay reads nobody
//!   (back-pressure: the sources' rings fill and their `send`s wait), and a
//!   destination whose full queue has not moved for [`STALL`] is evicted.
//!   The policy is the application's; dropping the oldest messages for
//!   the slow client, instead of evicting it, is the other common choice.
//!
//! Run: `cargo run --release --example relay` (a demo: the relay plus three
//! clients in threads, one of which stops reading and gets evicted), or
//! `cargo run --release --example relay -- /tmp/relay.sock` for the relay
//! alone.

// Example code: a client thread that panicked is a bug to surface loudly.
#![allow(clippy::expect_used)]

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use shmsock::{Builder, Error, Listener, Receiver, Sender};

/// Messages queued for one destination before the relay stops reading.
const MAX_QUEUED: usize = 1024;
/// How long a destination with a full queue may make no progress.
/// Generous: a busy machine can hold a healthy reader back for a while.
const STALL: Duration = Duration::from_secs(2);
/// The largest message the relay forwards. Inline messages only, so that
/// `try_send` never has to wait (a larger one would stream in fragments,
/// which `try_send` sends to the end before it returns).
const MAX_MESSAGE: usize = 4096;

struct Client {
    id: u32,
    tx: Sender,
    rx: Receiver,
    queue: VecDeque<Vec<u8>>,
    /// When `tx` last took a message, or the queue was last empty.
    progress: Instant,
}

/// What one relay round decided about a client.
enum Fate {
    Keep,
    Left,
    Evict(String),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1) {
        Some(path) => {
            let listener = relay_listener(&path)?;
            eprintln!("relay on {path}");
            relay(&listener)
        }
        None => demo(),
    }
}

fn relay_listener(path: &str) -> shmsock::Result<Listener> {
    Builder::new()
        .max_inline_message(MAX_MESSAGE)
        .max_message(MAX_MESSAGE as u64)
        .handshake_timeout(Duration::from_millis(500))
        .bind(path)
}

/// Serves forever.
fn relay(listener: &Listener) -> Result<(), Box<dyn std::error::Error>> {
    let mut clients: Vec<Client> = Vec::new();
    let mut next_id = 0;
    loop {
        // 1. Send what each destination can take now, without waiting.
        let mut fates: Vec<Fate> = clients.iter_mut().map(flush).collect();
        // 2. If every queue has room, read every client until its ring is
        //    empty (which arms its data wake-up), one message at a time, and
        //    queue each message for every other client. Otherwise read
        //    nobody: back-pressure, until the full queue drains or its
        //    destination is evicted for stalling.
        let mut room = clients.iter().all(|c| c.queue.len() < MAX_QUEUED);
        for i in 0..clients.len() {
            while room && matches!(fates[i], Fate::Keep) {
                let msg = match clients[i].rx.try_recv() {
                    Ok(Some(m)) => m.to_vec(),
                    Ok(None) => break,
                    Err(Error::Disconnected) => {
                        fates[i] = Fate::Left;
                        break;
                    }
                    Err(e) => {
                        fates[i] = Fate::Evict(e.to_string());
                        break;
                    }
                };
                let from = clients[i].id;
                for c in clients.iter_mut().filter(|c| c.id != from) {
                    c.queue.push_back(msg.clone());
                    room &= c.queue.len() < MAX_QUEUED;
                }
            }
        }
        for (c, fate) in clients.iter_mut().zip(&mut fates) {
            if matches!(fate, Fate::Keep)
                && c.queue.len() >= MAX_QUEUED
                && c.progress.elapsed() > STALL
            {
                *fate = Fate::Evict(format!("{MAX_QUEUED} messages queued for {STALL:?}"));
            }
        }
        let mut i = 0;
        clients.retain(|c| {
            let keep = match &fates[i] {
                Fate::Keep => true,
                Fate::Left => {
                    eprintln!("relay: client {} left", c.id);
                    false
                }
                Fate::Evict(why) => {
                    eprintln!("relay: client {} evicted: {why}", c.id);
                    false
                }
            };
            i += 1;
            keep
        });
        // 3. Sleep until something can move: a client connects, sends, or
        //    frees space that a queued message is waiting for.
        let reading = clients.iter().all(|c| c.queue.len() < MAX_QUEUED);
        let mut fds = vec![PollFd::new(listener, PollFlags::IN)];
        for c in &clients {
            if reading {
                fds.push(PollFd::from_borrowed_fd(c.rx.as_fd(), PollFlags::IN));
            }
            if !c.queue.is_empty() {
                fds.push(PollFd::from_borrowed_fd(c.tx.as_fd(), PollFlags::IN));
            }
        }
        // A tick, to notice a destination that stalls.
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        match poll(&mut fds, Some(&tick)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(fds);
        // 4. Advance pending handshakes (never waits).
        for _ in 0..64 {
            match listener.try_accept() {
                Ok(Some(conn)) => {
                    let (tx, rx) = conn.split();
                    next_id += 1;
                    eprintln!("relay: client {next_id} joined");
                    clients.push(Client {
                        id: next_id,
                        tx,
                        rx,
                        queue: VecDeque::new(),
                        progress: Instant::now(),
                    });
                }
                Ok(None) => break,
                Err(e) => eprintln!("relay: handshake failed: {e}"),
            }
        }
    }
}

/// Sends `c`'s queue until it is empty or `c`'s ring is full.
fn flush(c: &mut Client) -> Fate {
    while let Some(msg) = c.queue.front() {
        match c.tx.try_send(msg) {
            Ok(true) => {
                c.queue.pop_front();
                c.progress = Instant::now();
            }
            // Full: the space wake-up is armed; poll on `c.tx` says when.
            Ok(false) => return Fate::Keep,
            Err(Error::Disconnected) => return Fate::Left,
            Err(e) => return Fate::Evict(e.to_string()),
        }
    }
    c.progress = Instant::now();
    Fate::Keep
}

/// The relay and three clients in threads: two chat and read everything,
/// the third stops reading and is evicted without slowing the others.
fn demo() -> Result<(), Box<dyn std::error::Error>> {
    const PER_CLIENT: u64 = 20_000;
    let path = format!("@shmsock-relay-demo-{}", std::process::id());
    let listener = relay_listener(&path)?;
    let client = |name: &'static str, reads: bool| {
        let path = path.clone();
        std::thread::spawn(move || -> shmsock::Result<u64> {
            let conn = Builder::new()
                .max_inline_message(MAX_MESSAGE)
                .timeout(Some(Duration::from_secs(10)))
                .connect(&path)?;
            let (mut tx, mut rx) = conn.split();
            if !reads {
                // Say hello, then never read: wait (at most 30 s) for the
                // relay to hang up on us, without touching the ring.
                tx.send(name.as_bytes())?;
                let mut fds = [PollFd::from_borrowed_fd(rx.as_fd(), PollFlags::IN)];
                for _ in 0..300 {
                    let tick = Timespec {
                        tv_sec: 0,
                        tv_nsec: 100_000_000,
                    };
                    let _ = poll(&mut fds, Some(&tick));
                    if fds[0].revents().contains(PollFlags::HUP) {
                        println!("{name}: evicted by the relay");
                        break;
                    }
                }
                return Ok(0);
            }
            let reader = std::thread::spawn(move || -> shmsock::Result<u64> {
                let mut got = 0;
                // Everything from the other reading client, plus the hello.
                while got < PER_CLIENT + 1 {
                    rx.recv()?;
                    got += 1;
                }
                Ok(got)
            });
            // Give the other clients time to join, so that they see it all.
            std::thread::sleep(Duration::from_millis(300));
            for i in 0..PER_CLIENT {
                tx.send(format!("{name} says {i}").as_bytes())?;
            }
            let got = reader.join().expect("reader thread")?;
            println!("{name}: sent {PER_CLIENT}, received {got}");
            Ok(got)
        })
    };
    // The relay thread ends with the process.
    std::thread::spawn(move || relay(&listener).map_err(|e| e.to_string()));
    let clients = [
        client("alice", true),
        client("bob", true),
        client("mallory", false),
    ];
    for c in clients {
        c.join().expect("client thread")?;
    }
    println!("the client that stopped reading was evicted; the others got every message");
    Ok(())
}
