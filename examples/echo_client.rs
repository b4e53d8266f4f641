//! Sends messages to `echo_server` and checks the echoes; prints the round
//! trip.
//!
//! Run: `cargo run --release --example echo_client -- /tmp/echo.sock [count]`

use std::time::Instant;

use shmsock::Connection;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/shmsock-echo.sock".into());
    let count: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let mut conn = Connection::connect(&path)?;
    let start = Instant::now();
    for i in 0..count {
        let msg = i.to_le_bytes();
        conn.send(&msg)?;
        let reply = conn.recv()?;
        if reply.to_vec() != msg {
            return Err(format!("echo {i} differs").into());
        }
    }
    let per = start.elapsed() / count.max(1) as u32;
    println!("{count} round trips, {per:?} each");
    Ok(())
}
