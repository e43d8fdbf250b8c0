#!/usr/bin/env python3
"""Compares fair-prune output folders against a first one (BENCHMARKS.md, "`fair-prune`:
1 vs 2 ranks"): the largest difference of each tensor of model.safetensors relative to its
largest magnitude, every metrics.csv value relative to max(|value|, 1), and the numeric
columns of groups.csv (absolute). Standard library only.

    python3 scripts/compare-fair-runs.py /tmp/fdb/one /tmp/fdb/two /tmp/fdb/mpi
"""
import csv
import json
import struct
import sys


def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    data = b[8 + n :]
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[name] = struct.unpack("<%df" % ((e - s) // 4), data[s:e])
    return out


def rows(path, take=None):
    r = list(csv.reader(open(path)))[1:]
    return [[float(x) for x in (row[:take] if take else row)] for row in r]


def main():
    a = sys.argv[1]
    for b in sys.argv[2:]:
        x, y = tensors(a + "/model.safetensors"), tensors(b + "/model.safetensors")
        w = max(
            max(abs(p - q) for p, q in zip(x[k], y[k])) / max(max(abs(p) for p in x[k]), 1e-12)
            for k in x
        )
        ma, mb = rows(a + "/metrics.csv"), rows(b + "/metrics.csv")
        assert len(ma) == len(mb), "metrics.csv lengths differ"
        m = max(abs(u - v) / max(abs(u), 1) for p, q in zip(ma, mb) for u, v in zip(p, q))
        ga, gb = rows(a + "/groups.csv", 15), rows(b + "/groups.csv", 15)
        g = max((abs(u - v) for p, q in zip(ga, gb) for u, v in zip(p, q) if u == u), default=0)
        print(
            f"{b}: weights {w:.3e} (relative), metrics.csv {m:.3e} (relative), "
            f"groups.csv {g:.3e} (absolute), {len(ma)} metric rows"
        )


if __name__ == "__main__":
    main()
