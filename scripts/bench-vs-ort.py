#!/usr/bin/env python3
"""tether-deploy against onnxruntime on PyTorch exports, one thread each, in one run.

Run from a throwaway venv (not CI):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.15.0 \
        torchvision==0.29.2 onnx==1.23.2 onnxruntime==1.32.0 onnxscript==0.7.2 pillow
    cargo build --release -p tether-deploy
    /tmp/venv/bin/python scripts/bench-vs-ort.py --tether target/release/tether-deploy

For each model (LeNet-300-100, LeNet-5, a small ResNet, a MobileNet-style net at 32x32,
torchvision's resnet18 and mobilenet_v2 at 224x224; random weights, BatchNorm statistics
randomised), dense and with 90% of every Linear/Conv weight pruned by global magnitude,
exported by the TorchScript exporter at opset 13 with a symbolic batch axis: onnxruntime
(one intra- and inter-op thread, ORT_ENABLE_ALL graph optimisations, its best CPU
setting) and `tether-deploy bench` (the `auto` kernels) alternate for `--rounds` rounds;
each round's ratio is ORT's time over tether's, and the table gives the median ratio
(above 1: tether is faster). Both runtimes' outputs are compared first (max relative
difference), so the benchmark times models that compute the same thing.

With `--cpu-time BIN` (BIN: `cargo build --release -p tether-deploy --example cpu_time`,
then `target/release/examples/cpu_time`), both sides are timed in thread CPU time
instead of wall time: onnxruntime's session runs on the calling thread with one intra-op
thread, timed by `time.thread_time`, and the example times tether's plan by
`CLOCK_THREAD_CPUTIME_ID` (the least over its trials). Time spent waiting for a core is
not counted, so the ratios hold on a machine loaded with other work. With `--cpu-time-base
BIN2` too (another build's `cpu_time`, e.g. main's), that build is timed in the same rounds,
so that a change is measured against its base under the same load.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
import torchvision
from torch import nn
import torch.nn.functional as F


class Lenet300(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        return self.c(F.relu(self.b(F.relu(self.a(x)))))


class Lenet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.c1(x)), 2)
        h = F.max_pool2d(F.relu(self.c2(h)), 2)
        return self.f3(F.relu(self.f2(F.relu(self.f1(torch.flatten(h, 1))))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))


class SmallResnet(nn.Module):
    """ResNet-8 for 32x32 images: 16-32-64 channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def mobilenet_style():
    """MobileNetV2's inverted residual blocks at width 0.5 on 32x32 images."""
    m = torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=10)
    m.features[0][0].stride = (1, 1)
    return m


MODELS = [
    ("lenet300", Lenet300, (784,)),
    ("lenet5", Lenet5, (1, 28, 28)),
    ("small_resnet", SmallResnet, (3, 32, 32)),
    ("mobilenet_style", mobilenet_style, (3, 32, 32)),
    ("resnet18", torchvision.models.resnet18, (3, 224, 224)),
    ("mobilenet_v2", torchvision.models.mobilenet_v2, (3, 224, 224)),
]


def prune_global(model, sparsity):
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    allw = torch.cat([w.detach().abs().flatten() for w in ws])
    k = int(sparsity * allw.numel())
    thr = allw.kthvalue(k).values
    with torch.no_grad():
        for w in ws:
            w.mul_((w.abs() > thr).float())


