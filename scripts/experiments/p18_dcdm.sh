#!/usr/bin/env bash
# P18: DCDM on the 2-D Poisson problem. Trains the direction network on the open 32x32 grid (2000 Ritz-vector
# right-hand sides from 256 Lanczos steps, 2000 Adam steps of 10; at the reference's lr 1e-4 and at 1e-3), then
# solves 20 right-hand sides per grid by CG, IC(0)-PCG and DCDM on 32x32, 64x64 and 128x128 grids, open and with 4
# solid disks, to relative residuals 1e-4 and 1e-6 (Gaussian right-hand sides, and right-hand sides drawn as the
# training set from each test grid's own Ritz vectors). One thread per process; the two benches run side by side.
# Build first: cargo build --release -p optlab-cli. Usage: p18_dcdm.sh [OUT] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/p18}
bin=${2:-./target/release/optlab}
mkdir -p "$out"
export RAYON_NUM_THREADS=1
for lr in 1e-3 1e-4; do
    [ -f "$out/net-lr$lr/summary.json" ] ||
        "$bin" linsolve train --grid 32 --steps 2000 --optimizer "adam:lr=$lr" --out "$out/net-lr$lr" --quiet &
done
wait
for rhs in gaussian ritz; do
    [ -f "$out/bench-$rhs/summary.json" ] ||
        "$bin" linsolve bench --model "$out/net-lr1e-3" --sides 32,64,128 --obstacles 0,4 --count 20 --rhs "$rhs" \
            --max-iters 2000 --out "$out/bench-$rhs" --quiet > /dev/null &
done
wait
"$bin" linsolve bench --model "$out/net-lr1e-4" --sides 32,64,128 --obstacles 0 --count 20 --max-iters 2000 \
    --quiet --json > "$out/bench-lr1e-4.json"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
for lr in ["1e-3", "1e-4"]:
    s = json.load(open(os.path.join(out, f"net-lr{lr}", "summary.json")))
    c = s["check"]
    print(f"network lr {lr}: final loss {s['final_loss']:.4f}, {s['seconds']:.0f} s; 32x32 check to 1e-4: "
          f"DCDM {sum(c['dcdm_iterations'])/5:.1f}, CG {sum(c['cg_iterations'])/5:.1f} iterations")
def table(title, rows):
    print(f"\n{title}")
    print(f"{'grid':>5} {'obst':>4} {'tol':>6} | " + " | ".join(f"{m:^24}" for m in ["cg", "ic-pcg", "dcdm"]))
    keys = sorted({(r["side"], r["obstacles"], r["tol"]) for r in rows}, key=lambda k: (k[0], k[1], -k[2]))
    for k in keys:
        cells = []
        for m in ["cg", "ic-pcg", "dcdm"]:
            r = [r for r in rows if (r["side"], r["obstacles"], r["tol"]) == k and r["method"] == m]
            if not r:
                cells.append(f"{'':^24}")
                continue
            r = r[0]
            if r["reached"] == 0:
                cells.append(f"{'0/' + str(r['count']) + ' reached':^24}")
            else:
                cells.append(f"{r['mean_iterations']:7.1f} it {1e3*r['mean_seconds']:8.1f} ms {r['reached']:2d}/{r['count']}".rjust(24))
        print(f"{k[0]:>5} {k[1]:>4} {k[2]:>6.0e} | " + " | ".join(cells))
for rhs in ["gaussian", "ritz"]:
    table(f"right-hand sides: {rhs} (network lr 1e-3)", json.load(open(os.path.join(out, f"bench-{rhs}", "summary.json")))["rows"])
table("right-hand sides: gaussian (network lr 1e-4, the reference's)", json.load(open(os.path.join(out, "bench-lr1e-4.json")))["rows"])
PY
