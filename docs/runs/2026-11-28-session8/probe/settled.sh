#!/bin/bash
# Does a busy process that has run for a while (as in bench: ~10 s before the 4-client
# rows) change the spaced 4-client cell? Alternates: fresh load (--load 1) vs settled
# external busy loop (started 15 s before, --load 0).
P=/work/target-shm/release/examples/spaced_probe
for k in 1 2 3; do
  echo "== fresh $k"; $P --clients 4 --load 1 --n 600 --rounds 5 --variants stream,aa,bb 2>/dev/null | tail -3
  bash -c 'while :; do :; done' & L=$!
  sleep 15
  echo "== settled $k"; $P --clients 4 --load 0 --n 600 --rounds 5 --variants stream,aa,bb 2>/dev/null | tail -3
  kill $L
done