def export(name, ctor, shape, sparsity, out_dir):
    path = os.path.join(out_dir, f"{name}_{'pruned90' if sparsity else 'dense'}.onnx")
    if os.path.exists(path):
        return path
    torch.manual_seed(0)
    m = ctor().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    if sparsity:
        prune_global(m, sparsity)
    x = torch.randn(1, *shape)
    torch.onnx.export(m, (x,), path, dynamo=False, opset_version=13, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return path


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_time(sess, x, budget=0.3, clock=time.perf_counter):
    sess.run(None, {"x": x})
    reps, t0 = 0, clock()
    while clock() - t0 < budget or reps < 2:
        sess.run(None, {"x": x})
        reps += 1
    return (clock() - t0) / reps


def ort_cpu_time(sess, x, trials=5):
    """The least thread CPU time per run over `trials` trials of about 10 ms (as the
    cpu_time example times tether)."""
    return min(ort_time(sess, x, budget=0.01, clock=time.thread_time) for _ in range(trials))


def tether_cpu_time(binary, path, batch):
    out = subprocess.run([binary, "--batch", str(batch), "--trials", "5", path],
                         check=True, capture_output=True, text=True).stdout
    return float(re.match(r"([0-9.]+) us", out).group(1)) * 1e-6


def tether_time(tether, path, batch):
    out = subprocess.run([tether, "bench", path, "--batch", str(batch), "--trials", "3"],
                         check=True, capture_output=True, text=True).stdout
    row = [l for l in out.splitlines() if re.match(rf"\s*{batch}\s", l)][-1]
    us = [float(v) for v in re.findall(r"([0-9.]+) us", row)]
    return us[2] * 1e-6  # the `auto` column


def tether_predictions(tether, path, x):
    """tether-deploy run's predictions (argmax) on `x`."""
    inp = path + ".in.f32"
    x.astype("<f4").tofile(inp)
    out = subprocess.run([tether, "run", path, inp], check=True, capture_output=True,
                         text=True).stdout
    return [int(m) for m in re.findall(r"predicted (\d+)", out)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tether", default="target/release/tether-deploy")
    ap.add_argument("--dir", default="out/bench/ort-models")
    ap.add_argument("--out", default="out/bench/vs_ort.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--cpu-time", default="",
                    help="the cpu_time example's binary: time both in thread CPU time")
    ap.add_argument("--cpu-time-base", default="",
                    help="another build's cpu_time, timed in the same rounds (with --cpu-time)")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    batches = [int(b) for b in a.batches.split(",")]
    only = set(filter(None, a.only.split(",")))
    rows = []
    for name, ctor, shape in MODELS:
        if only and name not in only:
            continue
        for sparsity in (0.0, 0.9):
            path = export(name, ctor, shape, sparsity, a.dir)
            sess = ort_session(path)
            for batch in batches:
                x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
                want = sess.run(None, {"x": x})[0].reshape(batch, -1).argmax(1).tolist()
                got = tether_predictions(a.tether, path, x)
                agree = sum(int(g == w) for g, w in zip(got, want)) / batch
                ratios, ort_t, tet_t, base_t, base_r = [], [], [], [], []
                for _ in range(a.rounds):
                    if a.cpu_time:
                        o = ort_cpu_time(sess, x)
                        t = tether_cpu_time(a.cpu_time, path, batch)
                        if a.cpu_time_base:
                            tb = tether_cpu_time(a.cpu_time_base, path, batch)
                            base_t.append(tb)
                            base_r.append(o / tb)
                    else:
                        o = ort_time(sess, x)
                        t = tether_time(a.tether, path, batch)
                    ort_t.append(o)
                    tet_t.append(t)
                    ratios.append(o / t)
                row = {
                    "model": name, "pruned": sparsity, "batch": batch,
                    "ort_ms": 1e3 * statistics.median(ort_t),
                    "tether_ms": 1e3 * statistics.median(tet_t),
                    "speedup": statistics.median(ratios),
                    "same_predictions": agree,
                }
                if base_t:
                    row["base_ms"] = 1e3 * statistics.median(base_t)
                    row["base_speedup"] = statistics.median(base_r)
                rows.append(row)
                print(f"{name:16} {'90%' if sparsity else 'dense':6} batch {batch:3}: ORT "
                      f"{row['ort_ms']:9.3f} ms, tether {row['tether_ms']:9.3f} ms, tether "
                      f"speed {row['speedup']:.2f}x ORT's; same predictions {agree:.0%}",
                      file=sys.stderr, flush=True)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=1)
    base = bool(a.cpu_time_base and a.cpu_time)
    print("| model | weights | batch | ORT ms | tether ms | tether speed / ORT | same argmax |"
          + (" base ms | base speed / ORT |" if base else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if base else ""))
    for r in rows:
        print(f"| {r['model']} | {'90% pruned' if r['pruned'] else 'dense'} | {r['batch']} | "
              f"{r['ort_ms']:.3f} | {r['tether_ms']:.3f} | {r['speedup']:.2f}x | "
              f"{r['same_predictions']:.0%} |"
              + (f" {r['base_ms']:.3f} | {r['base_speedup']:.2f}x |" if base else ""))


if __name__ == "__main__":
    main()
