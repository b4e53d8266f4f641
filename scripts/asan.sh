#!/usr/bin/env bash
# Runs the ring's heap-backed tests, the cross-process ring test and the
# hostile-peer tests (server and client as victims) under AddressSanitizer with the nightly toolchain.
# Usage: scripts/asan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
export CARGO_TARGET_DIR=target/asan
# Leak checking reports the deliberately leaked test-harness buffers of
# forked children; we check fd leaks separately.
export ASAN_OPTIONS="detect_leaks=0"
cargo +nightly test --target "$target" -p shmsock-shm --lib --test stress
cargo +nightly test --target "$target" -p shmsock --test ring_fork --test hostile_fork --test hostile_server --test transport_fork
