#!/usr/bin/env python3
"""Issue 19's P34 experiment: SSO (target-based surrogates) with m inner steps per expensive gradient, against
SGD, on real embedded data: logistic regression (a linear model) and an MLP 64-32-2 on the digits as a binary task
(0-4 against 5-9), and linear regression (MSE) on the RAND HIE data; full batch (the paper's deterministic
majorization-minimization setting) and minibatches of 125.

For each setup, m in {1, 5, 10, 100} and eta in ETAS (the official code sweeps its step 1/eta over 10^-3..10^3),
and SGD over LRS, 3 seeds; the best eta (lr) per m is the one with the lowest median final training loss. Reported:
the training loss after K outer steps (expensive gradients) for K = 10, 30, 100 (full batch: the loss of the
batch at theta_t, which is the training loss; minibatch: the mean batch loss of the last epoch), the gradient norm
at the end, and the outer steps each m needs to reach the loss SGD ends with (to a relative 1e-4). Finished runs
are reused when the script is run again with the same OUT_DIR. With matplotlib, OUT/<setup>.png shows the median
training loss and gradient norm of the best configuration of each method against the outer steps. Output: OUT/results.json, OUT/table.md.

    python3 scripts/experiments/p34_sso.py [OUT_DIR] [--quick]
"""
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release", "optlab")
OUT = next((a for a in sys.argv[1:] if not a.startswith("--")), os.path.join(ROOT, "runs", "p34_sso"))
QUICK = "--quick" in sys.argv
SEEDS = [0] if QUICK else [0, 1, 2]
MS = [1, 5, 10, 100]
ETAS = [0.1, 1.0, 10.0]
LRS = [0.1, 1.0, 10.0]
SETUPS = [
    # name, data, model, batch (0 = full), outer steps
    ("logreg-digits-full", "digits-binary", "mlp:hidden=", 0, 100),
    ("logreg-digits-b125", "digits-binary", "mlp:hidden=", 125, 115),
    ("mlp-digits-full", "digits-binary", "mlp:hidden=32,act=relu", 0, 100),
    ("linreg-randhie-full", "randhie", "mlp:hidden=", 0, 100),
    ("mlp-randhie-full", "randhie", "mlp:hidden=32,act=relu", 0, 100),
]
TRAIN_N = {"digits-binary": 1438, "randhie": 16152}


def run(setup, method, param, seed):
    name, data, model, batch, steps = setup
    out = os.path.join(OUT, name, f"{method}-{param}-s{seed}")
    metrics = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(os.path.join(out, "summary.json")):
        b = batch or TRAIN_N[data]
        cmd = [BIN, "train", "--data", data, "--model", model, "--batch-size", str(b), "--steps", str(steps),
               "--seed", str(seed), "--out", out, "--quiet"]
        if method == "sgd":
            cmd += ["--optimizer", f"sgd:lr={param}"]
        else:
            cmd += ["--optimizer", "sgd:lr=0.1", "--sso", f"inner={method},eta={param}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return None
    rows = [json.loads(l) for l in open(metrics)]
    return [r for r in rows if r["kind"] == "train"]


def curve(rows, batch, n):
    """Training loss after each outer step (full batch: the logged loss at theta_t of the next step, so the loss
    after k steps is the k+1-th entry; minibatch: the mean over the last epoch's batches)."""
    losses = [r["loss"] for r in rows]
    if batch == 0:
        return losses
    per_epoch = -(-n // batch)
    return [statistics.mean(losses[max(0, k - per_epoch + 1):k + 1]) for k in range(len(losses))]


def plot(name, best):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, (p, runs, _) in best.items():
        n = min(len(r[0]) for r in runs)
        axes[0].plot(range(1, n + 1), [statistics.median(r[0][k] for r in runs) for k in range(n)],
                     label=f"{label} ({p})")
    axes[0].set(xlabel="outer steps (expensive gradients)", ylabel="training loss", yscale="log", title=name)
    axes[0].legend(fontsize=8)
    setup = next(s for s in SETUPS if s[0] == name)
    for label, (p, _, _) in best.items():
        method, param = ("sgd", p) if label == "SGD" else (int(label.split("=")[1]), p)
        curves = []
        for seed in SEEDS:
            path = os.path.join(OUT, name, f"{method}-{param}-s{seed}", "metrics.jsonl")
            rows = [json.loads(l) for l in open(path)]
            curves.append([r["grad_norm"] for r in rows if r["kind"] == "train"])
        n = min(len(c) for c in curves)
        axes[1].plot(range(1, n + 1), [statistics.median(c[k] for c in curves) for k in range(n)], label=label)
    axes[1].set(xlabel="outer steps (expensive gradients)", ylabel="gradient norm of the batch loss", yscale="log")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, f"{name}.png"), dpi=110)
    plt.close(fig)


def main():
    os.makedirs(OUT, exist_ok=True)
    jobs = []
    for setup in SETUPS:
        for m in MS:
            for eta in ETAS:
                jobs += [(setup, m, eta, s) for s in SEEDS]
        for lr in LRS:
            jobs += [(setup, "sgd", lr, s) for s in SEEDS]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda j: run(*j), jobs))
    table = {}
    for (setup, method, param, seed), rows in zip(jobs, results):
        if rows is None:
            continue
        c = curve(rows, setup[3], TRAIN_N[setup[1]])
        table.setdefault((setup[0], method, param), []).append((c, rows[-1]["grad_norm"]))
    report = []
    lines = ["| setup | method | best eta / lr | loss @10 | loss @30 | loss @end | grad norm @end | outer steps to SGD's final loss |",
             "|---|---|---|---|---|---|---|---|"]
    for setup in SETUPS:
        name, steps = setup[0], setup[4]
        best = {}
        for method in ["sgd"] + MS:
            params = LRS if method == "sgd" else ETAS
            cands = [(p, table[(name, method, p)]) for p in params if (name, method, p) in table]
            cands = [(p, runs) for p, runs in cands if all(r[0][-1] == r[0][-1] for r in runs)]
            if not cands:
                continue
            p, runs = min(cands, key=lambda pr: statistics.median(r[0][-1] for r in pr[1]))
            med = lambda k, runs=runs: statistics.median(r[0][min(k, len(r[0]) - 1)] for r in runs)
            best[method] = (p, runs, med)
        target = best["sgd"][2](steps - 1) if "sgd" in best else None
        for method, (p, runs, med) in best.items():
            curve_med = [statistics.median(r[0][k] for r in runs) for k in range(min(len(r[0]) for r in runs))]
            reach = next((k + 1 for k, v in enumerate(curve_med) if target is not None and v <= target * (1 + 1e-4)), None)
            gn = statistics.median(r[1] for r in runs)
            row = {"setup": name, "method": "SGD" if method == "sgd" else f"SSO m={method}", "param": p,
                   "loss10": med(9), "loss30": med(29), "loss_end": med(steps - 1), "grad_norm_end": gn,
                   "steps_to_sgd_final": reach}
            report.append(row)
            lines.append(f"| {name} | {row['method']} | {p} | {row['loss10']:.4f} | {row['loss30']:.4f} | "
                         f"{row['loss_end']:.4f} | {gn:.4f} | {reach if reach else '-'} |")
        plot(name, {("SGD" if m == "sgd" else f"SSO m={m}"): b for m, b in best.items()})
    json.dump(report, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    open(os.path.join(OUT, "table.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
