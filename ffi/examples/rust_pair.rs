//! The Rust twin of `examples/c/bench_pair.c` (shmsock mode): the same
//! pair, message sizes, ring sizes, copies and output, written against the
//! Rust API, so that `scripts/c-bench.sh` can show what the C ABI costs.
//!
//!   rust_pair rtt|bulk [SECONDS]
#![allow(clippy::unwrap_used, clippy::expect_used)] // an example: failures abort the run

use std::time::{Duration, Instant};

use shmsock_transport::{Builder, Connection};

const RTT_SIZE: usize = 64;
const BULK_SIZE: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

fn pin(cpu: usize) {
    // SAFETY: sysconf has no memory-safety preconditions.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        return;
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed. Best effort.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
}

fn recv_into(c: &mut Connection, buf: &mut [u8]) -> usize {
    let m = c.recv_timeout(TIMEOUT).expect("recv");
    m.copy_to(buf)
}

fn peer(mut c: Connection, bulk: bool) {
    let mut buf = vec![0u8; BULK_SIZE];
    let mut count = 0u64;
    loop {
        let n = recv_into(&mut c, &mut buf);
        if !bulk {
            if n == 0 {
                break;
            }
            c.send_timeout(&buf[..n], TIMEOUT).expect("echo");
        } else if n == 1 {
            c.send_timeout(&count.to_le_bytes(), TIMEOUT).expect("ack");
            break;
        } else {
            count += 1;
        }
    }
}

fn rtt(c: &mut Connection, secs: f64) {
    let msg = [0xabu8; RTT_SIZE];
    let mut back = [0u8; RTT_SIZE];
    for _ in 0..2000 {
        c.send_timeout(&msg, TIMEOUT).unwrap();
        recv_into(c, &mut back);
    }
    let mut samples = Vec::with_capacity(1 << 20);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while samples.len() < 1 << 20 {
        let t0 = Instant::now();
        c.send_timeout(&msg, TIMEOUT).unwrap();
        assert_eq!(recv_into(c, &mut back), RTT_SIZE);
        let t1 = Instant::now();
        samples.push((t1 - t0).as_nanos() as u64);
        if t1 >= end {
            break;
        }
    }
    c.send_timeout(&[], TIMEOUT).unwrap();
    samples.sort_unstable();
    let n = samples.len();
    println!("RESULT rust-shm rtt_p50 {} ns", samples[n / 2]);
    println!("RESULT rust-shm rtt_p99 {} ns", samples[n * 99 / 100]);
    eprintln!("rust-shm: {n} round trips of 64 B");
}

fn bulk(c: &mut Connection, secs: f64) {
    let buf = vec![0x5au8; BULK_SIZE];
    for _ in 0..20 {
        c.send_timeout(&buf, TIMEOUT).unwrap();
    }
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while Instant::now() < end || sent < 64 {
        c.send_timeout(&buf, TIMEOUT).unwrap();
        sent += 1;
    }
    c.send_timeout(&buf[..1], TIMEOUT).unwrap();
    let mut ack = [0u8; 8];
    recv_into(c, &mut ack);
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(u64::from_le_bytes(ack), sent + 20, "lost messages");
    let gib = (sent as f64 * BULK_SIZE as f64) / f64::from(1u32 << 30);
    println!("RESULT rust-shm bulk {:.3} GiB/s", gib / secs);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let is_bulk = args.get(1).is_some_and(|a| a == "bulk");
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let size = if is_bulk { BULK_SIZE } else { RTT_SIZE };
    let ring = ((4 * size) as u64).next_power_of_two().max(64 << 10);
    let opts = Builder::new().ring_capacity(ring);
    let path = std::env::temp_dir().join(format!("shmsock-rust-pair-{}.sock", std::process::id()));
    let listener = opts.bind(&path).expect("bind");
    // SAFETY: this process has no other threads (the listener spawns
    // none), so the child may run ordinary code after fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        pin(1);
        let c = opts.connect(&path).expect("connect");
        peer(c, is_bulk);
        // SAFETY: ends the child without running the parent's atexit state.
        unsafe { libc::_exit(0) };
    }
    pin(0);
    let mut c = listener.accept_timeout(TIMEOUT).expect("accept");
    if is_bulk {
        bulk(&mut c, secs);
    } else {
        rtt(&mut c, secs);
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "peer failed"
    );
}
