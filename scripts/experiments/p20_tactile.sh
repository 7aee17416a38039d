#!/usr/bin/env bash
# P20: the differentiable tactile core (a 2-D DiffTactile analogue).
# 1) Hertz check: a cylinder (R = 1) pressed into a linear-elastic body (E = 1, nu = 0.3, 16 x 8, graded mesh of
#    spacing 0.01 at the contact): load against indentation (relative to the axis point at depth 1) and the contact
#    half-width against Hertz's line contact.
# 2) System identification: recover Young's modulus and friction (truth 1.0, 0.5; start 2.5, 0.2) from the
#    markers and force of a press-and-slide, by Adam through the simulator's reverse-mode gradient and by CMA-ES on
#    the same number of simulations (a gradient counts 3); noise-free and with 5% noise; CMA-ES seeds 0, 1, 2.
# 3) Trajectory optimisation: the 5 knots of a press-and-slide whose reading matches a target's (press 0.06,
#    slide 0.4), from a far start (press 0.03, no slide) and a near one (press 0.04, slide 0.25); Adam against
#    CMA-ES on the same budget; and with 17 knots (34 coordinates) from the near start, Adam at lr 0.01 and 0.003.
# Build first: cargo build --release -p optlab-cli. Usage: p20_tactile.sh [OUT] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p20}
bin=${2:-./target/release/optlab}
mkdir -p "$out"
export RAYON_NUM_THREADS=1
"$bin" sim hertz --out "$out/hertz"
for it in 60 200; do
    for noise in 0 0.05; do
        for seed in 0 1 2; do
            "$bin" sim tactile identify --iterations "$it" --noise "$noise" --seed "$seed" \
                --out "$out/identify-it$it-noise$noise-seed$seed" --quiet
        done
    done
done
for it in 100 300; do
    for start in 0.03,0 0.04,0.25; do
        for seed in 0 1 2; do
            "$bin" sim tactile optimize --iterations "$it" --start "$start" --seed "$seed" \
                --out "$out/optimize-it$it-start$start-seed$seed" --quiet
        done
    done
done
for it in 100 300; do
    "$bin" sim tactile optimize --knots 17 --iterations "$it" --start 0.04,0.25 --out "$out/optimize-k17-it$it" --quiet
done
"$bin" sim tactile optimize --knots 17 --iterations 100 --start 0.04,0.25 --optimizer adam:lr=0.003 \
    --out "$out/optimize-k17-it100-lr3e-3" --quiet
