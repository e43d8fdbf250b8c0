#!/usr/bin/env python3
"""The pruned ONNX that `tether-train prune`/`fair-prune` write, run through onnxruntime,
against the same run's `model.tthr` through `tether-deploy run`: same scores (to 1e-5
relative) and the same predictions. Not CI (it needs onnxruntime); from a throwaway venv:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy onnxruntime==1.32.0
    cargo build --release -p tether-deploy
    /tmp/venv/bin/python scripts/check-pruned-onnx.py --tether target/release/tether-deploy \
        out/own/lenet5_pruned out/own/fair-adult-onnx-s0 ...

Inputs are seeded standard-normal samples of the model's input shape (the batch axis, if
symbolic, set to --batch). Exits 1 when a run disagrees.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def ort_scores(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0], s.get_inputs()[0].shape


def tether_scores(tether, tthr, x):
    with tempfile.NamedTemporaryFile(suffix=".f32", delete=False) as f:
        x.astype("<f4").tofile(f)
        name = f.name
    try:
        out = subprocess.run([tether, "run", tthr, name, "--scores"], check=True,
                             capture_output=True, text=True).stdout
    finally:
        os.remove(name)
    rows = re.findall(r"scores \[([^\]]*)\]", out)
    return np.array([[float(v) for v in r.split(",")] for r in rows], dtype=np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="output folders holding model.onnx and model.tthr")
    ap.add_argument("--tether", default="target/release/tether-deploy")
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    bad = 0
    print("| run | samples | max relative difference | same predictions |")
    print("|---|---|---|---|")
    for run in a.runs:
        onnx, tthr = os.path.join(run, "model.onnx"), os.path.join(run, "model.tthr")
        s = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        dims = [d if isinstance(d, int) else a.batch for d in s.get_inputs()[0].shape]
        x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        want, _ = ort_scores(onnx, x)
        want = want.reshape(want.shape[0], -1)
        got = tether_scores(a.tether, tthr, x)
        rel = float(np.max(np.abs(got - want) / (1.0 + np.abs(want))))
        same = int(np.sum(got.argmax(1) == want.argmax(1)))
        ok = rel <= 1e-5 and same == len(want)
        bad += not ok
        print(f"| {run} | {len(want)} | {rel:.1e} | {same}/{len(want)} |")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
