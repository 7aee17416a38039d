#!/usr/bin/env bash
# DP-SGD on the digits (issue 18's check): the MLP 64-128-10 trained by plain SGD (lr 0.5, batch 64, 10 epochs,
# clip 1, delta 1e-5, Poisson sampling) at epsilon = 1, 3, 8 over seeds 0, 1, 2, and without privacy; validation
# accuracy (mean over seeds), epsilon spent, the calibrated noise multiplier and seconds per step. Next to it,
# opacus on the same model, data, sampling and hyperparameters (its own 80/20 split) when torch and opacus import
# (PYTHON=/path/to/python to pick an interpreter).
#   scripts/experiments/dp_sgd_digits.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-runs/dp_sgd}
PY=${PYTHON:-python3}
cargo build --release -q -p optlab-cli
O=target/release/optlab
mkdir -p "$OUT"
COMMON="--data digits --model mlp:hidden=128 --optimizer sgd:lr=0.5 --batch-size 64 --epochs 10 --quiet"
summary() { # dir -> "accuracy epsilon sigma seconds_per_step"
  python3 -c "import json,sys; s=json.load(open(sys.argv[1]+'/summary.json')); p=s.get('privacy') or {}; \
print(s['val_accuracy'], p.get('epsilon','-'), p.get('noise_multiplier','-'), s['wall_time_s']/s['steps'])" "$1"
}
printf "%-8s %-5s %-9s %-9s %-10s %-12s\n" epsilon seed val_acc eps_spent sigma s_per_step | tee "$OUT/optlab.txt"
for eps in 1 3 8 none; do
  for seed in 0 1 2; do
    d="$OUT/eps-$eps-seed-$seed"
    rm -rf "$d"
    if [ "$eps" = none ]; then
      "$O" train $COMMON --seed "$seed" --out "$d" > /dev/null
    else
      "$O" train $COMMON --seed "$seed" --privacy "epsilon=$eps,delta=1e-5,clip=1.0" --out "$d" > /dev/null
    fi
    read -r acc e sigma sps < <(summary "$d")
    printf "%-8s %-5s %-9.4f %-9s %-10s %-12.3e\n" "$eps" "$seed" "$acc" "$e" "$sigma" "$sps" | tee -a "$OUT/optlab.txt"
  done
done
for eps in 1 3 8; do
  if "$PY" crates/optlab-bench/python/dp_opacus.py --digits crates/optlab/data/digits.csv.gz --epsilon "$eps" \
      > "$OUT/opacus-eps-$eps.json"; then
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); m=lambda k,xs: sum(x[k] for x in xs)/len(xs); \
print('opacus', r['opacus'], 'epsilon', r['epsilon_target'], 'val_acc %.4f' % m('val_accuracy', r['private']), \
'eps_spent %.4f' % m('epsilon', r['private']), 'sigma', r['private'][0]['noise_multiplier'], \
's/step private %.3e plain %.3e' % (m('seconds_per_step', r['private']), m('seconds_per_step', r['plain'])), \
'plain val_acc %.4f' % m('val_accuracy', r['plain']))" "$OUT/opacus-eps-$eps.json" | tee -a "$OUT/opacus.txt"
  else
    echo "opacus not available ($PY): skipped" | tee -a "$OUT/opacus.txt"
    break
  fi
done
