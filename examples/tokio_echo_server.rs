//! An async echo server: one task per client on a multi-threaded tokio
//! runtime (feature `tokio`). Each reply is written straight into the ring
//! while the request is still held in place (no copy of the request).
//!
//! Run: `cargo run --release --features tokio --example tokio_echo_server -- /tmp/echo.sock`
//! then `cargo run --release --features tokio --example tokio_echo_client -- /tmp/echo.sock 1000`
//! (1,000 concurrent clients in one process). With `--self-test N` the
//! server also runs N client tasks against itself and exits once they are
//! done (what CI runs).

use std::time::{Duration, Instant};

use shmsock::tokio::{Connection, Listener};
use shmsock::{Builder, Error};

/// Small rings: a thousand connections hold two thousand of them (each
/// fully allocated, as the receiver checks).
const RING: u64 = 64 * 1024;
/// Round trips per client in the self-test.
const ROUNDS: u32 = 100;

/// Echoes until the client leaves; returns how many messages it echoed.
async fn serve(mut conn: Connection) -> Result<u64, Error> {
    let (tx, rx) = conn.split();
    let mut n = 0;
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(Error::Disconnected) => return Ok(n),
            Err(e) => return Err(e),
        };
        if msg.len() <= tx.max_inline() {
            let mut reply = tx.reserve(msg.len()).await?;
            msg.copy_to(&mut reply);
            reply.commit()?;
        } else {
            // Larger than one ring record: reassembled into our memory.
            let v = msg.into_vec();
            tx.send(&v).await?;
        }
        n += 1;
    }
}

/// `n` clients, all connected at once, `ROUNDS` checked round trips each.
async fn run_clients(path: String, n: u32) -> Result<(), Error> {
    let t = Instant::now();
    // Connect at most 32 at a time: the listener keeps a bounded set of
    // pending handshakes. Every connection stays open to the end.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for id in 0..n {
        let (path, gate) = (path.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opts = Builder::new().ring_capacity(RING);
            let mut c = Connection::connect_with(&path, &opts).await?;
            drop(permit);
            for r in 0..ROUNDS {
                let msg = [id.to_le_bytes(), r.to_le_bytes()].concat();
                c.send(&msg).await?;
                let back = c.recv().await?.to_vec();
                assert_eq!(back, msg, "client {id}: wrong echo");
            }
            Ok::<_, Error>(c)
        }));
    }
    let mut live = Vec::new();
    for t in tasks {
        match t.await {
            Ok(c) => live.push(c?),
            Err(e) => panic!("client task: {e}"),
        }
    }
    eprintln!(
        "{} clients connected at once, {ROUNDS} round trips each, in {:.2?}",
        live.len(),
        t.elapsed()
    );
    Ok(())
}

/// Lets this process hold the fds of a thousand connections (sockets and
/// rings on both sides when the clients run here too).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let max = getrlimit(Resource::Nofile).maximum;
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: max,
            maximum: max,
        },
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/shmsock-tokio-echo.sock".into());
    let self_test: Option<u32> = match args.next().as_deref() {
        Some("--self-test") => Some(args.next().map_or(Ok(1000), |n| n.parse())?),
        _ => None,
    };
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let opts = Builder::new()
            .ring_capacity(RING)
            .handshake_timeout(Duration::from_secs(5));
        let listener = Listener::bind_with(&path, opts)?;
        eprintln!("tokio echo server on {path}");
        let clients = async {
            match self_test {
                Some(n) => run_clients(path.clone(), n).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(clients);
        loop {
            tokio::select! {
                c = listener.accept() => match c {
                    Ok(c) => {
                        tokio::spawn(async move {
                            if let Err(e) = serve(c).await {
                                eprintln!("connection ended: {e}");
                            }
                        });
                    }
                    Err(e) => eprintln!("handshake failed: {e}"),
                },
                r = &mut clients => return r.map_err(Into::into),
            }
        }
    })
}
