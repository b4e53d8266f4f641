#!/usr/bin/env python3
"""Compares every shmsock row of saved `shmsock bench --json` runs with the
matching iceoryx2 row of the same run (issue 10: "every shmsock row at or
ahead of the matching iceoryx2 row, hot against busy-poll, sleeping against
event-driven"), and prints, per pair and size, the median and range over
the runs of two within-run ratios, each above 1 when shmsock is ahead:
round trip (iceoryx2's p50 / shmsock's p50) and one-way throughput
(shmsock's GB/s / iceoryx2's).

usage: scripts/iox-compare.py OUTDIR     (reads OUTDIR/run*.jsonl)

Pairs: Adaptive (the default) and Spin against iceoryx2 busy-polling,
Block against iceoryx2 waiting on its event service; `send` against
iceoryx2's copy, `reserve` (zero copy; at 16 MiB the fragmented message read
in place, and read piece by piece: "streamed") against its loan.
"""
import glob
import json
import os
import statistics
import sys

PAIRS = [
    ("Adaptive send", "shmsock_adaptive_send", "iceoryx2_poll_copy"),
    ("Adaptive zero copy", "shmsock_adaptive_zerocopy", "iceoryx2_poll_loan"),
    ("Adaptive streamed", "shmsock_adaptive_streamed", "iceoryx2_poll_loan"),
    ("Spin send", "shmsock_spin_send", "iceoryx2_poll_copy"),
    ("Spin zero copy", "shmsock_spin_zerocopy", "iceoryx2_poll_loan"),
    ("Block send", "shmsock_block_send", "iceoryx2_event_copy"),
    ("Block zero copy", "shmsock_block_zerocopy", "iceoryx2_event_loan"),
    ("Block streamed", "shmsock_block_streamed", "iceoryx2_event_loan"),
]


def size_name(n):
    if n >= 1 << 20:
        return f"{n >> 20} MiB"
    if n >= 1 << 10:
        return f"{n >> 10} KiB"
    return f"{n} B"


def fmt(vs):
    if not vs:
        return "-"
    med = statistics.median(vs)
    return f"{med:.2f}x ({min(vs):.2f}–{max(vs):.2f}x)"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = []
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "run*.jsonl"))):
        rows = {}
        with open(path) as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("kind") == "row" and not r.get("hung"):
                    rows[(r["id"], r["size"])] = r
        runs.append(rows)
    if not runs:
        sys.exit(f"no run*.jsonl in {sys.argv[1]}")
    sizes = sorted({s for rows in runs for (_, s) in rows})
    print(f"{len(runs)} runs; above 1x: shmsock ahead\n")
    print("| pair | size | round trip p50 | throughput |")
    print("| --- | --- | --- | --- |")
    for name, ours, theirs in PAIRS:
        for size in sizes:
            rtt, thr = [], []
            for rows in runs:
                a, b = rows.get((ours, size)), rows.get((theirs, size))
                if not a or not b:
                    continue
                if a.get("p50_ns") and b.get("p50_ns"):
                    rtt.append(b["p50_ns"] / a["p50_ns"])
                if a.get("gbps") and b.get("gbps"):
                    thr.append(a["gbps"] / b["gbps"])
            if rtt or thr:
                print(f"| {name} vs {theirs.replace('_', ' ')} | {size_name(size)} "
                      f"| {fmt(rtt)} | {fmt(thr)} |")


if __name__ == "__main__":
    main()
