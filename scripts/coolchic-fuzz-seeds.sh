#!/usr/bin/env bash
# Writes the seed corpus of the `coolchic_decode` fuzz target
# (deploy/fuzz/corpus/coolchic_decode/): real files of `tether-compress encode --method
# coolchic` (small Kodak images, so that deploy/tests/coolchic_fuzz.rs replays every
# mutation of them in seconds in a debug build), the firmware's asset, and a few damaged
# variants of each seed (truncated, a flipped byte, a zero-filled run; the damaged ones
# also with their CRC-32 rewritten, so that the fuzzer starts past the checksum).
#
# The encoder writes the current format version (3). The corpus also keeps files of
# versions 1 and 2, which this script does not rewrite (the encoder no longer writes them):
# asset-v1-kodim23-96x64.cc and asset-v2-kodim23-96x64.cc (the firmware's asset before
# versions 2 and 3), seed-v1-kodim23-24x16.cc (this script's kodim23 seed as commit
# 6c4182d wrote it) and seed-v2-*.cc (its three seeds as commit 47231f5 had them).
#
#   scripts/coolchic-fuzz-seeds.sh KODAK_DIR
set -euo pipefail
kodak=${1:?usage: $0 KODAK_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/deploy/fuzz/corpus/coolchic_decode"
mkdir -p "$out"
cargo build --release -p tether-compress --bin tether-compress
bin="${CARGO_TARGET_DIR:-$root/target}/release/tether-compress"
enc() { # image downscale bpp steps name [extra flags]
    "$bin" encode "$kodak/$1.png" -o "$out/seed-$5.cc" --method coolchic \
        --downscale "$2" --bpp "$3" --steps "$4" "${@:6}"
}
enc kodim23 32 3 200 kodim23-24x16
enc kodim01 16 1 200 kodim01-48x32
# A budget large enough for a hidden layer in the ARM (8 -> [8] -> 2).
enc kodim03 16 4 200 kodim03-48x32-hidden
# Learned upsampling filters (version 3's filter section).
enc kodim12 16 2 200 kodim12-48x32-filters --coolchic-learn-upsampling
cp "$root/firmware/assets/kodim23-96x64.cc" "$out/asset-kodim23-96x64.cc"
python3 - "$out" <<'PY'
import pathlib, sys, zlib
out = pathlib.Path(sys.argv[1])
def reseal(b):
    return b[:-4] + (zlib.crc32(b[:-4]) & 0xFFFFFFFF).to_bytes(4, "little")
for seed in sorted(out.glob("seed-*.cc")):
    if seed.name.startswith(("seed-v1-", "seed-v2-")):
        continue
    b = seed.read_bytes()
    stem = seed.stem[len("seed-"):]
    n = len(b)
    variants = {
        "cut-half": b[: n // 2],
        "cut-crc": b[:-1],
        "flip-header": b[:4] + bytes([b[4] ^ 0x01]) + b[5:],
        "flip-stream": b[: n // 2] + bytes([b[n // 2] ^ 0x80]) + b[n // 2 + 1 :],
        "zero-stream": b[: n // 3] + bytes(8) + b[n // 3 + 8 :],
    }
    for name, v in variants.items():
        (out / f"{stem}-{name}.cc").write_bytes(v)
        if name != "cut-half" and name != "cut-crc":
            (out / f"{stem}-{name}-resealed.cc").write_bytes(reseal(v))
PY
ls -l "$out"
