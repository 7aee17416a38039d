#!/usr/bin/env bash
# P04: off-policy GAIL on Pendulum-v1 from a TD3 expert (10 noiseless episodes), the discriminator with the
# official one-sided gradient penalty (gp), spectral normalization (spectral) or neither (none); 3 seeds each,
# 30k environment steps (REGS picks the settings), two runs at a time on one thread each. Prints, per setting, the mean return of the last
# 10 episodes per seed and the local Lipschitz constant of the learned reward (median over 10 expert pairs,
# boxes of radius 0.1). Build first: cargo build --release -p optlab-cli
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p04}
steps=${STEPS:-30000}
mkdir -p "$out"
if [ ! -f "$out/expert/actor.safetensors" ]; then
    ./target/release/optlab rl train --env pendulum --algo td3 --steps 30000 --seed 0 --out "$out/expert" --json
fi
for reg in ${REGS:-gp none spectral}; do for seed in 0 1 2; do echo "$reg $seed"; done; done |
    RAYON_NUM_THREADS=1 xargs -P 2 -L 1 sh -c './target/release/optlab rl train --env pendulum --algo gail --reg $0 --seed $1 --steps '"$steps"' --expert '"$out"'/expert --out '"$out"'/$0-$1 --json > '"$out"'/$0-$1.log 2>&1'
python3 - "$out" "${REGS:-gp none spectral}" <<'PY'
import json, os, sys, statistics
out = sys.argv[1]
print("expert:", json.load(open(f"{out}/expert/summary.json"))["mean_return_last_10"])
for reg in sys.argv[2].split():
    rows = [json.load(open(f"{out}/{reg}-{s}/summary.json")) for s in range(3)]
    curves = []
    for s in range(3):
        eps = [json.loads(l) for l in open(f"{out}/{reg}-{s}/episodes.jsonl")]
        curves.append([statistics.mean(e["return"] for e in eps if m - 5000 < e["step"] <= m) for m in range(5000, 30001, 5000)])
    print(reg, "last-10 per seed:", [round(r["mean_return_last_10"], 1) for r in rows],
          "| mean return per 5k steps (median over seeds):", [round(statistics.median(c), 1) for c in zip(*curves)],
          "| local Lipschitz of D (median per seed):", [round(r["reward_local_lipschitz"]["median"], 2) for r in rows],
          "| seconds:", [round(r["seconds"]) for r in rows])
PY
