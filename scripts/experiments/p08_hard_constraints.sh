#!/usr/bin/env bash
# P08 claims, small: Fisher-KPP (nu 0.01, rho 1, periodic, u0 = 0.5 + 0.4 sin 2 pi x) learned by a basis network
# under the physics loss with (a) a soft constraint (the weights learned as parameters), (b) one hard-constraint
# expert (the weights solved by Levenberg-Marquardt on 256 + 64 sampled points every step), (c) 4 experts on
# quarters of x; 3 seeds each; the same three on PDEBench's diffusion-sorption (u(0,t) = 1, u = D u_x at x = 1,
# u(x,0) = 0.1, t in [0, 500]). Prints mean +- std of the relative L2 error against the finite-difference reference,
# the PDE residual RMS on held-out points and the seconds per step; then the time per step of 1 and 4 experts as the
# constraint points grow (256, 4096, 16384; 10 steps). Runs stay under $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p optlab-cli
out=${OUT:-runs/pde}
steps=${STEPS:-300}
mkdir -p "$out"
{
  for s in 0 1 2; do
    ./target/release/optlab pde train --constraint soft --steps "$steps" --seed $s --out "$out/soft-s$s" --json
    ./target/release/optlab pde train --constraint hard --steps "$steps" --seed $s --out "$out/hard1-s$s" --json
    ./target/release/optlab pde train --constraint hard --experts 4 --steps "$steps" --seed $s --out "$out/hard4-s$s" --json
    for c in "soft" "hard" "hard --experts 4"; do
      ./target/release/optlab pde train --pde diffusion-sorption --constraint $c --steps "$steps" --seed $s --out "$out/sorption-${c// /}-s$s" --json
    done
  done
} | tee "$out/outcomes.jsonl"
{
  for pts in 256 4096 16384; do
    for e in 1 4; do
      ./target/release/optlab pde train --constraint hard --experts $e --points $pts --steps 10 --out "$out/scale-e$e-p$pts" --json
    done
  done
} > "$out/scaling.jsonl"
python3 - "$out/outcomes.jsonl" "$out/scaling.jsonl" <<'PY'
import json, sys, statistics as st, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = collections.defaultdict(list)
for r in rows:
    by[(r["pde"], r["constraint"])].append(r)
ms = lambda v: f"{st.mean(v):.4g} ± {st.stdev(v) if len(v) > 1 else 0:.2g}"
print("| pde | constraint | rel. L2 error | PDE residual RMS | s per step |")
print("|---|---|---|---|---|")
for (pde, k), rs in by.items():
    print(f"| {pde} | {k} | {ms([r['rel_l2'] for r in rs])} | {ms([r['residual_rms'] for r in rs])} | {ms([r['seconds_per_step'] for r in rs])} |")
print("| constraint points | 1 expert s/step | 4 experts s/step |")
print("|---|---|---|")
scale = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for pts in sorted({r["points"] for r in scale}):
    t = {r["experts"]: r["seconds_per_step"] for r in scale if r["points"] == pts}
    print(f"| {pts} | {t.get(1, float('nan')):.4f} | {t.get(4, float('nan')):.4f} |")
PY
