//! Request/response: a server answering many clients, a client with many
//! requests outstanding, per-request timeouts.
//!
//! Run: `cargo run -p shmsock-services --example rpc`
//! (the server listens on a socket path here; give it a service name
//! instead, such as `Server::serve("demo.rpc")`, to go through a broker).

use std::time::{Duration, Instant};

use shmsock_services::rpc::{Client, Server};

const UPPER: u32 = 1;
const SLOW: u32 = 2;

fn main() -> Result<(), shmsock_services::Error> {
    let path = format!("@shmsock-example-rpc-{}", std::process::id());
    let server = Server::serve(path.as_str())?;
    std::thread::spawn(move || {
        server.run(|req| match req.kind {
            UPPER => Ok(req.body.to_ascii_uppercase()),
            SLOW => {
                std::thread::sleep(Duration::from_millis(200));
                Ok(b"late".to_vec())
            }
            k => Err(format!("unknown request kind {k}")),
        })
    });

    let mut client = Client::connect(path.as_str())?;
    // 1000 requests in flight, then their replies, matched by id.
    let start = Instant::now();
    let ids: Vec<_> = (0..1000)
        .map(|i| client.send_request(UPPER, format!("request {i}").as_bytes()))
        .collect::<Result<_, _>>()?;
    for (i, id) in ids.into_iter().enumerate() {
        let r = client.wait(id, Duration::from_secs(5))?;
        assert_eq!(r, format!("REQUEST {i}").as_bytes());
    }
    println!("1000 pipelined requests in {:?}", start.elapsed());

    // A per-request timeout; the connection stays usable.
    match client.call(SLOW, b"", Duration::from_millis(20)) {
        Err(e) if e.is_timeout() => println!("slow request timed out, as asked"),
        r => println!("unexpected: {r:?}"),
    }
    println!(
        "{}",
        String::from_utf8_lossy(&client.call(UPPER, b"still here", Duration::from_secs(5))?)
    );
    // Remote errors are per request too.
    println!("{:?}", client.call(99, b"", Duration::from_secs(5)));
    Ok(())
}
