#!/usr/bin/env python3
"""Where tether-deploy loses to onnxruntime, layer by layer: both runtimes' per-node times
on the models of `scripts/bench-vs-ort.py`, one thread each.

Run from the venv `bench-vs-ort.py` names, after `cargo build --release -p tether-deploy`:

    /tmp/venv/bin/python scripts/profile-vs-ort.py --only mobilenet_v2,small_resnet

onnxruntime (one thread, ORT_ENABLE_ALL: its NCHWc layout and fused convolutions) runs
with `SessionOptions.enable_profiling`, each node's kernel time taken from the profile
(the median over `--runs` runs); tether runs `tether-deploy bench --per-node`. Both are
summed by kind of op (1x1, kxk and depthwise convolutions, linear, pooling, element-wise,
layout: ORT's `ReorderInput` / `ReorderOutput` between its blocked and plain layouts),
and the convolutions, paired by kernel, input plane and output channels in graph order,
are set side by side. tether's steps are timed in thread CPU time; ORT's profile holds wall
times, so each of its node times is scaled by ORT's thread CPU time per run over the sum
of its nodes' median times in the same runs (time spent waiting for a core on a loaded
machine is then spread over the nodes in proportion). Read the ratios, and rerun.
"""

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_vs_ort", os.path.join(HERE, "bench-vs-ort.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

KINDS = ["conv 1x1", "conv kxk", "conv depthwise", "conv grouped", "linear", "pool",
         "elementwise", "layout", "other"]


def ort_kind(op, shapes):
    """The class `tether-deploy bench --per-node` puts a node of ORT's profile in."""
    if op in ("Conv", "FusedConv", "QLinearConv"):
        x = list(shapes[0].values())[0] if shapes else []
        w = list(shapes[1].values())[0] if len(shapes) > 1 else []
        if len(w) == 4 and len(x) == 4:
            if w[1] == 1 and x[1] > 1:
                return "conv depthwise"
            if w[2] == 1 and w[3] == 1:
                return "conv 1x1"
            return "conv kxk"
        return "conv kxk"
    if op in ("Gemm", "MatMul", "FusedGemm", "FusedMatMul"):
        return "linear"
    if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean"):
        return "pool"
    if op in ("ReorderInput", "ReorderOutput", "Reshape", "Flatten", "Transpose", "Concat",
              "Pad", "Identity", "Squeeze", "Unsqueeze"):
        return "layout"
    if op in ("Relu", "Clip", "Add", "Mul", "Sub", "Div", "Sum", "Sigmoid", "HardSigmoid",
              "Softmax", "BatchNormalization"):
        return "elementwise"
    return "other"


