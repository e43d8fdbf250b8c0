#!/usr/bin/env python3
"""tether against PyTorch: one training step (forward, cross-entropy, plus 0.1 x the
expected L0 density for gated networks, backward, Adam lr 1e-3) of LeNet-300-100, LeNet-5, the small
ResNet (width 16) and a MobileNet-style network (a 3x3 stem, then depthwise 3x3 +
pointwise 1x1 blocks), gated (a hard-concrete gate on every weight, Louizos et al. 2018)
and ungated, batch 128 of 28x28 images, at 1 and 2 threads. Issue 33.

tether runs as `train_vs_torch --serve` subprocesses (train/examples/train_vs_torch.rs),
one per `--tether` entry, each answering `NETWORK VARIANT STEPS` with its wall and process
CPU seconds per step; this script interleaves their rounds with PyTorch's
(torch.set_num_threads), and reports medians and the median of the per-round ratios
tether / PyTorch, by wall time and by CPU time (PyTorch's `time.process_time()`, all its
threads). On one thread the CPU-time ratio is the steadier one on a loaded machine; on
two, wall time is what counts (CPU time counts OpenMP's spinning workers too). PyTorch's
OpenMP workers spin while they wait: on a loaded machine run the script with
`OMP_WAIT_POLICY=PASSIVE` in its environment (read when torch starts).

Not in CI; run from a throwaway venv with torch (e.g. /tmp/venv):

    cargo build --release -p tether-train --example train_vs_torch --features flex-rayon
    /tmp/venv/bin/python scripts/bench-train-vs-torch.py \
        --tether fast 1 $CARGO_TARGET_DIR/release/examples/train_vs_torch \
        --tether fast 2 $CARGO_TARGET_DIR/release/examples/train_vs_torch

Each `--tether LABEL THREADS BINARY [NAME=VALUE ...]` starts BINARY with
RAYON_NUM_THREADS=THREADS and the given environment variables (e.g. TETHER_CONV=burn,
burn's own convolution, for the "before" column).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 128
NETWORKS = ["lenet300", "lenet5", "resnet", "mobilenet"]
VARIANTS = ["ungated", "gated"]
# Hard-concrete parameters (models/src/l0/hard_concrete.rs defaults).
BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


class Gate(nn.Module):
    """Hard-concrete gates, one per weight of `shape`."""

    def __init__(self, shape):
        super().__init__()
        p = 0.5
        mean = torch.log(torch.tensor(1 - p)) - torch.log(torch.tensor(p))
        self.log_alpha = nn.Parameter(torch.randn(shape) * 0.01 + mean)

    def sample(self):
        u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + self.log_alpha) / BETA)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def expected_l0(self):
        shift = BETA * torch.log(torch.tensor(-GAMMA / ZETA))
        return torch.sigmoid(self.log_alpha - shift).sum()


class GConv(nn.Conv2d):
    """A convolution whose weights are gated (or plain when `gated` is false)."""

    def __init__(self, i, o, k, stride=1, padding=0, groups=1, gated=False):
        super().__init__(i, o, k, stride=stride, padding=padding, groups=groups)
        self.gate = Gate(self.weight.shape) if gated else None

    def forward(self, x):
        w = self.weight * self.gate.sample() if self.gate is not None else self.weight
        return F.conv2d(x, w, self.bias, self.stride, self.padding, 1, self.groups)


class GLinear(nn.Linear):
    def __init__(self, i, o, gated=False):
        super().__init__(i, o)
        self.gate = Gate(self.weight.shape) if gated else None

    def forward(self, x):
        w = self.weight * self.gate.sample() if self.gate is not None else self.weight
        return F.linear(x, w, self.bias)


class Lenet300(nn.Module):
    """models/src/mlp.rs: 784 -> 300 -> 100 -> 10, ReLU."""

    def __init__(self, gated):
        super().__init__()
        self.f1, self.f2, self.f3 = GLinear(784, 300, gated), GLinear(300, 100, gated), GLinear(100, 10, gated)

    def forward(self, x):
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


class Lenet5(nn.Module):
    def __init__(self, gated):
        super().__init__()
        self.c1, self.c2 = GConv(1, 20, 5, gated=gated), GConv(20, 50, 5, gated=gated)
        self.f1, self.f2 = GLinear(800, 500, gated), GLinear(500, 10, gated)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x.view(-1, 1, 28, 28))), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.f2(F.relu(self.f1(x.flatten(1))))


class Resnet(nn.Module):
    """models/src/resnet.rs: stem 3x3, three basic blocks (no batch norm), width 16."""

    def __init__(self, gated, w=16):
        super().__init__()
        self.stem = GConv(1, w, 3, padding=1, gated=gated)
        self.blocks = nn.ModuleList()
        for i, o, s in [(w, w, 1), (w, 2 * w, 2), (2 * w, 4 * w, 2)]:
            b = nn.Module()
            b.c1 = GConv(i, o, 3, stride=s, padding=1, gated=gated)
            b.c2 = GConv(o, o, 3, padding=1, gated=gated)
            b.sc = GConv(i, o, 1, stride=s, gated=gated) if (i != o or s != 1) else None
            self.blocks.append(b)
        self.fc = GLinear(4 * w, 10, gated)

    def forward(self, x):
        x = F.relu(self.stem(x.view(-1, 1, 28, 28)))
        for b in self.blocks:
            h = b.c2(F.relu(b.c1(x)))
            x = F.relu(h + (b.sc(x) if b.sc is not None else x))
        return self.fc(F.avg_pool2d(x, 7).flatten(1))


MOBILE_BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1)]


class MobileNet(nn.Module):
    """train/benches/common/conv_nets.rs."""

    def __init__(self, gated):
        super().__init__()
        self.stem = GConv(1, 32, 3, padding=1, gated=gated)
        self.blocks = nn.ModuleList()
        for i, o, s in MOBILE_BLOCKS:
            self.blocks.append(
                nn.ModuleList(
                    [
                        GConv(i, i, 3, stride=s, padding=1, groups=i, gated=gated),
                        GConv(i, o, 1, gated=gated),
                    ]
                )
            )
        self.fc = GLinear(256, 10, gated)

    def forward(self, x):
        x = F.relu(self.stem(x.view(-1, 1, 28, 28)))
        for dw, pw in self.blocks:
            x = F.relu(pw(F.relu(dw(x))))
        return self.fc(F.avg_pool2d(x, 7).flatten(1))


def torch_step(network, variant):
    gated = variant == "gated"
    net = {"lenet300": Lenet300, "lenet5": Lenet5, "resnet": Resnet, "mobilenet": MobileNet}[network](gated)
    gates = [m.gate for m in net.modules() if getattr(m, "gate", None) is not None]
    total = sum(g.log_alpha.numel() for g in gates)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 784)
    y = torch.arange(BATCH) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        if gated:
            loss = loss + 0.1 * sum(g.expected_l0() for g in gates) / total
        loss.backward()
        opt.step()

    step()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"{network} {variant}: no gradient for {missing}"
    return step


def timed(step, steps):
    """(wall, process CPU) seconds per step."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


