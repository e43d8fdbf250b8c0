#!/usr/bin/env python3
"""Write ONNX's own node test suite (onnx.backend.test.case.node) to disk.

    onnx_node_tests.py OUTDIR

Run by scripts/fetch-data (dataset onnx-node-tests) inside a throwaway virtualenv that has
the pinned onnx and numpy wheels; OUTDIR must not exist yet, or be empty. For every test
case that collect_testcases() returns, this writes, in the layout of onnx's own
`backend-test-tools generate-data` (onnx/backend/test/cmd_tools.py):

    OUTDIR/<name>/model.onnx
    OUTDIR/<name>/test_data_set_<i>/input_<j>.pb    TensorProto (numpy_helper.from_array,
    OUTDIR/<name>/test_data_set_<i>/output_<j>.pb   named after graph input/output j)
    OUTDIR/<name>/meta.json     {"rtol", "atol", "opset", "op_types", "opset_imports",
                                 "ir_version", "data_sets"}

plus OUTDIR/index.tsv (one row per written case: name, op_types, data_sets, opset) and
OUTDIR/skipped.tsv (one row per case not written: name, reason). A case is skipped, not
half-written, when any of its inputs or outputs is not a tensor (sequence, optional, map,
sparse): TensorProto files cannot carry those.

meta.json:
  rtol, atol   the case's own tolerances (TestCase.rtol/atol). onnx's runner compares each
               output with np.testing.assert_allclose(out, ref, rtol, atol) (exact equality
               for strings; rtol raised to 2**-6 for bfloat16 outputs), and every node case
               of onnx 1.23.2 carries rtol=1e-3, atol=1e-7.
  opset        the model's opset version for the default domain ("" or "ai.onnx"), or null.
  op_types     sorted distinct op types of the top-level graph nodes; ops of other domains
               are written "domain:OpType" (e.g. "ai.onnx.ml:LabelEncoder").
  opset_imports {domain: version} of the model ("" for the default domain).

Determinism: onnx seeds numpy with 0 before each export function, so the cases and models
depend only on the onnx/numpy/protobuf versions. Expected outputs (and a few inputs, such
as test_log's) are computed with numpy, whose float kernels (and OpenBLAS's) are picked at
run time by CPU: on the reference machine (AVX-512), AVX2-level dispatch changed 27 output
files and baseline dispatch 366, models never. So before importing numpy this script pins
numpy's dispatch to the x86-64-v2 baseline (NPY_ENABLE_CPU_FEATURES=X86_V2, which every
numpy 2.4 x86-64 wheel requires) and OpenBLAS to one thread of its Nehalem kernels. What
remains machine-dependent is the C library's libm (numpy's baseline float functions call
it, and C library releases do change results in the last bits), so output files may still
differ elsewhere: fetch-data pins index.tsv and skipped.tsv (no floats), and checks every
other file against the SHA256SUMS written at generation time.
"""

from __future__ import annotations

import os
import platform

os.environ["OPENBLAS_NUM_THREADS"] = "1"
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.pop("NPY_DISABLE_CPU_FEATURES", None)
    os.environ["NPY_ENABLE_CPU_FEATURES"] = "X86_V2"
    os.environ["OPENBLAS_CORETYPE"] = "Nehalem"

import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, numpy_helper  # noqa: E402
from onnx.backend.test.case import node as node_cases  # noqa: E402

DEFAULT_DOMAINS = ("", "ai.onnx")


def value_kind(type_proto: onnx.TypeProto) -> str:
    return type_proto.WhichOneof("value") or "undefined"


def tensor_bytes(value: object, vi: onnx.ValueInfoProto) -> bytes | None:
    """Serialized TensorProto for a tensor-typed graph value, or None if it is not one."""
    if value_kind(vi.type) != "tensor_type":
        return None
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    if isinstance(value, (np.ndarray, np.generic)):
        return numpy_helper.from_array(np.asarray(value), vi.name).SerializeToString()
    return None


def case_files(case) -> tuple[dict[str, bytes] | None, str]:
    """All files of one case (relative path -> bytes), or (None, reason) to skip it."""
    model = case.model
    graph = model.graph
    files = {"model.onnx": model.SerializeToString()}
    for i, (inputs, outputs) in enumerate(case.data_sets):
        for what, values, vis in (("input", inputs, graph.input),
                                  ("output", outputs, graph.output)):
            if len(values) != len(vis):
                return None, f"{what} count {len(values)} != graph {what} count {len(vis)}"
            for j, (value, vi) in enumerate(zip(values, vis, strict=True)):
                data = tensor_bytes(value, vi)
                if data is None:
                    kind = value_kind(vi.type)
                    if kind == "tensor_type":
                        kind = f"tensor_type holding {type(value).__name__}"
                    return None, f"non-tensor {what}: {kind}"
                files[f"test_data_set_{i}/{what}_{j}.pb"] = data
    return files, ""


def op_types(graph: onnx.GraphProto) -> list[str]:
    return sorted({n.op_type if n.domain in DEFAULT_DOMAINS else f"{n.domain}:{n.op_type}"
                   for n in graph.node})


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    if os.listdir(out):
        print(f"onnx_node_tests.py: {out} is not empty", file=sys.stderr)
        return 1

    with warnings.catch_warnings():
        # The suite computes some expected values as inf/nan/overflow on purpose.
        warnings.simplefilter("ignore", RuntimeWarning)
        cases = node_cases.collect_testcases()
    names = [c.name for c in cases]
    dups = sorted(n for n, k in collections.Counter(names).items() if k > 1)
    if dups:
        print(f"onnx_node_tests.py: duplicate case names: {dups}", file=sys.stderr)
        return 1

    index, skipped, skip_reasons = [], [], collections.Counter()
    for case in sorted(cases, key=lambda c: c.name):
        if case.model is None or not case.data_sets:
            files, reason = None, "no model or no data sets"
        else:
            files, reason = case_files(case)
        if files is None:
            skipped.append((case.name, reason))
            skip_reasons[reason] += 1
            continue
        model = case.model
        imports = {o.domain: o.version for o in model.opset_import}
        opset = next((imports[d] for d in DEFAULT_DOMAINS if d in imports), None)
        ops = op_types(model.graph)
        meta = {
            "rtol": case.rtol,
            "atol": case.atol,
            "opset": opset,
            "op_types": ops,
            "opset_imports": imports,
            "ir_version": model.ir_version,
            "data_sets": len(case.data_sets),
        }
        files["meta.json"] = (json.dumps(meta, sort_keys=True) + "\n").encode()
        for rel, data in files.items():
            path = os.path.join(out, case.name, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        index.append((case.name, ",".join(ops), str(len(case.data_sets)),
                      "" if opset is None else str(opset)))

    with open(os.path.join(out, "index.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# onnx {onnx.__version__} node test cases: "
                "name, op_types (comma-separated), data_sets, opset\n")
        for row in index:
            f.write("\t".join(row) + "\n")
    with open(os.path.join(out, "skipped.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# onnx {onnx.__version__} node test cases not written: name, reason\n")
        for row in skipped:
            f.write("\t".join(row) + "\n")

    tols = collections.Counter((c.rtol, c.atol) for c in cases)
    print(f"onnx {onnx.__version__}, numpy {np.__version__}: {len(cases)} node test cases, "
          f"{len(index)} written, {len(skipped)} skipped")
    for reason, n in sorted(skip_reasons.items()):
        print(f"  skipped {n}: {reason}")
    for (rtol, atol), n in sorted(tols.items()):
        print(f"  rtol={rtol} atol={atol}: {n} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
