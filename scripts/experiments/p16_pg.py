#!/usr/bin/env python3
"""P16: vanilla PG (REINFORCE), N-PG-IGT and N-HARPG on optlab's environments, from the CLI.

LQR (the damped double integrator, horizon 50, discount 0.99, linear Gaussian policy from the zero gain): the
exact gap J* - J(theta_t) against sampled trajectories (HARPG's Hessian trajectories counted), 5 seeds, after
picking each method's step size gamma0 from a grid on two separate tuning seeds (median final gap). CartPole-v1
(softmax MLP 32-32 tanh): mean return against environment steps, 5 seeds, step sizes tuned the same way.

Usage: scripts/experiments/p16_pg.py [--quick] [--out DIR]   (needs `cargo build --release -p optlab-cli`)
"""
import argparse, json, math, os, statistics, subprocess, sys

BIN = os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "optlab")


def run(env, algo, lr, seed, steps, batch, out):
    cmd = [BIN, "rl", "train", "--env", env, "--algo", algo, "--lr", str(lr), "--seed", str(seed),
           "--steps", str(steps), "--batch", str(batch), "--hessian-batch", str(batch), "--out", out, "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, []
    rows = [json.loads(l) for l in open(os.path.join(out, "iterations.jsonl"))]
    return json.loads(p.stdout), rows


def score(env, summary, rows):
    if summary is None:
        return math.inf
    if env == "lqr":
        return summary["final_gap"]
    return -statistics.mean(r["mean_return"] for r in rows[-max(1, len(rows) // 10):])


def curve_at(rows, key, marks, x):
    """The value of `key` at the last iteration whose sample count `x` is <= each mark."""
    out = []
    for m in marks:
        seen = [r for r in rows if r[x] <= m]
        out.append(seen[-1][key] if seen else float("nan"))
    return out


def slope(xs, ys):
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y > 0 and math.isfinite(y)]
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="/tmp/p16")
    ap.add_argument("--batch", type=int, default=10)
    a = ap.parse_args()
    seeds = [0, 1] if a.quick else [0, 1, 2, 3, 4]
    setups = {
        "lqr": dict(steps=100_000 if not a.quick else 20_000, key="gap", x=("trajectories", 10),
                    grid={"reinforce": [1e-5, 3e-5, 1e-4, 3e-4], "n-pg-igt": [0.1, 0.3, 1, 3], "harpg": [0.1, 0.3, 1, 3]}),
        "cartpole": dict(steps=400_000 if not a.quick else 40_000, key="mean_return", x=("env_steps", 2000),
                         grid={"reinforce": [1e-4, 3e-4, 1e-3, 3e-3], "n-pg-igt": [0.1, 0.3, 1, 3], "harpg": [0.1, 0.3, 1, 3]}),
    }
    report = {}
    for env, s in setups.items():
        report[env] = {}
        for algo, grid in s["grid"].items():
            tuned = []
            for lr in grid:
                scores = [score(env, *run(env, algo, lr, 100 + k, s["steps"], a.batch, f"{a.out}/tune")) for k in (0, 1)]
                tuned.append((statistics.median(scores), lr))
            best = min(tuned)[1]
            finals, curves = [], []
            for seed in seeds:
                summary, rows = run(env, algo, best, seed, s["steps"], a.batch, f"{a.out}/{env}_{algo}_{seed}")
                curves.append(rows)
                finals.append(score(env, summary, rows))
            x, unit = s["x"]
            marks = sorted({int(v) for v in [unit * 2 ** k for k in range(16)] if v <= min(r[-1][x] for r in curves)})
            med = [statistics.median(c) for c in zip(*(curve_at(r, s["key"], marks, x) for r in curves))]
            entry = {"gamma0": best, "tuning": tuned, "x": x, "marks": marks, "median_curve": med,
                     "final": finals, "seconds": [json.load(open(f"{a.out}/{env}_{algo}_{sd}/summary.json"))["seconds"] for sd in seeds]}
            if env == "lqr":
                entry["slope"] = slope(marks[len(marks) // 2:], med[len(med) // 2:])
                # Trajectories until the median gap first falls below thresholds.
                entry["to_reach"] = {str(eps): next((m for m, g in zip(marks, med) if g <= eps), None) for eps in (8, 4, 2, 1)}
            report[env][algo] = entry
            print(env, algo, json.dumps({k: v for k, v in entry.items() if k not in ("tuning",)}), flush=True)
    json.dump(report, open(f"{a.out}/report.json", "w"), indent=1)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (env, algos) in zip(axes, report.items()):
        for algo, e in algos.items():
            ax.plot(e["marks"], e["median_curve"], marker="o", label=f"{algo} (gamma0 {e['gamma0']})")
        ax.set_xscale("log")
        if env == "lqr":
            ax.set_yscale("log")
            ax.set_title("LQR: median J* - J(theta), 5 seeds")
        else:
            ax.set_title("CartPole-v1: median mean return, 5 seeds")
        ax.set_xlabel(algos[next(iter(algos))]["x"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(f"{a.out}/p16.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
