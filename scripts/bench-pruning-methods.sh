#!/usr/bin/env bash
# L0 under constraints vs the magnitude baselines (one-shot global magnitude, Zhu & Gupta's
# gmp), same network, data, epochs and optimizer, several seeds; then the device-budget
# table (each method inside the same flash budget). Writes one summary.json per run under
# $OUT and prints markdown tables (BENCHMARKS.md, "Pruning methods" and "Device budgets").
#
#   scripts/bench-pruning-methods.sh [OUT] [EPOCHS] [SEEDS]
#
# Needs `scripts/fetch-data mnist` (and fashion-mnist for DATASETS=fashion-mnist) and a
# release build:
#   cargo build --release -p tether-train
# METHODS picks the rows: l0, magnitude, gmp, and l0wu0 (the L0 method without its dense
# warm-up, `--warmup-epochs 0`: its behaviour before 2026-12-07); BUDGETS="" skips the
# flash table.
set -euo pipefail
OUT=${1:-out/bench-methods}
EPOCHS=${2:-10}
SEEDS=${3:-"0 1 2"}
BIN=${TETHER_TRAIN:-target/release/tether-train}
MODELS=${MODELS:-"lenet300"}
DATASETS=${DATASETS:-"mnist"}
DENSITIES=${DENSITIES:-"0.1 0.05"}
BUDGETS=${BUDGETS-"64KiB 32KiB"}
METHODS=${METHODS:-"l0 magnitude gmp"}
mkdir -p "$OUT"

run() { # name args...
  local name=$1; shift
  # l0wu0: the L0 method with its warm-up off.
  local args=()
  for a in "$@"; do
    if [ "$a" = l0wu0 ]; then args+=(l0 --warmup-epochs 0); else args+=("$a"); fi
  done
  set -- "${args[@]}"
  if [ ! -f "$OUT/$name/summary.json" ]; then
    "$BIN" prune "$@" --epochs "$EPOCHS" --out "$OUT/$name" > "$OUT/$name.log" 2>&1 \
      || { echo "FAILED: $name (see $OUT/$name.log)" >&2; return 0; }
  fi
}

for data in $DATASETS; do for model in $MODELS; do
  for d in $DENSITIES; do for m in $METHODS; do for s in $SEEDS; do
    run "$data-$model-d$d-$m-s$s" --dataset "$data" --model "$model" --method "$m" --target-density "$d" --seed "$s"
  done; done; done
  for b in $BUDGETS; do for m in $METHODS; do
    run "$data-$model-flash$b-$m-s0" --dataset "$data" --model "$model" --method "$m" --max-flash "$b" --seed 0
  done; done
done; done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys, collections
out = sys.argv[1]
rows = collections.defaultdict(list)
budget_rows = []
for name in sorted(os.listdir(out)):
    p = os.path.join(out, name, "summary.json")
    if not os.path.isfile(p):
        continue
    s = json.load(open(p))
    # data-model-what-method-seed; the dataset's name may hold dashes (fashion-mnist).
    data, model, what, method, _ = name.rsplit("-", 4)
    acc, dens = s["final"]["test_accuracy"], s["final"]["density"]
    if what.startswith("d"):
        rows[(data, model, what[1:], method)].append((acc, dens))
    else:
        b = s["budgets"][0]
        budget_rows.append((data, model, what[5:], method, acc, dens, int(b["achieved"]), int(b["budget"]), b["met"]))
print("| data | model | target density | method | test accuracy (mean ± sd) | density reached | seeds |")
print("|---|---|---|---|---|---|---|")
for (data, model, d, method), v in sorted(rows.items()):
    accs = [a for a, _ in v]
    sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
    dmean = statistics.mean(x for _, x in v)
    print(f"| {data} | {model} | {d} | {method} | {statistics.mean(accs):.4f} ± {sd:.4f} | {dmean:.4f} | {len(v)} |")
print()
print("| data | model | flash budget | method | test accuracy | density | model.tthr bytes | met |")
print("|---|---|---|---|---|---|---|---|")
for r in budget_rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} ({r[7]} B) | {r[3]} | {r[4]:.4f} | {r[5]:.4f} | {r[6]} | {'yes' if r[8] else 'NO'} |")
PY
