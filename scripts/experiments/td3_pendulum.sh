#!/usr/bin/env bash
# Issue 20's TD3 check: TD3 (CleanRL's hyperparameters, 2000 random warm-up steps) on Pendulum-v1 for 30 000
# environment steps on seeds 0, 1, 2; solved when the mean return of the last 10 episodes is above -200.
#   scripts/experiments/td3_pendulum.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/td3_pendulum}
cargo build --release -q -p optlab-cli
for s in 0 1 2; do
  target/release/optlab rl train --env pendulum --algo td3 --steps 30000 --seed "$s" --out "$OUT/seed$s" --json
done