def ort_profile(path, x, runs):
    """[(node name, op, kind, input shapes, median us)] in execution order."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = path + ".ortprof"
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"x": x})
    # Runs before this point are warm-up; the profile holds every run, and a run's node
    # events are counted from the `model_run` events' order.
    cpu0 = time.thread_time()
    for _ in range(runs):
        sess.run(None, {"x": x})
    cpu = (time.thread_time() - cpu0) / runs
    prof = sess.end_profiling()
    with open(prof) as f:
        events = json.load(f)
    os.remove(prof)
    nodes, order = defaultdict(list), []
    info = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        a = e.get("args", {})
        if name not in info:
            order.append(name)
            info[name] = (a.get("op_name", "?"), a.get("input_type_shape", []))
        nodes[name].append(e["dur"])
    # Per node, its median over the timed runs (a run preempted on a loaded machine
    # inflates one node); then all scaled to the CPU time per run.
    means = {n: statistics.median(nodes[n][-runs:]) for n in order}
    scale = 1e6 * cpu / sum(means.values())
    out = []
    for name in order:
        op, shapes = info[name]
        out.append((name, op, ort_kind(op, shapes), shapes, means[name] * scale))
    return out


# The fixed columns `print_step_times` writes: step, node, op (10), kind (15), kernel (20).
STEP = re.compile(r"^\s*(\d+)\s+(\d+)  (.{10}) (.{15}) (.{20}) +([0-9.]+) +([0-9.]+)  (.*)$")


def tether_profile(binary, path, batch, trials):
    """[(op, kind, kernel, us, detail)] of `tether-deploy bench --per-node`."""
    out = subprocess.run([binary, "bench", path, "--per-node", "--batch", str(batch),
                          "--trials", str(trials)], check=True, capture_output=True,
                         text=True).stdout
    rows = []
    for line in out.splitlines():
        m = STEP.match(line)
        if m:
            rows.append((m.group(3).strip(), m.group(4).strip(), m.group(5).strip(),
                         float(m.group(6)), m.group(8)))
    return rows


DETAIL = re.compile(r"^(\d+)x(\d+)x(\d+) -> (\d+)x\d+x\d+, (\d+)x(\d+)/")


def conv_key(m, kh, kw, h, w):
    """What pairs a convolution of one runtime with the other's: kernel, input plane and
    output channels in blocks of 16 (ORT pads its NCHWc channels to whole blocks)."""
    return (kh, kw, h, w, -(-m // 16))


def pair_convs(o, t):
    """Each tether convolution beside ORT's of the same key, in graph order per key (the
    runtimes may order a block's two branches differently, and fuse its Add into either)."""
    queues = defaultdict(list)
    for _, _, kind, shapes, us in o:
        if kind.startswith("conv"):
            x = list(shapes[0].values())[0]
            wt = list(shapes[1].values())[0]
            queues[conv_key(wt[0], wt[2], wt[3], x[2], x[3])].append(us)
    pairs = []
    for _, kind, kernel, us, det in t:
        if not kind.startswith("conv"):
            continue
        m = DETAIL.match(det)
        ous = None
        if m:
            c, h, w, mo, kh, kw = (int(v) for v in m.groups())
            q = queues.get(conv_key(mo, kh, kw, h, w))
            ous = q.pop(0) if q else None
        pairs.append({"kind": kind, "kernel": kernel, "detail": det, "ort_us": ous,
                      "tether_us": us})
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tether", default="target/release/tether-deploy")
    ap.add_argument("--dir", default="out/bench/ort-models")
    ap.add_argument("--out", default="out/bench/profile_vs_ort.json")
    ap.add_argument("--runs", type=int, default=20, help="ORT runs profiled")
    ap.add_argument("--trials", type=int, default=5, help="tether trials")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--only", default="small_resnet,mobilenet_v2")
    ap.add_argument("--pruned", action="store_true", help="the 90%%-pruned exports")
    ap.add_argument("--layers", action="store_true", help="print the conv-by-conv table")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    only = set(filter(None, a.only.split(",")))
    report = []
    for name, ctor, shape in bench.MODELS:
        if name not in only:
            continue
        path = bench.export(name, ctor, shape, 0.9 if a.pruned else 0.0, a.dir)
        for batch in (int(b) for b in a.batches.split(",")):
            x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            o = ort_profile(path, x, a.runs)
            t = tether_profile(a.tether, path, batch, a.trials)
            ok, tk = defaultdict(float), defaultdict(float)
            for _, _, kind, _, us in o:
                ok[kind] += us
            for _, kind, _, us, _ in t:
                tk[kind] += us
            ot, tt = sum(ok.values()), sum(tk.values())
            print(f"\n### {name}{' 90% pruned' if a.pruned else ''}, batch {batch}: ORT "
                  f"{ot / 1e3:.2f} ms, tether {tt / 1e3:.2f} ms (sums of node times)\n")
            print("| kind | ORT us | ORT % | tether us | tether % | tether - ORT us |")
            print("|---|---|---|---|---|---|")
            for k in KINDS:
                if ok[k] or tk[k]:
                    print(f"| {k} | {ok[k]:.0f} | {100 * ok[k] / ot:.1f} | {tk[k]:.0f} | "
                          f"{100 * tk[k] / tt:.1f} | {tk[k] - ok[k]:+.0f} |")
            pairs = pair_convs(o, t)
            if a.layers:
                print("\n| # | kind | tether kernel | shapes | ORT us | tether us | "
                      "tether - ORT |")
                print("|---|---|---|---|---|---|---|")
                for i, p in enumerate(pairs):
                    ous = "?" if p["ort_us"] is None else f"{p['ort_us']:.0f}"
                    diff = "" if p["ort_us"] is None else f"{p['tether_us'] - p['ort_us']:+.0f}"
                    print(f"| {i} | {p['kind']} | {p['kernel']} | {p['detail']} | {ous} | "
                          f"{p['tether_us']:.0f} | {diff} |")
            report.append({"model": name, "pruned": a.pruned, "batch": batch,
                           "ort_by_kind": ok, "tether_by_kind": tk, "convs": pairs})
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
