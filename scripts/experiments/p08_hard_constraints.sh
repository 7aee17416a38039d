#!/usr/bin/env bash
# P08 claims, small: Fisher-KPP (nu 0.01, rho 1, periodic, u0 = 0.5 + 0.4 sin 2 pi x) learned by a basis network
# (the paper's FNO on a 32 x 32 grid, and a tanh MLP; BASES="fno mlp") under the physics loss with (a) a soft constraint (the weights learned as parameters), (b) one hard-constraint
# expert (the weights solved by Levenberg-Marquardt on 256 sampled points every step, with 64 initial points for the
# MLP and every initial and boundary node for the FNO), (c) 4 experts on
# quarters of x; 3 seeds each; the same three on PDEBench's diffusion-sorption (u(0,t) = 1, u = D u_x at x = 1,
# u(x,0) = 0.1, t in [0, 500]). Prints mean +- std of the relative L2 error against the finite-difference reference,
# the PDE residual RMS on held-out points and the seconds per step; then the time per step of 1 and 4 experts as the
# constraint points grow (256, 1024, 4096 on the FNO's 64 x 64 grid; 10 steps). Runs stay under $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p optlab-cli
bin=${OPTLAB:-./target/release/optlab}
out=${OUT:-runs/pde}
steps=${STEPS:-300}
bases=${BASES:-fno mlp}
mkdir -p "$out"
{
  for b in $bases; do
    for s in 0 1 2; do
      for p in fisher-kpp diffusion-sorption; do
        for c in "soft" "hard" "hard --experts 4"; do
          "$bin" pde train --basis "$b" --pde "$p" --constraint $c --steps "$steps" --seed $s \
            --out "$out/$b-$p-${c// /}-s$s" --json
        done
      done
    done
  done
} | tee "$out/outcomes.jsonl"
{
  for pts in 256 1024 4096; do
    for e in 1 4; do
      "$bin" pde train --constraint hard --experts $e --points $pts --grid 64 --steps 10 \
        --out "$out/scale-e$e-p$pts" --json
    done
  done
} > "$out/scaling.jsonl"
python3 - "$out/outcomes.jsonl" "$out/scaling.jsonl" <<'PY'
import json, sys, statistics as st, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = collections.defaultdict(list)
for r in rows:
    by[(r["basis"], r["pde"], r["constraint"])].append(r)
ms = lambda v: f"{st.mean(v):.4g} ± {st.stdev(v) if len(v) > 1 else 0:.2g}"
print("| basis | pde | constraint | rel. L2 error | PDE residual RMS | s per step |")
print("|---|---|---|---|---|---|")
for (basis, pde, k), rs in by.items():
    print(f"| {basis} | {pde} | {k} | {ms([r['rel_l2'] for r in rs])} | {ms([r['residual_rms'] for r in rs])} | {ms([r['seconds_per_step'] for r in rs])} |")
print("| constraint points | 1 expert s/step | 4 experts s/step |")
print("|---|---|---|")
scale = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for pts in sorted({r["points"] for r in scale}):
    t = {r["experts"]: r["seconds_per_step"] for r in scale if r["points"] == pts}
    print(f"| {pts} | {t.get(1, float('nan')):.4f} | {t.get(4, float('nan')):.4f} |")
PY
