//! Publish/subscribe between processes: one publisher, three subscriber
//! processes (this binary re-run with `subscribe`).
//!
//! ```text
//! cargo run -p shmsock-services --example pubsub
//! ```
//!
//! Or by hand, in separate terminals:
//!
//! ```text
//! cargo run -p shmsock-services --example pubsub -- publish /tmp/ticks.sock
//! cargo run -p shmsock-services --example pubsub -- subscribe /tmp/ticks.sock
//! ```

use std::process::Command;
use std::time::Duration;

use shmsock_services::pubsub::{
    Error, Policy, Publisher, PublisherOptions, Subscriber, SubscriberOptions,
};

fn publish(path: &str, subscribers: usize) -> Result<(), Error> {
    let opts = PublisherOptions::new()
        .capacity(64 << 10)
        .policy(Policy::Block)
        .max_lag(Duration::from_secs(2))
        .history(4);
    let mut publisher = Publisher::create(path, opts)?;
    println!("publisher: waiting for {subscribers} subscriber(s) on {path}");
    publisher.wait_for_subscribers(subscribers, Duration::from_secs(30))?;
    for i in 0..10u64 {
        // Zero-copy: write the message in the ring, then publish it.
        let text = format!("tick {i}");
        let mut loan = publisher.loan(text.len())?;
        loan.copy_from_slice(text.as_bytes());
        let seq = loan.publish();
        println!("publisher: #{seq} {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    publisher.close();
    Ok(())
}

fn subscribe(path: &str) -> Result<(), Error> {
    let mut sub = Subscriber::subscribe(path, SubscriberOptions::new())?;
    let me = std::process::id();
    let mut buf = Vec::new();
    loop {
        match sub.recv_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(msg) => println!(
                "subscriber {me}: #{} {} (lost before it: {})",
                msg.seq,
                String::from_utf8_lossy(&buf),
                msg.lost
            ),
            Err(Error::Closed) => {
                println!("subscriber {me}: the publisher closed the topic");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["publish", path] => publish(path, 1)?,
        ["subscribe", path] => subscribe(path)?,
        [] => {
            let path =
                std::env::temp_dir().join(format!("shmsock-pubsub-example-{}", std::process::id()));
            let path = path
                .to_str()
                .ok_or("temporary path is not UTF-8")?
                .to_owned();
            let exe = std::env::current_exe()?;
            // The subscribers retry until the publisher's socket exists.
            let children = (0..3)
                .map(|_| Command::new(&exe).args(["subscribe-retry", &path]).spawn())
                .collect::<Result<Vec<_>, _>>()?;
            publish(&path, 3)?;
            for mut c in children {
                let st = c.wait()?;
                if !st.success() {
                    return Err(format!("a subscriber failed: {st}").into());
                }
            }
        }
        ["subscribe-retry", path] => {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match subscribe(path) {
                    Err(Error::Io { .. }) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    r => return Ok(r?),
                }
            }
        }
        _ => return Err("usage: pubsub [publish PATH | subscribe PATH]".into()),
    }
    Ok(())
}
