#!/usr/bin/env bash
# P07: validity of counterfactuals under model changes, German Credit and breast cancer, two seeds of the split and
# training, 100 rejected test rows each (taken fold by fold from 5 folds: German needs 4, breast cancer 3). Per
# fold: a baseline MLP 128-128 and 50 changed models (25 other seeds, 25 with 10% of the training rows replaced),
# the base counterfactuals of the official code (ART's elastic-net attack, L1 and L2 rules), T-Rex from the L2
# one with the official settings (tau 0.75, sigma 0.05, K 1000, 20 steps of 0.01) and with steps of 0.05 for 50
# steps (the official step is 1% of a [0, 1]-scaled feature; our features are standardized, a range of about 4
# to 6), and the closest training row of the other class. Build first: cargo build --release -p optlab-cli
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p07}
mkdir -p "$out"
for data in german breast-cancer; do
    for seed in 0 1; do
        echo "== $data, seed $seed"
        ./target/release/optlab explain validity --data "$data" --models 50 --points 100 --seed "$seed" \
            --methods "l1,l2,trex,trex:step=0.05,steps=50,closest" --out "$out/$data-$seed"
    done
done
