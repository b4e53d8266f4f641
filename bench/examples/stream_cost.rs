//! The software cost of one 64 B message, transport against bare ring, for
//! an instruction counter: one thread writes `K` messages, then reads them
//! back, over and over (no second core, no spinning, no waiting), so that
//! `valgrind --tool=callgrind` counts the same instructions on every run
//! whatever the machine's load. Run it with two message counts and divide
//! the difference of the totals by the difference of the counts:
//!
//! ```text
//! cargo build --release -p shmsock-bench --example stream_cost
//! for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/stream_cost send $n
//! done   # (Ir(200000) - Ir(100000)) / 100000 = instructions per message
//! ```
//!
//! Modes: `send` (`send` / `recv_into`), `reserve` (`reserve` + fill in
//! place + `commit` / `recv` + `copy_to`), `batch` (`send_batch` /
//! `recv_batch` of 32), and the bare ring of the shm crate: `ring`
//! (`try_push` / `try_read` + `copy_to`), `ringbatch` (32 per cursor
//! store, both sides). The payload is a fixed 64 B pattern (the bench's
//! fill and checksum are not what is measured here). It measures work, not
//! time: fences and cache-line transfers cost one instruction each here.

// A probe: any failure is a bug to surface loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use shmsock::shm::ring::heap_ring;
use shmsock::Builder;

/// Messages written before they are read back (fits a 64 KiB ring).
const K: usize = 256;
const LEN: usize = 64;
const RING: u64 = 64 << 10;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "send".into());
    let n: usize = args.next().map_or(100_000, |s| s.parse().expect("count"));
    let rounds = n / K;
    let payload = [0x5au8; LEN];
    let mut sink = 0u64;
    match mode.as_str() {
        "ring" | "ringbatch" => {
            let (mut p, mut c) = heap_ring(RING).expect("ring");
            let mut buf = [0u8; LEN];
            for _ in 0..rounds {
                if mode == "ring" {
                    for _ in 0..K {
                        let w = p.try_push(&payload).expect("push").expect("space");
                        let _ = w.redeem(|| Ok::<(), ()>(()));
                    }
                    for _ in 0..K {
                        let g = c.try_read().expect("read").expect("record");
                        g.copy_to(&mut buf);
                        sink += u64::from(buf[7]);
                        let _ = g.release().redeem(|| Ok::<(), ()>(()));
                    }
                } else {
                    for i in 0..K {
                        let mut g = p.try_reserve(LEN).expect("reserve").expect("space");
                        g.fill_from(&payload);
                        g.commit_deferred();
                        if i % 32 == 31 {
                            let _ = p.publish().redeem(|| Ok::<(), ()>(()));
                        }
                    }
                    for i in 0..K {
                        let g = c.try_read().expect("read").expect("record");
                        g.copy_to(&mut buf);
                        sink += u64::from(buf[7]);
                        g.release_deferred();
                        if i % 32 == 31 {
                            let _ = c.flush_releases().redeem(|| Ok::<(), ()>(()));
                        }
                    }
                }
            }
        }
        "send" | "reserve" | "batch" => {
            let name = format!("@shmsock-stream-cost-{}", std::process::id());
            let b = Builder::new().ring_capacity(RING);
            let listener = b.bind(&name).expect("bind");
            let client = {
                let b = b.clone();
                let name = name.clone();
                std::thread::spawn(move || b.connect(&name).expect("connect"))
            };
            let mut server = listener.accept().expect("accept");
            let mut client = client.join().expect("client thread");
            let mut rx = Vec::with_capacity(LEN);
            let mut buf = [0u8; LEN];
            let batch: Vec<&[u8]> = vec![&payload[..]; 32];
            for _ in 0..rounds {
                match mode.as_str() {
                    "send" => {
                        for _ in 0..K {
                            client.send(&payload).expect("send");
                        }
                        for _ in 0..K {
                            server.recv_into(&mut rx).expect("recv");
                            sink += u64::from(rx[7]);
                        }
                    }
                    "reserve" => {
                        for _ in 0..K {
                            let mut g = client.reserve(LEN).expect("reserve");
                            g.fill_from(&payload);
                            g.commit().expect("commit");
                        }
                        for _ in 0..K {
                            let m = server.recv().expect("recv");
                            m.copy_to(&mut buf);
                            sink += u64::from(buf[7]);
                        }
                    }
                    _ => {
                        for _ in 0..K / 32 {
                            assert_eq!(client.send_batch(&batch).expect("send_batch"), 32);
                        }
                        let mut got = 0;
                        while got < K {
                            got += server
                                .recv_batch(32, |m| sink += u64::from(m[7]))
                                .expect("recv_batch");
                        }
                    }
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{mode} {} messages, sink {sink}", rounds * K);
}
