#!/usr/bin/env python3
"""Runs `shmsock bench --json` several times and reports, per row, the median
and the range of every number (the method docs/performance.md asks for:
ratios within one run, medians of at least 3 runs with their range).

usage: scripts/bench-medians.py RUNS OUTDIR [bench options...]
       scripts/bench-medians.py --from OUTDIR      (summarise saved runs)

Each run's JSON lines are saved as OUTDIR/runN.jsonl. The summary (a
markdown table per row kind) goes to stdout and OUTDIR/summary.md.
Build first: `cargo build --release` (the binary is target/release/shmsock,
or $CARGO_TARGET_DIR/release/shmsock).
"""
import json
import os
import statistics
import subprocess
import sys

# Fields that name a row rather than measure it.
IDENTITY = ("kind", "id", "name", "transport", "mode", "size", "think_us",
            "rate_per_s", "clients", "load", "subscribers", "during_size",
            "variant", "peer")


def key_of(row):
    return tuple((k, row[k]) for k in IDENTITY if k in row)


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def summarise(runs):
    groups = {}
    order = []
    for rows in runs:
        for row in rows:
            k = key_of(row)
            if k not in groups:
                groups[k] = []
                order.append(k)
            groups[k].append(row)
    out = []
    by_kind = {}
    for k in order:
        by_kind.setdefault(dict(k)["kind"], []).append(k)
    for kind, keys in by_kind.items():
        out.append(f"\n### {kind} (median [min–max] of {len(runs)} runs)\n")
        for k in keys:
            rows = groups[k]
            ident = ", ".join(f"{n}={v}" for n, v in k if n != "kind")
            nums = {}
            for r in rows:
                for n, v in r.items():
                    if n not in IDENTITY and isinstance(v, (int, float)) and not isinstance(v, bool):
                        nums.setdefault(n, []).append(v)
            parts = []
            for n, vs in nums.items():
                med = statistics.median(vs)
                parts.append(f"{n} {fmt(med)} [{fmt(min(vs))}–{fmt(max(vs))}]")
            # Verdicts (paced_target's met, near_best): true in how many runs.
            if kind == "paced_target":
                for n in ("met", "near_best"):
                    vs = [r.get(n) for r in rows]
                    parts.append(f"{n} {sum(v is True for v in vs)}/{len(vs)}")
            texts = {str(r[n]) for r in rows for n, v in r.items()
                     if n not in IDENTITY and isinstance(v, (str, bool))}
            extra = f" ({'; '.join(sorted(texts))})" if texts and kind == "target" else ""
            out.append(f"- {ident}: " + "; ".join(parts) + extra)
    return "\n".join(out) + "\n"


def fmt(v):
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--from":
        outdir = sys.argv[2]
        files = sorted(f for f in os.listdir(outdir) if f.startswith("run") and f.endswith(".jsonl"))
        runs = [load(os.path.join(outdir, f)) for f in files]
    else:
        if len(sys.argv) < 3:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        n, outdir, extra = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
        os.makedirs(outdir, exist_ok=True)
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        binary = os.path.join(target, "release", "shmsock")
        runs = []
        for i in range(1, n + 1):
            path = os.path.join(outdir, f"run{i}.jsonl")
            print(f"run {i}/{n} ...", file=sys.stderr)
            with open(path, "w") as f:
                subprocess.run([binary, "bench", "--json", *extra], stdout=f, check=True)
            runs.append(load(path))
    text = summarise(runs)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
