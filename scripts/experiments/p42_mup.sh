#!/usr/bin/env bash
# P42 claims, small: (1) the coordinate check is flat in width under muP and grows under SP; (2) in a learning-rate
# sweep the optimal lr moves with width under SP and stays put (within one grid step) under muP.
# Digits, MLP 64-W-W-10 (ReLU), Adam, widths 64..512 (1024 for the coordinate check), base width 64, seeds 0-2;
# lr grid 2^-14 .. 2^-3, 300 steps of batch 64, loss = mean training loss over the last 30 steps.
# TASK=charlm runs the same checks on the char-level transformer (widths 32..256, base 32; slower).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p optlab-cli
out=${OUT:-runs/p42-mup}
seeds=${SEEDS:-0,1,2}
if [ "${TASK:-supervised}" = charlm ]; then
  ./target/release/optlab mup coord-check --task charlm --widths 32,64,128,256 --base 32 --seed "$seeds" \
    --batch-size 32 --optimizer adam:lr=1e-2 --out "$out/coord-lm"
  ./target/release/optlab mup lr-sweep --task charlm --widths 32,64,128,256 --base 32 --seed "$seeds" \
    --batch-size 32 --steps "${STEPS:-300}" --lrs 0.00024414,0.00048828,0.00097656,0.0019531,0.0039062,0.0078125,0.015625,0.03125 \
    --out "$out/sweep-lm"
else
  ./target/release/optlab mup coord-check --widths 64,128,256,512,1024 --seed "$seeds" --out "$out/coord"
  ./target/release/optlab mup lr-sweep --widths 64,128,256,512 --seed "$seeds" --out "$out/sweep"
fi
