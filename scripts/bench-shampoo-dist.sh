#!/usr/bin/env bash
# Distributed Shampoo's block ownership (issue 34): a Shampoo step on LeNet-5 (MNIST,
# global batch 128) on 1 process, 2 replicas on threads (`--devices 2`) and 2 MPI
# processes (`mpirun -np 2`), each data-parallel run with ownership (the default) and with
# every rank computing every block (`--shampoo-replicate`), at precondition frequency 1
# and 10. Rounds interleave the runs; every run prints its ranks' step time
# (`TETHER_PARALLEL_STATS=1`: wall time of the training steps, all-reduces and
# all-gathers included) and the process tree's CPU time (GNU time: user + sys of the
# whole run, data loading and the test evaluation included).
#
# Usage: [RUNS="..."] [PADDED_BIN=...] scripts/bench-shampoo-dist.sh OUT_DIR [ROUNDS] [STEPS]
# RUNS picks among: one threads threads-replicated mpi mpi-replicated threads-padded (all
# but the last by default). threads-padded is `--devices 2` with PADDED_BIN, a binary
# built before the local peers' all-gather (commit 47231f5: a zero-padded all-reduce
# through burn-collective), to time the two all-gathers against each other.
# Needs a release binary with MPI: cargo build --release -p tether-train --features mpi
# (in $CARGO_TARGET_DIR or target/), OpenMPI's mpirun for the mpi runs, MNIST in the data
# cache. Writes OUT_DIR/results.tsv (one line per rank and run) and prints it.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [ROUNDS] [STEPS]}
rounds=${2:-2}
steps=${3:-20}
bin=${CARGO_TARGET_DIR:-target}/release/tether-train
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p tether-train --features mpi" >&2; exit 1; }
runs=${RUNS:-one threads threads-replicated mpi mpi-replicated}
case " $runs " in *" mpi"*) command -v mpirun >/dev/null || { echo "no mpirun (Debian: openmpi-bin)" >&2; exit 1; } ;; esac
case " $runs " in *" threads-padded "*) [ -x "${PADDED_BIN:-}" ] || { echo "threads-padded needs PADDED_BIN" >&2; exit 1; } ;; esac
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TETHER_PARALLEL_STATS=1
results=$out/results.tsv
printf 'round\tfrequency\trun\tload1\tcpu_s\twall_s\twho\tsteps\tms_per_step\tcollective_share_pct\n' >"$results"
for round in $(seq 1 "$rounds"); do
    for f in 1 10; do
        args=(prune --model lenet5 --optimizer shampoo --precondition-frequency "$f"
            --epochs 1 --batch 128 --train-limit $((128 * steps)) --test-limit 1000 --seed 0)
        for run in $runs; do
            dir=$out/r$round-f$f-$run
            rm -rf "$dir"
            case $run in
                one) cmd=("$bin" "${args[@]}" --distributed off) ;;
                threads) cmd=("$bin" "${args[@]}" --devices 2) ;;
                threads-replicated) cmd=("$bin" "${args[@]}" --devices 2 --shampoo-replicate) ;;
                threads-padded) cmd=("$PADDED_BIN" "${args[@]}" --devices 2) ;;
                mpi) cmd=(mpirun --oversubscribe -np 2 "$bin" "${args[@]}") ;;
                mpi-replicated) cmd=(mpirun --oversubscribe -np 2 "$bin" "${args[@]}" --shampoo-replicate) ;;
                *) echo "unknown run $run" >&2; exit 1 ;;
            esac
            load=$(cut -d' ' -f1 /proc/loadavg)
            /usr/bin/time -f 'TIME %U %S %e' -o "$dir.time" "${cmd[@]}" --out "$dir" \
                >"$dir.stdout" 2>"$dir.stderr"
            read -r _ user sys wall <"$dir.time"
            cpu=$(python3 -c "print(f'{$user + $sys:.2f}')")
            # "rank 0 of 2: 20 steps in 3.1 s (155.00 ms a step); 61 all-reduces in ... (12.3% of ...)"
            grep -E '^(one process|rank [0-9]+ of [0-9]+|replica [0-9]+ of [0-9]+): ' "$dir.stderr" |
                sed -E 's/^(.*): ([0-9]+) steps in [0-9.]+ s \(([0-9.]+) ms a step\); [0-9]+ all-reduces in [0-9.]+ s \(([0-9.]+)% .*/\1\t\2\t\3\t\4/' |
                while IFS= read -r line; do
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$f" "$run" "$load" "$cpu" "$wall" "$line"
                done >>"$results"
        done
    done
done
column -t -s $'\t' "$results"
