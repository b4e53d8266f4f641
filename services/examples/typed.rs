//! Typed messages over request/response: a serde type (postcard) and a
//! plain-old-data type (bytemuck, written straight into the ring), each
//! with its message kind in the header.
//!
//! Run: `cargo run -p shmsock-services --features serde,pod --example typed`

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmsock_services::rpc::{Client, Server};
use shmsock_services::typed::{pod_reply, serde_reply, Kind};

#[derive(Serialize, Deserialize, Debug)]
struct Lookup {
    user: String,
}
impl Kind for Lookup {
    const KIND: u32 = 1;
}

#[derive(Serialize, Deserialize, Debug)]
struct Profile {
    user: String,
    groups: Vec<String>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Sample {
    t_ns: u64,
    value: f64,
}
impl Kind for Sample {
    const KIND: u32 = 2;
}

fn main() -> Result<(), shmsock_services::Error> {
    let path = format!("@shmsock-example-typed-{}", std::process::id());
    let server = Server::serve(path.as_str())?;
    std::thread::spawn(move || {
        server.run(|req| {
            if req.is::<Lookup>() {
                let l: Lookup = req.decode().map_err(|e| e.to_string())?;
                serde_reply(&Profile {
                    groups: vec!["video".into(), "audio".into()],
                    user: l.user,
                })
            } else if req.is::<Sample>() {
                let s: Sample = req.pod().map_err(|e| e.to_string())?;
                Ok(pod_reply(&(s.value * 2.0)))
            } else {
                Err(format!("unknown kind {}", req.kind))
            }
        })
    });
    let mut c = Client::connect(path.as_str())?;
    let t = Duration::from_secs(5);
    let p: Profile = c.call_serde(&Lookup { user: "ada".into() }, t)?;
    println!("{p:?}");
    let doubled: f64 = c.call_pod(
        &Sample {
            t_ns: 1,
            value: 21.0,
        },
        t,
    )?;
    println!("doubled: {doubled}");
    Ok(())
}
