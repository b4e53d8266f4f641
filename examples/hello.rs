//! The smallest complete shmsock program: a server and a client process
//! exchange one message each way.
//!
//! Run: `cargo run --example hello`

use shmsock::{Connection, Listener};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = format!("@shmsock-hello-{}", std::process::id());
    let listener = Listener::bind(&path)?;

    // SAFETY: no other thread exists yet, so the child cannot inherit a lock
    // held by one.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            let mut conn = Connection::connect(&path)?;
            conn.send(b"hello from the client")?;
            let reply = conn.recv()?;
            println!("client got: {}", String::from_utf8_lossy(&reply.to_vec()));
            Ok(())
        }
        nix::unistd::ForkResult::Parent { child } => {
            let mut conn = listener.accept()?;
            let msg = conn.recv()?.to_vec();
            println!(
                "server got: {} (from pid {:?})",
                String::from_utf8_lossy(&msg),
                conn.peer_credentials().pid
            );
            conn.send(b"hello from the server")?;
            nix::sys::wait::waitpid(child, None)?;
            Ok(())
        }
    }
}
