//! Async clients of `tokio_echo_server` (feature `tokio`): N tasks on a
//! multi-threaded runtime, all connected at once, each doing checked round
//! trips of small messages and one of a message larger than its ring.
//!
//! Run: `cargo run --release --features tokio --example tokio_echo_client -- /tmp/echo.sock 1000`

use std::time::Instant;

use shmsock::tokio::Connection;
use shmsock::{Builder, Error};

const RING: u64 = 64 * 1024;
const ROUNDS: u32 = 100;

async fn one_client(
    path: String,
    id: u32,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
) -> Result<Connection, Error> {
    // Connect at most 32 at a time (the server keeps a bounded set of
    // pending handshakes); the connection then stays open.
    let permit = gate.acquire_owned().await;
    let opts = Builder::new().ring_capacity(RING);
    let mut c = Connection::connect_with(&path, &opts).await?;
    drop(permit);
    for r in 0..ROUNDS {
        let msg = [id.to_le_bytes(), r.to_le_bytes()].concat();
        c.send(&msg).await?;
        assert_eq!(c.recv().await?.to_vec(), msg, "client {id}: wrong echo");
    }
    // One message larger than the ring: streamed in fragments both ways.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i ^ id) as u8).collect();
    c.send(&big).await?;
    assert_eq!(
        c.recv().await?.into_vec(),
        big,
        "client {id}: wrong large echo"
    );
    Ok(c)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/shmsock-tokio-echo.sock".into());
    let n: u32 = args.next().map_or(Ok(1000), |n| n.parse())?;
    {
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let t = Instant::now();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
        let tasks: Vec<_> = (0..n)
            .map(|id| tokio::spawn(one_client(path.clone(), id, gate.clone())))
            .collect();
        let mut live = Vec::new();
        for t in tasks {
            live.push(t.await??);
        }
        println!(
            "{} clients connected at once, {ROUNDS} round trips + one 200 KB echo each, in {:.2?}",
            live.len(),
            t.elapsed()
        );
        Ok(())
    })
}
