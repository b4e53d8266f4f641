//! Request/response (shmsock-services `rpc`) against the transport it runs
//! on: a 64-byte `Client::call` round trip, 32 requests pipelined (sent,
//! then waited for), and as the baseline a plain `Connection` echo of the
//! same payload plus the 16-byte header, all to a forked server process.
//!
//! Indicative: the server runs one thread per client and the processes are
//! not pinned. Run: `cargo bench -p shmsock-bench --bench rpc`;
//! smoke test: `cargo bench -p shmsock-bench --bench rpc -- --test`.
// A benchmark has no caller to hand an error to: a failed setup must abort
// it loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use shmsock::{Builder, Connection, Listener};
use shmsock_services::rpc::{Client, Server};

const WAIT: Duration = Duration::from_secs(30);

/// Forks a child running `f` forever; the returned guard kills it.
struct Child(Pid);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        let _ = waitpid(self.0, None);
    }
}

fn spawn(f: impl FnOnce()) -> Child {
    // SAFETY: called from criterion's main thread before this benchmark
    // starts any thread of its own; the child only runs `f` and exits.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            f();
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => Child(child),
    }
}

fn connect_retry<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(start.elapsed() < WAIT, "server did not come up");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn rpc(c: &mut Criterion) {
    let body = [0x5au8; 64];
    let mut g = c.benchmark_group("rpc");

    // Baseline: the transport alone, echoing header + body.
    let raw_path = format!("@shmsock-bench-rpc-raw-{}", std::process::id());
    let rp = raw_path.clone();
    let _raw = spawn(move || {
        let l = Listener::bind(&rp).expect("bind");
        let mut c = l.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match c.recv() {
                Ok(m) => m.copy_to(&mut buf),
                Err(_) => break,
            };
            if c.send(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut conn: Connection = connect_retry(|| Builder::new().connect(&raw_path).ok());
    let msg = [0x5au8; 80];
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_echo_80B", |b| {
        b.iter(|| {
            conn.send(&msg).unwrap();
            let r = conn.recv_timeout(WAIT).unwrap();
            assert_eq!(r.len(), 80);
        })
    });

    let path = format!("@shmsock-bench-rpc-{}", std::process::id());
    let p = path.clone();
    let _server = spawn(move || {
        let s = Server::serve(p.as_str()).expect("serve");
        let _ = s.run(|req| Ok(req.body.to_vec()));
    });
    let mut client = connect_retry(|| Client::connect(path.as_str()).ok());
    g.bench_function("call_64B", |b| {
        b.iter(|| {
            let r = client.call(1, &body, WAIT).unwrap();
            assert_eq!(r.len(), 64);
        })
    });
    g.throughput(Throughput::Elements(32));
    g.bench_function("pipelined_32x64B", |b| {
        let mut ids = Vec::with_capacity(32);
        b.iter(|| {
            ids.clear();
            for _ in 0..32 {
                ids.push(client.send_request(1, &body).unwrap());
            }
            for id in ids.drain(..) {
                assert_eq!(client.wait(id, WAIT).unwrap().len(), 64);
            }
        })
    });
    g.finish();
    drop(client);
    drop(conn);
}

criterion_group!(benches, rpc);
criterion_main!(benches);
