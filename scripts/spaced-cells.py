#!/usr/bin/env python3
"""Prints the spaced cells (clients, busy) of `bench --json` files: the p99 of the Unix
stream, Adaptive and Block, Adaptive/Block and stream/Adaptive p99 ratios, and how many
cells met the target (`met`) and the near-best rule (`near`).

Usage: python3 scripts/spaced-cells.py RUN.jsonl..."""
import json
import sys

for f in sys.argv[1:]:
    rows=[json.loads(l) for l in open(f) if l.startswith('{')]
    sp=[r for r in rows if r.get('kind')=='paced' and 'rate_per_s' in r]
    out=[]
    for c in (1,4):
        for ld in (0,1):
            d={r['id']:r for r in sp if r['clients']==c and r['load']==ld}
            s,a,b=d.get('unix_stream'),d.get('shmsock_adaptive_send'),d.get('shmsock_block_send')
            if not (s and a and b): continue
            out.append(f"{c}c{ld}b p99 S/A/B {s['p99_ns']/1e3:.0f}/{a['p99_ns']/1e3:.0f}/{b['p99_ns']/1e3:.0f} A/B {a['p99_ns']/b['p99_ns']:.2f} S/A {s['p99_ns']/a['p99_ns']:.2f}")
    tg=[r for r in rows if r.get('kind')=='paced_target' and 'rate_per_s' in r]
    print(f, "met", sum(t['met'] for t in tg), "near", sum(t['near_best'] for t in tg), "|", " | ".join(out))
