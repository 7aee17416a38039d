#!/usr/bin/env python3
"""Issue 19's P32 experiment: regret of OGD and optimistic OMD (OOMD) on SEA loss sequences over a grid of the
stochastic noise sigma and the adversarial drift amplitude Sigma, with the comparator computed exactly; then the
strongly convex case (ridge, lambda = 0.5, the 1/(lambda t) steps) and the exp-concave one (log loss on the simplex,
d = 5: OMD, OOMD, ONS and optimistic ONS; the mean returns are 1 +- Sigma/2 over the two halves of the assets).

Losses: the least-squares sequence f_t(x) = 1/2 sum_i h_i (x_i - z_ti)^2 on the unit ball (d = 10, h_i from 0 to
1, convex and 1-smooth), targets z_t = mu_t + sigma xi_t, the mean mu_t moved by +-Sigma along a fixed direction
against the learner (drift=adversarial). For each (sigma, Sigma) and learner: the median regret over SEEDS seeds at
log-spaced T up to ROUNDS, the fitted log-log slope for T >= 100, and regret / (sqrt(sigma2_1:T) + sqrt(Sigma2_1:T)),
the shape of the paper's bound. Output: OUT/results.json and OUT/table.md (and each run's regret.png).

    python3 scripts/experiments/online_sea_grid.py [OUT_DIR] [--quick]
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "optlab")
OUT = next((a for a in sys.argv[1:] if not a.startswith("--")), os.path.join(ROOT, "runs", "online_sea"))
QUICK = "--quick" in sys.argv
ROUNDS = 10_000 if QUICK else 100_000
SEEDS = 5 if QUICK else 20
GRID = [0.0, 0.1, 1.0]
DRIFT = "adversarial"


def run(sigma, big_sigma, drift, loss="lsq", learners=("ogd", "oomd"), rounds=None, extra=""):
    out = os.path.join(OUT, f"{loss}_s{sigma}_S{big_sigma}_{drift}")
    seq = f"sea:loss={loss},sigma={sigma},Sigma={big_sigma},drift={drift}{extra}"
    cmd = [BIN, "online", "run", "--sequence", seq, "--rounds", str(rounds or ROUNDS), "--seeds", str(SEEDS),
           "--out", out, "--json"]
    for l in learners:
        cmd += ["--learner", l]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = []
    cases = []
    for drift in [DRIFT, "periodic", "zero"]:
        for sigma in GRID:
            for big_sigma in GRID:
                if drift == "zero" and big_sigma > 0:
                    continue
                cases.append((sigma, big_sigma, drift, "lsq", ("ogd", "oomd"), None, ",dim=10"))
    for sigma in GRID:
        for big_sigma in [0.0, 0.1]:
            cases.append((sigma, big_sigma, DRIFT, "ridge", ("ogd:step=strong", "oomd:step=strong", "oomd"), None,
                          ",lambda=0.5,dim=10"))
    for sigma in [0.0, 0.1]:
        for big_sigma, drift in [(0.4, "zero"), (0.4, "periodic")]:
            cases.append((sigma, big_sigma, drift, "logloss", ("omd", "oomd", "ons", "ons:optimistic=true"),
                          ROUNDS // 10, ",dim=5"))
    for sigma, big_sigma, drift, loss, learners, rounds, extra in cases:
                r = run(sigma, big_sigma, drift, loss, learners, rounds, extra)
                for c in r["report"]["curves"]:
                    last = c["points"][-1]
                    mid = next(p for p in c["points"] if p["t"] >= ROUNDS // 100)
                    rows.append({
                        "loss": loss, "drift": drift, "sigma": sigma, "Sigma": big_sigma, "learner": c["learner"],
                        "regret_T": last["median"], "regret_T_over_100": mid["median"], "slope": c["slope"],
                        "ratio_to_bound": c["ratio_to_bound"], "sigma2_sum": last["sigma2_sum"],
                        "Sigma2_sum": last["Sigma2_sum"], "seconds": r["seconds"],
                    })
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"rounds": ROUNDS, "seeds": SEEDS, "rows": rows}, f, indent=1)
    lines = [f"T = {ROUNDS} ({ROUNDS // 10} for the log loss), {SEEDS} seeds; lsq and ridge d = 10 on the unit ball; median regret",
             "", "| loss | drift | sigma | Sigma | learner | regret(T/100) | regret(T) | slope | regret/(sqrt(s2)+sqrt(S2)) | sigma2_1:T | Sigma2_1:T |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['drift']} | {r['sigma']} | {r['Sigma']} | {r['learner']} | {fmt(r['regret_T_over_100'], '.3f')} | "
                     f"{fmt(r['regret_T'], '.3f')} | {fmt(r['slope'], '.2f')} | {fmt(r['ratio_to_bound'], '.3g')} | "
                     f"{fmt(r['sigma2_sum'], '.3g')} | {fmt(r['Sigma2_sum'], '.3g')} |")
    open(os.path.join(OUT, "table.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
