#!/usr/bin/env python3
"""PyTorch's side of the per-layer training-step profile (issue 33): the networks and
step of scripts/bench-train-vs-torch.py, one thread, under torch.profiler, self CPU time
per step by operator and input shape (the first three shapes: input, weight or grad,
...). tether's side is `train_vs_torch --profile NETWORK VARIANT` (RAYON_NUM_THREADS=1).

    /tmp/venv/bin/python scripts/profile-train-torch.py resnet,mobilenet ungated [STEPS]
"""

import importlib.util
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench", os.path.join(here, "bench-train-vs-torch.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def main():
    networks, variants = sys.argv[1].split(","), sys.argv[2].split(",")
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    torch.set_num_threads(1)
    for net in networks:
        for var in variants:
            step = bench.torch_step(net, var)
            for _ in range(2):
                step()
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(steps):
                    step()
            ev = prof.key_averages(group_by_input_shape=True)
            total = sum(e.self_cpu_time_total for e in ev)
            print(f"{net} {var}: {total / steps / 1e3:.1f} CPU ms per step (profiled, {steps} steps)")
            for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:30]:
                shapes = [s for s in e.input_shapes if s][:3]
                print(f"  {e.self_cpu_time_total / steps / 1e3:7.2f} ms  {e.key:32s} {shapes}")


if __name__ == "__main__":
    main()
