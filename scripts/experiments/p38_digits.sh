#!/usr/bin/env bash
# P38 on real curves: train the digits MLP with constant, cosine, WSD and linear-decay schedules, fit the annealing
# law on constant + cosine, and check its predictions for WSD and linear decay (MAPE, final loss, ranking).
#   scripts/experiments/p38_digits.sh [OUT_DIR] [train|val]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/p38}
LOSS=${2:-val}
BIN=$([ "$LOSS" = val ] && echo 1 || echo 25)
cargo build --release -q -p optlab-cli
O=target/release/optlab
for s in constant cosine wsd:decay_frac=0.2 linear; do
  "$O" train --data digits --model mlp:hidden=32 --optimizer adamw:lr=3e-3 --schedule "$s" --steps 2000 \
    --batch-size 16 --eval-every 20 --seed 0 --quiet --out "$OUT/${s%%:*}"
done
"$O" scaling fit --run "$OUT/constant" --run "$OUT/cosine" --loss "$LOSS" --bin "$BIN" --out "$OUT/fit.json"
"$O" scaling check --params "$OUT/fit.json" --run "$OUT/wsd" --run "$OUT/linear" --loss "$LOSS" --bin "$BIN" \
  --json > "$OUT/check.json"
