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
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
for system in ["double-integrator", "damped"]:
    for eps in ["0.1", "0.5"]:
        runs = [json.load(open(f"{out}/{system}-{eps}-{s}/bc.json")) for s in range(3)]
        e = runs[0]["expert"]
        print(f"{system} eps {eps}: expert worst/nominal {statistics.mean(r['expert']['worst_cost'] / r['expert']['nominal_cost'] for r in runs):.3f}")
        print("  L        certified  nominal  random  worst  worst-nominal  rho   (cost / expert's nominal, mean of 3 seeds)")
        for i, p in enumerate(runs[0]["policies"]):
            m = lambda k: statistics.mean(r["policies"][i][k] for r in runs)
            print(f"  {str(p['lipschitz']):8} {m('certified_bound'):9.3f} {m('nominal_ratio'):8.3f} {m('random_ratio'):7.3f} {m('worst_ratio'):6.3f} {m('worst_ratio') - m('nominal_ratio'):13.3f} {m('spectral_radius'):5.3f}")
PY
