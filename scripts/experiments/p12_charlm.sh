#!/usr/bin/env bash
# P12 claim, small: on a character-level language model, PowerNorm trains stably and reaches a validation loss at
# least as good as LayerNorm, and naive BatchNorm is worse. The `charlm` task's defaults: the embedded Shakespeare
# excerpt in windows of 64 characters, a 2-layer pre-norm transformer (dim 64, 4 heads, MLP 4x), AdamW lr 2e-2,
# weight decay 0.01, cosine schedule with 100 warmup steps, 2000 steps of 32 windows; PowerNorm warmup 200 steps,
# groups = heads. Seeds 0-2 (SEEDS=...), one report with mean ± std and the averaged curves.
# Extra flags go to `optlab compare`, e.g. `--data text:context=64,unit=line` (one right-padded line per example,
# as in the paper's translation setting: sequences of varying length, padding out of the statistics),
# `--batch-size 4` (noisier batch statistics) or `--optimizer adamw:lr=3e-3,weight_decay=0.01`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p optlab-cli
out=${OUT:-runs/p12-charlm}
seeds=${SEEDS:-0,1,2}
model=${MODEL:-transformer:layers=2,dim=64,heads=4,mlp=4}
./target/release/optlab compare --task charlm --seed "$seeds" --quiet --out "$out" \
  --model "$model,norm=ln" --model "$model,norm=pn,pn_warmup=200" --model "$model,norm=bn" "$@"
