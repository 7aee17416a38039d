#!/usr/bin/env bash
# P11: behaviour cloning of an LQR expert with the policy's Lipschitz constant bounded by L (per-layer spectral
# projection, certified by LipSDP), swept over L on two systems (the marginally stable double integrator and the
# damped one) and two perturbation radii; 3 seeds each. Prints each run's table; bc.json and tradeoff.png per run.
# Build first: cargo build --release -p optlab-cli --features optlab-cli/lipsdp
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p11}
for system in double-integrator damped; do
    for eps in 0.1 0.5; do
        for seed in 0 1 2; do
            echo "== $system eps $eps seed $seed"
            ./target/release/optlab rl bc --system "$system" --lipschitz 0.25,0.5,1,2,4,8,none --eps "$eps" \
                --attack-steps 20 --seed "$seed" --out "$out/$system-$eps-$seed"
        done
    done
done