class Tether:
    def __init__(self, label, threads, binary, env):
        self.label, self.threads = label, threads
        e = dict(os.environ, RAYON_NUM_THREADS=str(threads), **env)
        self.proc = subprocess.Popen(
            [binary, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=e
        )

    def time(self, network, variant, steps):
        self.proc.stdin.write(f"{network} {variant} {steps}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"tether ({self.label}) exited: {self.proc.wait()}")
        wall, cpu = line.split()
        return float(wall), float(cpu)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tether", nargs="+", action="append", required=True,
                    metavar="LABEL THREADS BINARY [NAME=VALUE]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="steps per round")
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    tethers = []
    for spec in args.tether:
        label, threads, binary, *env = spec
        tethers.append(Tether(label, int(threads), binary, dict(kv.split("=", 1) for kv in env)))
    thread_counts = sorted({t.threads for t in tethers})
    rows = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        mine = [t for t in tethers if t.threads == threads]
        for network in args.networks.split(","):
            for variant in args.variants.split(","):
                step = torch_step(network, variant)
                for t in mine:
                    t.time(network, variant, 1)  # builds, checks and warms it
                times = {"torch": []} | {t.label: [] for t in mine}
                for r in range(args.rounds + 1):
                    order = [None] + mine if r % 2 == 0 else mine + [None]
                    for t in order:
                        s = timed(step, args.steps) if t is None else t.time(network, variant, args.steps)
                        if r > 0:  # round 0 warms up
                            times["torch" if t is None else t.label].append(s)
                torch_wall = [w for w, _ in times["torch"]]
                torch_cpu = [c for _, c in times["torch"]]
                row = {"network": network, "variant": variant, "threads": threads,
                       "torch_ms": 1e3 * statistics.median(torch_wall),
                       "torch_cpu_ms": 1e3 * statistics.median(torch_cpu)}
                for t in mine:
                    wall = [w for w, _ in times[t.label]]
                    cpu = [c for _, c in times[t.label]]
                    row[f"{t.label}_ms"] = 1e3 * statistics.median(wall)
                    row[f"{t.label}_cpu_ms"] = 1e3 * statistics.median(cpu)
                    row[f"{t.label}/torch"] = statistics.median(
                        [a / b for a, b in zip(wall, torch_wall)])
                    per_round = [a / b for a, b in zip(cpu, torch_cpu)]
                    row[f"{t.label}/torch_cpu"] = statistics.median(per_round)
                    row[f"{t.label}/torch_cpu_spread"] = [min(per_round), max(per_round)]
                rows.append(row)
                print(json.dumps(row), flush=True)
    for t in tethers:
        t.close()

    labels = [t.label for t in tethers]
    labels = list(dict.fromkeys(labels))
    print(f"\ntorch {torch.__version__}, batch {BATCH}, {args.rounds} rounds x {args.steps} steps, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          "medians; ratios: median of per-round ratios (wall, CPU; in brackets the CPU "
          "ratio's least and greatest round)\n")
    print("| network | variant | threads | PyTorch ms (wall, CPU) | " +
          " | ".join(f"{l} ms (wall, CPU) | {l} / PyTorch (wall, CPU)" for l in labels) + " |")
    print("|---|---|---|---|" + "---|---|" * len(labels))
    for row in rows:
        cells = []
        for l in labels:
            if f"{l}_ms" in row:
                lo, hi = row[f"{l}/torch_cpu_spread"]
                cells += [f"{row[f'{l}_ms']:.1f}, {row[f'{l}_cpu_ms']:.1f}",
                          f"{row[f'{l}/torch']:.2f}, {row[f'{l}/torch_cpu']:.2f} ({lo:.2f}-{hi:.2f})"]
            else:
                cells += ["", ""]
        print(f"| {row['network']} | {row['variant']} | {row['threads']} | "
              f"{row['torch_ms']:.1f}, {row['torch_cpu_ms']:.1f} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
