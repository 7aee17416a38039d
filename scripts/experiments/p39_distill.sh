#!/usr/bin/env bash
# P39: f-distill of the exact score of the ring of 8 and of the 5x5 grid (VP) into a one-step generator (MLP
# 128-128 ReLU, 2-D latent), reverse KL (DMD), forward KL and JS, seeds 0-2, 2000 generator steps with 5 fake-score
# and discriminator steps each, GAN weight 0.01. Prints mode recall, share of samples on a mode, the TV distance
# between the on-mode samples' split among the modes and the weights, and energy distance (mean over seeds). Build
# first: cargo build --release -p optlab-cli.
# Usage: [STEPS=8000] [TARGETS="ring:decay=0.7 grid:decay=0.9"] [GENERATOR=mlp:hidden=128-128,act=gelu]
#        p39_distill.sh [OUT] [BINARY]
# STEPS: generator steps, default 2000; quality keeps improving past it, see the registry's note on P39. TARGETS:
# default "ring grid", equal weights; decay=D weighs mode k ~ D^k, light modes that a mode-seeking divergence may
# starve. GENERATOR: distill's --generator; p39_ceiling.sh gives what that class reaches when regressed directly on
# the teacher's ODE map.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p39}
bin=${2:-./target/release/optlab}
steps=${STEPS:-2000}
targets=${TARGETS:-ring grid}
generator=${GENERATOR:-mlp:hidden=128-128,act=relu}
mkdir -p "$out"
export RAYON_NUM_THREADS=1
for target in $targets; do
    for seed in 0 1 2; do
        for div in reverse-kl forward-kl js; do
            [ -f "$out/$target-$div-$seed/summary.json" ] ||
                "$bin" distill --target "$target" --divergence "$div" --seed "$seed" --steps "$steps" --generator "$generator" --out "$out/$target-$div-$seed" --quiet &
        done
        wait
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys, glob, os
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*/summary.json"))):
    s = json.load(open(f))
    rows.setdefault((s["target"], s["divergence"]), []).append(s)
print(f"{'target':<16} {'divergence':<12} {'modes recalled':>16} {'on a mode':>10} {'split TV':>9} {'energy distance':>16} {'floor':>8}")
for (t, d), ss in sorted(rows.items()):
    m = statistics.mean
    print(f"{t:<16} {d:<12} {m(s['modes']['recalled'] for s in ss):>10.2f} / {ss[0]['modes']['modes']:<3} "
          f"{m(s['modes']['on_mode'] for s in ss):>10.3f} {m(s['modes']['split_tv'] for s in ss):>9.3f} "
          f"{m(s['energy_distance'] for s in ss):>16.4f} {m(s['energy_floor'] for s in ss):>8.4f}   ({len(ss)} seeds)")
PY
