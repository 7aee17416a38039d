#!/usr/bin/env bash
# P22: nonlinear elliptic variational PDEs on [0, 1]^d.
# 1) Preconditioned gradient descent u <- u - eta (I - Laplacian)^-1 DE(u) on the sine basis (the paper's
#    iteration) for the quartic Lagrangian (-Lap u + u^3 = f) and the p-Laplacian type (q = 4, kappa = 1), d = 1, 2,
#    3, u* = prod sin(pi x_i): the energy gap's geometric rate and the final errors.
# 2) Deep Ritz with two-layer tanh networks, -Lap u + u^3 = f with u* = sum sin(2 pi x_i)/sqrt(d) (a sum of d
#    ridges, |u*|_L2 the same in every d), Robin-consistent boundary penalty beta = 10, Adam lr 1e-2 with a cosine
#    schedule, 1024 fresh points per step: relative L2 / H1 errors for d = 2, 4, 8, 16 and widths 4..128, and the
#    smallest width reaching a relative L2 error of 0.1 in each d; at 4000 steps and at 16000 steps (at 4000 the
#    optimisation, not the width, limits d = 8 and 16).
# Build first: cargo build --release -p optlab-cli. Usage: p22_ritz.sh [OUT] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p22}
bin=${2:-./target/release/optlab}
mkdir -p "$out"
export RAYON_NUM_THREADS=1
for lag in quartic plaplace:4; do
    for d in 1 2 3; do
        modes=$([ "$d" = 3 ] && echo 6 || echo 8)
        points=$([ "$d" = 3 ] && echo 18 || echo 24)
        "$bin" pde spectral --lagrangian "$lag" --d "$d" --modes "$modes" --points "$points" --iterations 100 \
            --out "$out/spectral-${lag%%:*}-d$d"
    done
done
for steps in 4000 16000; do
    if [ -f "$out/ritz-$steps/config.toml" ]; then
        "$bin" pde ritz --resume "$out/ritz-$steps" --quiet
    else
        "$bin" pde ritz --dims 2,4,8,16 --widths 4,8,16,32,64,128 --steps "$steps" --target 0.1 \
            --out "$out/ritz-$steps" --quiet
    fi
done
