#!/usr/bin/env bash
# P37: f-DPO on the character transformer. The SFT model is the `charlm` task's transformer trained for 1000
# steps on the embedded Shakespeare; per divergence (reverse KL, forward KL, JS, alpha 0.5) and seed (0, 1, 2):
# 512 preference pairs of SFT completions (16-character prompts, 24-character completions) labelled by the share
# of vowels, beta 0.1, Adam 1e-3, 4 epochs of batches of 32; evaluated on 128 held-out prompts. Prints the mean
# and spread over seeds of reward, KL to the reference, entropy per token and distinct-2/3.
# Build first: cargo build --release -p optlab-cli. Usage: p37_fdpo.sh [OUT] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p37}
bin=${2:-./target/release/optlab}
mkdir -p "$out"
[ -f "$out/sft/model.safetensors" ] || "$bin" train --task charlm --steps 1000 --out "$out/sft" --quiet
export RAYON_NUM_THREADS=1
for seed in 0 1 2; do
    for pair in "reverse-kl forward-kl" "js alpha:0.5"; do
        for div in $pair; do
            [ -f "$out/$div-$seed/summary.json" ] ||
                "$bin" align dpo --sft "$out/sft" --divergence "$div" --seed "$seed" --out "$out/$div-$seed" --quiet &
        done
        wait
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys, glob, os
out = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "*-[0-9]/summary.json"))):
    s = json.load(open(f))
    rows.setdefault(s["divergence"], []).append(s)
def ms(v):
    return f"{statistics.mean(v):.3f} ± {statistics.pstdev(v):.3f}"
print(f"{'divergence':<12} {'reward':>15} {'KL':>15} {'entropy/token':>15} {'distinct-2':>15} {'distinct-3':>15}")
refs = [s["reference"] for s in next(iter(rows.values()))]
print(f"{'SFT':<12} {ms([r['reward'] for r in refs]):>15} {ms([0.0]):>15} {ms([r['entropy'] for r in refs]):>15} "
      f"{ms([r['distinct'][1] for r in refs]):>15} {ms([r['distinct'][2] for r in refs]):>15}")
for d, ss in rows.items():
    p = [s["policy"] for s in ss]
    print(f"{d:<12} {ms([x['reward'] for x in p]):>15} {ms([x['kl'] for x in p]):>15} {ms([x['entropy'] for x in p]):>15} "
          f"{ms([x['distinct'][1] for x in p]):>15} {ms([x['distinct'][2] for x in p]):>15}   ({len(p)} seeds)")
PY
