#!/usr/bin/env bash
# Bilevel claims, small, on the embedded digits (numbers quoted in issue 16's note):
#  P10 (a) per-pixel ridge strengths by hypergradient descent against the best single strength of a grid;
#  P10 (b) distillation: one learned image per class against ten random real images, 3 seeds (mean ± std);
#  P05 BO-REP against StocBiO and BO-REP without normalization on hyper-rep, 3 seeds, a few upper step sizes each;
#  P13 LV-HBA on the official toy (official defaults) and on SVM cost selection against the KKT implicit route and a
#      grid search.
# Prints tables; every run's curve.csv, curve.png and metrics.json stay under $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p optlab-cli
out=${OUT:-runs/bilevel}
steps_hr=${STEPS_HR:-1000}
mkdir -p "$out"
run() { # dir, then bilevel arguments; prints the JSON outcome (or {"error": ...}) on one line
  local d=$1; shift
  ./target/release/optlab bilevel "$@" --out "$out/$d" --json 2>"$out/$d.err" || echo "{\"error\": \"$(tail -1 "$out/$d.err")\", \"args\": \"$*\"}"
}
{
  run ridge --problem ridge-hparam --steps 100
  run logreg --problem logreg-hparam --steps 30
  for s in 0 1 2; do run distill-s$s --problem distill --steps 200 --seed $s; done
  for s in 0 1 2; do
    for lr in 0.02 0.05 0.2; do run hr-borep-lr$lr-s$s --problem hyper-rep --method bo-rep:lr=$lr --steps $steps_hr --seed $s; done
    for lr in 0.5 2 8; do run hr-unnorm-lr$lr-s$s --problem hyper-rep --method bo-rep:normalized=false,lr=$lr --steps $steps_hr --seed $s; done
    for lr in 0.5 2 8; do run hr-stocbio-lr$lr-s$s --problem hyper-rep --method stocbio:lr=$lr --steps $steps_hr --seed $s; done
  done
  run toy --problem toy-constrained
  for m in lv-hba implicit grid; do run svm-$m --problem svm-hparam --method $m; done
} | tee "$out/outcomes.jsonl"
python3 - "$out/outcomes.jsonl" <<'PY'
import json, sys, statistics as st, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(v): return f"{st.mean(v):.4f} ± {st.stdev(v) if len(v) > 1 else 0:.4f}"
for r in rows:
    if "error" in r: print("FAILED:", r["args"], "->", r["error"])
by = lambda p: [r for r in rows if r.get("problem") == p]
for r in by("ridge-hparam") + by("logreg-hparam"):
    m = r["metrics"]
    print(f"{r['problem']}: grid best lambda {m['grid_lambda']:.3g}: val loss {m['val_loss_grid']:.4f} -> per-pixel {m['val_loss_after']:.4f}; "
          f"test loss {m['test_loss_grid']:.4f} -> {m['test_loss_learned']:.4f}; test acc {m['test_accuracy_grid']:.4f} -> {m['test_accuracy_learned']:.4f} ({r['seconds']:.1f} s)")
d = by("distill")
if d:
    print(f"distill (3 seeds): val accuracy, 10 random real images {ms([r['metrics']['val_accuracy_real'] for r in d])}, "
          f"10 distilled {ms([r['metrics']['val_accuracy_distilled'] for r in d])}; {st.mean(r['seconds'] for r in d):.1f} s per run")
hr = collections.defaultdict(list)
for r in by("hyper-rep"):
    hr[r["method"].split(",inner_lr")[0]].append(r)
print("| hyper-rep method | final val loss (3 seeds) | min val loss | test accuracy |")
print("|---|---|---|---|")
for k, rs in hr.items():
    m = [r["metrics"] for r in rs]
    print(f"| {k} | {ms([x['val_loss_final'] for x in m])} | {ms([x['val_loss_min'] for x in m])} | {ms([x['test_accuracy'] for x in m])} |")
for r in by("toy-constrained"):
    m = r["metrics"]
    print(f"toy-constrained ({r['method']}): relative error of x {m['rel_error_x']:.4g} after {len(r['curve']) - 1} iterations (min {m['rel_error_x_min']:.4g} at {int(m['rel_error_x_min_at'])})")
print("| svm-hparam method | val loss | val acc | test acc | seconds |")
print("|---|---|---|---|---|")
for r in by("svm-hparam"):
    m = r["metrics"]
    print(f"| {r['method'][:40]} | {m['val_loss_exact_lower']:.4f} | {m['val_accuracy_exact_lower']:.4f} | {m['test_accuracy_exact_lower']:.4f} | {r['seconds']:.1f} |")
PY
