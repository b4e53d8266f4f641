//! Typed messages over request/response (threads in one process; the
//! process-level tests are in the workspace's tests/services_fork.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmsock_services::rpc::{Client, Server};
use shmsock_services::typed::{self, Kind};
use shmsock_services::Error;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Greet {
    name: String,
    times: u32,
}
impl Kind for Greet {
    const KIND: u32 = 10;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
struct Add {
    a: u64,
    b: u64,
}
impl Kind for Add {
    const KIND: u32 = 11;
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn serde_and_pod_round_trip_and_kinds_checked() {
    let p = format!("@shmsock-typed-{}", std::process::id());
    let server = Server::serve(p.as_str()).unwrap();
    std::thread::spawn(move || {
        server.run(|req| {
            if req.is::<Greet>() {
                let g: Greet = req.decode().map_err(|e| e.to_string())?;
                typed::serde_reply(&vec![g.name; g.times as usize])
            } else if req.is::<Add>() {
                let a: Add = req.pod().map_err(|e| e.to_string())?;
                Ok(typed::pod_reply(&(a.a + a.b)))
            } else {
                // Decoding as the wrong kind is refused.
                let r: Result<Add, _> = req.pod();
                Err(r.unwrap_err().to_string())
            }
        })
    });
    let mut c = loop {
        match Client::connect(p.as_str()) {
            Ok(c) => break c,
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let r: Vec<String> = c
        .call_serde(
            &Greet {
                name: "hi".into(),
                times: 3,
            },
            WAIT,
        )
        .unwrap();
    assert_eq!(r, ["hi", "hi", "hi"]);
    let sum: u64 = c.call_pod(&Add { a: 40, b: 2 }, WAIT).unwrap();
    assert_eq!(sum, 42);
    // A reply of the wrong size for the type is refused.
    let r: Result<u32, _> = c.call_pod(&Add { a: 1, b: 1 }, WAIT);
    assert!(matches!(r, Err(Error::Codec(_))), "{r:?}");
    // A body of another kind: the server's decode refuses it.
    let r = c.call(99, &[0u8; 16], WAIT);
    assert!(matches!(r, Err(Error::Remote(t)) if t.contains("kind 99")));
}

#[test]
fn serde_decode_refuses_garbage_and_trailing_bytes() {
    let mut b = typed::encode(&Greet {
        name: "x".into(),
        times: 1,
    })
    .unwrap();
    assert!(typed::decode::<Greet>(&b).is_ok());
    b.push(0);
    assert!(typed::decode::<Greet>(&b).is_err());
    // A string length far beyond the message: an error, no huge allocation.
    assert!(typed::decode::<Greet>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
}
