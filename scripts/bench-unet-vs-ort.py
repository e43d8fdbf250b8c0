#!/usr/bin/env python3
"""tether-deploy against onnxruntime on the encoder-decoder fixture (ConvTranspose2d,
Resize nearest and bilinear, Conv, Concat): `deploy/tests/fixtures/torch/
tiny_unet_legacy13.onnx` (TorchScript exporter, opset 13, symbolic batch), one thread each.

    cargo build --release -p tether-deploy
    /tmp/venv/bin/python scripts/bench-unet-vs-ort.py --tether target/release/tether-deploy

Each round runs `tether-deploy bench MODEL --batch 1 --batch 32 --trials 9` (the `auto`
column: median of 9 trials) and then times onnxruntime (one intra- and one inter-op
thread, ORT_ENABLE_ALL; 20 warm-up runs, then as many runs as fill 0.3 s) at each batch:
the ratio ORT time / tether time per round (above 1: tether faster).
"""

import argparse
import re
import subprocess
import time

import numpy as np
import onnxruntime as ort

MODEL = "deploy/tests/fixtures/torch/tiny_unet_legacy13.onnx"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tether", default="target/release/tether-deploy")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(MODEL, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)

    def ort_seconds(batch):
        x = rng.random((batch, 3, 12, 12), dtype=np.float32)
        for _ in range(20):
            s.run(None, {"x": x})
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 0.3:
            s.run(None, {"x": x})
            n += 1
        return (time.perf_counter() - t) / n

    for r in range(a.rounds):
        out = subprocess.run(
            [a.tether, "bench", MODEL, "--batch", "1", "--batch", "32", "--trials", "9"],
            capture_output=True, text=True, check=True,
        ).stdout
        auto = {int(l.split()[0]): float(l.split()[5])
                for l in out.splitlines() if re.match(r"\s*\d+\s", l)}
        for b in (1, 32):
            o = ort_seconds(b) * 1e6
            print(f"round {r} batch {b}: tether auto {auto[b]:.1f} us, ORT {o:.1f} us, "
                  f"ORT/tether {o / auto[b]:.2f}")


if __name__ == "__main__":
    main()
