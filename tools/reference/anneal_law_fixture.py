"""Fixture for the P38 annealing scaling law (crates/optlab/tests/fixtures/anneal_law/reference_fit.json).

Reimplements the fitting procedure of the paper's official script (the repository "Scaling Law with Learning Rate
Annealing", fit.py: S1 = cumsum(lr), annealing momentum with decay 0.999, Huber(1e-3) on log residuals, scipy
L-BFGS-B with all parameters >= 0 from the 2x3x3x3 grid) on the loss values that script ships (constant and cosine,
max lr 2e-4, 20000 steps, 500 warmup steps counted as max lr), and stores the points, their S1/S2 and the best fit.

    pip install numpy scipy
    python tools/reference/anneal_law_fixture.py
"""

import itertools
import json
import math
import os

import numpy as np
from scipy.optimize import minimize

from common import fixtures_dir

MAX_LR, TOTAL, WARMUP, DECAY, DELTA = 2e-4, 20000, 500, 0.999, 1e-3

# The loss values shipped with the official script (steps 1000, 2000, ..., 20000).
LOSSES = {
    "cosine": [3.6696358, 3.3254106, 3.1908393, 3.1158533, 3.0604768, 3.020384, 2.9880967, 2.9612265, 2.9395165,
               2.9195616, 2.9030452, 2.8881907, 2.8767889, 2.8654318, 2.8565135, 2.8489892, 2.843639, 2.8398669,
               2.8380618, 2.8376071],
    "constant": [3.6714418, 3.325626, 3.1884103, 3.111947, 3.058354, 3.0211415, 2.9874816, 2.96082, 2.9406552,
                 2.9241402, 2.9054413, 2.8942103, 2.8807929, 2.8702695, 2.862175, 2.8530996, 2.8448784, 2.8383856,
                 2.8326995, 2.8294308],
}
STEPS = list(range(1000, 20001, 1000))


def lr_at(step, method):
    if method == "constant" or step <= WARMUP:
        return MAX_LR
    ratio = (step - WARMUP) / (TOTAL - WARMUP)
    return MAX_LR * 0.5 * (math.cos(math.pi * ratio) + 1.0)


def areas(method):
    lrs = np.array([lr_at(s, method) for s in range(TOTAL + 1)], dtype=np.float64)
    m = np.zeros_like(lrs)
    for i in range(1, len(lrs)):
        m[i] = DECAY * m[i - 1] + (lrs[i - 1] - lrs[i])
    return np.cumsum(lrs), np.cumsum(m)


def main():
    pts = []
    for method, losses in LOSSES.items():
        s1, s2 = areas(method)
        pts += [(method, s, l, s1[s], s2[s]) for s, l in zip(STEPS, losses)]
    S1 = np.array([p[3] for p in pts])
    S2 = np.array([p[4] for p in pts])
    Y = np.array([p[2] for p in pts])

    def objective(x):
        l0, a, c, alpha = x
        pred = l0 + a * S1 ** (-alpha) - c * S2
        r = np.log(Y) - np.log(pred)
        h = np.where(np.abs(r) < DELTA, 0.5 * r * r, DELTA * np.abs(r) - 0.5 * DELTA**2)
        return h.sum()

    best = None
    grid = itertools.product(np.linspace(0.1, 2.1, 2), np.linspace(1, 22, 3), np.linspace(1, 22, 3),
                             np.linspace(0, 0.8, 3))
    with np.errstate(all="ignore"):
        for x0 in grid:
            res = minimize(objective, x0, method="L-BFGS-B", bounds=[(0, np.inf)] * 4,
                           options={"maxiter": 100000, "ftol": 1e-9, "gtol": 1e-6, "eps": 1e-8})
            if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
                best = res
    l0, a, c, alpha = best.x
    out = {
        "source": "reimplementation of the P38 official fit.py procedure; its shipped loss values",
        "max_lr": MAX_LR, "total": TOTAL, "warmup": WARMUP, "lambda": DECAY, "huber_delta": DELTA,
        "points": [{"schedule": p[0], "step": p[1], "loss": p[2], "s1": p[3], "s2": p[4]} for p in pts],
        "fit": {"l0": l0, "a": a, "alpha": alpha, "c": c, "objective": best.fun},
    }
    os.makedirs(fixtures_dir("anneal_law"), exist_ok=True)
    path = fixtures_dir("anneal_law", "reference_fit.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"L0={l0:.6g} A={a:.6g} alpha={alpha:.6g} C={c:.6g} objective={best.fun:.6g} -> {path}")


if __name__ == "__main__":
    main()
