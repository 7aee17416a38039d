#!/usr/bin/env bash
# P39: the ceiling of the one-step generator class that p39_distill.sh trains (MLP 128-128, 2-D latent): the same
# network regressed on the exact teacher's probability-flow ODE map z -> ODE(z), for the ring of 8 and the 5x5 grid,
# with ReLU (distill's default) and GELU. Prints the share of held-out samples on a mode as training goes, to set
# beside the distilled generators' share at the same number of steps. Usage: [STEPS=8000] p39_ceiling.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${STEPS:-2000}
cargo build --release -p optlab --example p39_ceiling
export RAYON_NUM_THREADS=1
for target in ring grid; do
    for act in relu gelu; do
        ./target/release/examples/p39_ceiling "$target" "$steps" "$act" > "/tmp/p39_ceiling_$target-$act.txt" &
    done
    wait
    for act in relu gelu; do
        echo "== $target, $act"
        cat "/tmp/p39_ceiling_$target-$act.txt"
    done
done
