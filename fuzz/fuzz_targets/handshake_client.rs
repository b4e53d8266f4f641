#![no_main]

use shmsock_testkit::fuzz as drivers;

libfuzzer_sys::fuzz_target!(|data: &[u8]| drivers::handshake(data, false));
