#!/usr/bin/env bash
# The C echo pair through the C ABI against the same pair on a plain Unix
# socket (examples/c/bench_pair.c), and the same shmsock pair written in
# Rust against the Rust API (ffi/examples/rust_pair.rs, identical method),
# all in one run: 64 B round trip (median, p99) and 1 MiB one-way
# throughput. Prints a table and the ratios.
#
#   scripts/c-bench.sh [SECONDS_PER_ROW]      (default 2)
#
# Indicative only on a shared machine: compare ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-2}
target=${CARGO_TARGET_DIR:-$PWD/target}
work=$target/c-bench
command -v cc >/dev/null || { echo "c-bench: no C compiler (cc): skipped"; exit 0; }

cargo build --release -p shmsock-ffi --example rust_pair
mkdir -p "$work"
cc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude examples/c/bench_pair.c \
  -o "$work/bench_pair" "$target/release/libshmsock_ffi.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

results=$work/results.txt
: >"$results"
for test in rtt bulk; do
  for t in shm uds; do
    timeout 300 "$work/bench_pair" $t $test "$secs" >>"$results"
  done
  timeout 300 "$target/release/examples/rust_pair" $test "$secs" >>"$results"
done

val() { awk -v n="$1" -v k="$2" '$1 == "RESULT" && $2 == n && $3 == k { print $4 }' "$results"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
printf '%-28s %14s %14s %14s\n' "row" "C shmsock" "Rust shmsock" "C Unix socket"
for k in rtt_p50 rtt_p99; do
  printf '%-28s %11s ns %11s ns %11s ns\n' "64 B round trip, $k" \
    "$(val c-shm $k)" "$(val rust-shm $k)" "$(val c-uds $k)"
done
printf '%-28s %9s GiB/s %9s GiB/s %9s GiB/s\n' "1 MiB one-way" \
  "$(val c-shm bulk)" "$(val rust-shm bulk)" "$(val c-uds bulk)"
echo
echo "C/Rust (shmsock through the C ABI vs the Rust API; 1.00 = same):"
echo "  64 B rtt p50: $(ratio "$(val c-shm rtt_p50)" "$(val rust-shm rtt_p50)")   1 MiB throughput: $(ratio "$(val c-shm bulk)" "$(val rust-shm bulk)")"
echo "Unix socket/shmsock, both in C (above 1 = shmsock faster):"
echo "  64 B rtt p50: $(ratio "$(val c-uds rtt_p50)" "$(val c-shm rtt_p50)")   1 MiB throughput: $(ratio "$(val c-shm bulk)" "$(val c-uds bulk)")"
