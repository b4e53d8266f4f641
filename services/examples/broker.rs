//! Named services through a broker: a provider registers `demo.echo`, a
//! consumer looks it up, and the two talk directly over shmsock (the broker
//! only made the introduction).
//!
//! Run all three roles in one process (threads):
//! `cargo run -p shmsock-services --example broker`
//!
//! or as separate processes, in three terminals:
//! `cargo run -p shmsock-services --example broker -- broker`,
//! `cargo run -p shmsock-services --example broker -- provide`,
//! `cargo run -p shmsock-services --example broker -- consume`
//! (the broker socket is `$SHMSOCK_BROKER` or the default path; the
//! `shmsock broker` command runs the same broker).

use std::time::Duration;

use shmsock_services::broker::{default_socket_path, Broker, Provider};
use shmsock_services::{connect, LookupPolicy, Target};
use shmsock_transport::Builder;

fn run_broker() -> Result<(), shmsock_services::Error> {
    let mut b = Broker::bind(default_socket_path())?;
    println!("broker on {}", default_socket_path().display());
    b.run()
}

fn provide() -> Result<(), shmsock_services::Error> {
    // Only processes of our uid may look the name up.
    let mut p = Provider::register(default_socket_path(), "demo.echo", LookupPolicy::SameUid)?;
    loop {
        let intro = p.accept()?;
        println!(
            "consumer pid {} uid {}",
            intro.consumer().pid,
            intro.consumer().uid
        );
        std::thread::spawn(move || -> Result<(), shmsock_services::Error> {
            let mut conn = intro.accept(&Builder::new())?;
            loop {
                let m = conn.recv()?.to_vec();
                conn.send(&m)?;
            }
        });
    }
}

fn consume() -> Result<(), shmsock_services::Error> {
    let mut conn = connect(&Target::parse("demo.echo")?, &Builder::new())?;
    conn.send(b"hello through an introduction")?;
    let reply = conn.recv_timeout(Duration::from_secs(5))?.to_vec();
    println!("echo: {}", String::from_utf8_lossy(&reply));
    Ok(())
}

fn main() -> Result<(), shmsock_services::Error> {
    match std::env::args().nth(1).as_deref() {
        Some("broker") => run_broker(),
        Some("provide") => provide(),
        Some("consume") => consume(),
        _ => {
            // Everything in one process, on a private broker socket.
            let path = format!("@shmsock-example-broker-{}", std::process::id());
            std::env::set_var("SHMSOCK_BROKER", &path);
            let mut b = Broker::bind(&path)?;
            std::thread::spawn(move || b.run());
            std::thread::spawn(provide);
            // The provider registers in its own thread: retry until it has.
            for _ in 0..100 {
                match consume() {
                    Ok(()) => return Ok(()),
                    Err(shmsock_services::Error::Refused(_)) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => return Err(e),
                }
            }
            consume()
        }
    }
}
