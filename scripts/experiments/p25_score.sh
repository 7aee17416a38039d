#!/usr/bin/env bash
# P25 and the diffusion base. (1) Denoising score matching of the default score network (MLP 128-128-128, GELU,
# VP, 5000 steps of 256 on 2000 samples) on the 1-D pair, the ring of 8, the 5x5 grid and the 16-dimensional
# mixture: score error against the exact score, samples by Heun (100 steps) and Euler-Maruyama (1000 steps):
# energy distance and mode recall. (2) P25's regression at t = 0.05 on the 1-D pair: two-layer ReLU networks of
# widths 64, 1024, 16384 under full-batch GD (5000 steps) next to the NTK predictor, for n = 64 and 256. (3) The
# stopping rules against the best step as the labels get less noisy: t = 0.05, 0.2, 0.5 and n = 64, 256, 1024,
# the kernel and a width-1024 network over 3000 steps.
# Build first: cargo build --release -p optlab-cli. Usage: p25_score.sh [OUT] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p25}
bin=${2:-./target/release/optlab}
mkdir -p "$out"
for target in line ring grid gaussians:dim=16,modes=4; do
    name=${target%%:*}
    "$bin" diffusion train --target "$target" --out "$out/$name" --quiet
    "$bin" diffusion sample "$out/$name" --sampler em --steps 1000 --n 2000 --png "$out/$name/em.png"
done
for n in 64 256; do
    "$bin" diffusion ntk --n "$n" --out "$out/ntk-$n" --quiet
done
for time in 0.05 0.2 0.5; do
    for n in 64 256 1024; do
        "$bin" diffusion ntk --time "$time" --n "$n" --widths 1024 --steps 3000 --out "$out/ntk-t$time-n$n" --quiet
    done
done
