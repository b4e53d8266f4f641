//! The fuzz drivers (`testkit/src/fuzz.rs`) run as proptest cases, so CI
//! exercises the same entry points on stable Rust for a bounded time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use shmsock_testkit::fuzz as drivers;

use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn control_decode(data in vec(any::<u8>(), 0..96)) {
        drivers::control_decode(&data);
    }

    #[test]
    fn ring_reader(data in vec(any::<u8>(), 0..512)) {
        drivers::ring_reader(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn handshake_server(data in vec(any::<u8>(), 0..200)) {
        drivers::handshake(&data, true);
    }

    #[test]
    fn handshake_client(data in vec(any::<u8>(), 0..200)) {
        drivers::handshake(&data, false);
    }
}

/// Valid handshakes must also pass through the drivers: a well-formed Hello
/// with a real ring and a back channel, so the success path is covered.
#[test]
fn handshake_server_with_valid_hello() {
    let mut b = [0u8; shmsock::wire::MAX_CONTROL_LEN];
    let n = shmsock::wire::Control::Hello(shmsock::wire::Hello {
        ring_capacity: 4096,
        max_message: 1 << 20,
    })
    .encode(&mut b);
    // One datagram, two fds: spec = 2 << 6 | kind(ring=0) | kind(socket=4) << 2.
    let mut input = vec![n as u8, (2 << 6) | (4 << 2)];
    input.extend_from_slice(&b[..n]);
    drivers::handshake(&input, true);
}
