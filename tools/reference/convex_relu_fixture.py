"""Fixtures for the P28 convex two-layer ReLU training problem (crates/optlab/tests/fixtures/convex_relu/*.json).

Paper: Bai, Gautam, Sojoudi, "Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms
and Adversarial Training" (arXiv 2201.01965).  For data X (n x (d+1), a column of ones appended LAST as a bias
feature), targets y and sampled activation patterns D_i = diag(mask_i), mask_i = 1[X g_i >= 0] (g_i ~ N(0, I)),
each fixture holds the solution of

    minimize_{v_i, w_i}  1/2 || sum_i D_i X (v_i - w_i) - y ||_2^2 + beta * sum_i (||v_i||_2 + ||w_i||_2)
    subject to           (2 D_i - I) X v_i >= 0,  (2 D_i - I) X w_i >= 0      (i = 1..P)

(1/2 times the plain sum of squares, NO 1/n; this is the formulation of the first author's own CVXPY script,
github.com/Bai-YT/Convex-NN-Training, mosek_convex_training.py, nnfit_cvx with loss_type='mse').

The masks are stored explicitly (P x n of 0/1, duplicates and the all-zero mask removed, kept in order of first
appearance), so a reader needs no RNG; the kept Gaussian directions are stored too ("directions", P x (d+1)), with
masks == (X @ directions.T >= 0).T.  The problems are solved with CVXPY + Clarabel at tight tolerances (SCS with
eps 1e-9 only if Clarabel is not installed).  The script then checks that the ReLU network recovered from the
solution, u = v_i / sqrt(||v_i||), alpha = +sqrt(||v_i||) and u = w_i / sqrt(||w_i||), alpha = -sqrt(||w_i||),
has regularized training loss 1/2 ||sum_j relu(X u_j) alpha_j - y||^2 + beta/2 sum_j (||u_j||^2 + alpha_j^2)
equal to the convex objective (relative difference printed; must be < 1e-6).

Problems (numpy.random.default_rng(seed), one seed per problem):
    reg_small  n=60,  d=3,  P=20 sampled, beta=1e-2  regression, y = planted 2-layer ReLU net + noise
    reg_mid    n=150, d=5,  P=40 sampled, beta=1e-3  regression, planted net + noise
    reg_large  n=300, d=10, P=60 sampled, beta=1e-2  regression, planted net + noise
    cls_pm1    n=200, d=4,  P=30 sampled, beta=1e-2  labels +-1 (sign of a planted net), fitted by regression

Run from the repository root:

    pip install numpy scipy cvxpy        # cvxpy brings Clarabel, SCS, ECOS
    python tools/reference/convex_relu_fixture.py            # solve, check, write the four JSON files
    python tools/reference/convex_relu_fixture.py --verify   # re-check the committed files (numpy only)
    python tools/reference/convex_relu_fixture.py --only reg_small --out /tmp/x

Made with Python 3.11, numpy, cvxpy 1.9.3, clarabel 0.11.1.  Never run by CI.
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from common import fixtures_dir

FORMULATION = (
    "minimize over v_i,w_i (i=1..P): 0.5*sum_k (sum_i mask_i[k]*(X[k,:]@(v_i-w_i)) - y[k])^2 "
    "+ beta*sum_i (||v_i||_2 + ||w_i||_2)  s.t. (2*mask_i[k]-1)*(X[k,:]@v_i) >= 0 and "
    "(2*mask_i[k]-1)*(X[k,:]@w_i) >= 0 for all i,k; 1/2 sum of squares, no 1/n; X has a bias column of ones last"
)

# name, seed, n, d, P (sampled directions), beta, kind, hidden units of the planted net
PROBLEMS = [
    ("reg_small", 2801, 60, 3, 20, 1e-2, "regression", 3),
    ("reg_mid", 2802, 150, 5, 40, 1e-3, "regression", 4),
    ("reg_large", 2803, 300, 10, 60, 1e-2, "regression", 5),
    ("cls_pm1", 2804, 200, 4, 30, 1e-2, "classification", 4),
]
NOISE = 0.1


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def make_problem(seed, n, d, p, kind, hidden):
    """Returns X (n x (d+1), ones last), y, masks (P' x n, uint8), directions (P' x (d+1)), P' <= p."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    X = np.hstack([x, np.ones((n, 1))])
    # planted net with bias: f(x) = sum_j relu(x^T a_j + b_j) c_j
    a = rng.standard_normal((d, hidden))
    b = 0.5 * rng.standard_normal(hidden)
    c = rng.standard_normal(hidden)
    f = np.maximum(x @ a + b, 0.0) @ c
    if kind == "regression":
        y = f + NOISE * rng.standard_normal(n)
    else:
        y = np.where(f - np.median(f) >= 0.0, 1.0, -1.0)
    # activation patterns from Gaussian directions in the (d+1)-dim augmented space
    g = rng.standard_normal((p, d + 1))
    raw = (X @ g.T >= 0).T.astype(np.uint8)  # p x n
    seen, keep = set(), []
    for i in range(p):
        key = raw[i].tobytes()
        if raw[i].sum() == 0 or key in seen:
            continue
        seen.add(key)
        keep.append(i)
    return X, y, raw[keep], g[keep]


# ---------------------------------------------------------------------------
# Objective, recovery
# ---------------------------------------------------------------------------


def convex_objective(X, y, masks, beta, V, W):
    yhat = ((X @ (V - W).T) * masks.T).sum(axis=1)
    return 0.5 * np.sum((yhat - y) ** 2) + beta * (np.linalg.norm(V, axis=1).sum() + np.linalg.norm(W, axis=1).sum())


def constraint_violation(X, masks, V, W):
    E = 2.0 * masks.T - 1.0  # n x P
    return float(max(0.0, -(E * (X @ V.T)).min(), -(E * (X @ W.T)).min()))


def recover(V, W):
    """(U (m x (d+1)), alpha (m,)) from every row with nonzero norm."""
    us, als = [], []
    for M, sign in ((V, 1.0), (W, -1.0)):
        for row in M:
            nr = np.linalg.norm(row)
            if nr > 0.0:
                us.append(row / np.sqrt(nr))
                als.append(sign * np.sqrt(nr))
    return np.array(us).reshape(-1, V.shape[1]), np.array(als)


def network_loss(X, y, beta, U, alpha):
    pred = np.maximum(X @ U.T, 0.0) @ alpha
    return 0.5 * np.sum((pred - y) ** 2) + 0.5 * beta * (np.sum(U * U) + np.sum(alpha * alpha))


def check(name, X, y, masks, beta, V, W, objective):
    """Print and return (recomputed objective, recovered-net loss, rel diff, max violation, active neurons)."""
    obj = convex_objective(X, y, masks, beta, V, W)
    U, alpha = recover(V, W)
    loss = network_loss(X, y, beta, U, alpha)
    rel = abs(loss - objective) / abs(objective)
    viol = constraint_violation(X, masks, V, W)
    norms = np.r_[np.linalg.norm(V, axis=1), np.linalg.norm(W, axis=1)]
    active = int((norms > 1e-5 * norms.max()).sum())  # interior-point "zeros" are ~1e-13..1e-6, not exact
    ok = rel < 1e-6 and abs(obj - objective) / abs(objective) < 1e-9
    print(f"  {name}: objective {objective:.12g}  recomputed {obj:.12g}  recovered-net loss {loss:.12g}  "
          f"rel diff {rel:.2e}  max constraint violation {viol:.2e}  active neurons {active}/{2 * len(V)}  "
          f"{'OK' if ok else 'FAIL'}")
    return obj, loss, rel, viol, active, ok


# ---------------------------------------------------------------------------
# Solve
# ---------------------------------------------------------------------------


def solve(X, y, masks, beta):
    import cvxpy as cp

    n, d1 = X.shape
    p = masks.shape[0]
    M = masks.T.astype(float)  # n x P
    E = 2.0 * M - 1.0
    V = cp.Variable((p, d1))
    W = cp.Variable((p, d1))
    yhat = cp.sum(cp.multiply(M, X @ (V - W).T), axis=1)
    cost = 0.5 * cp.sum_squares(yhat - y) + beta * (cp.sum(cp.norm(V, 2, axis=1)) + cp.sum(cp.norm(W, 2, axis=1)))
    cons = [cp.multiply(E, X @ V.T) >= 0, cp.multiply(E, X @ W.T) >= 0]
    prob = cp.Problem(cp.Minimize(cost), cons)
    t0 = time.perf_counter()
    if "CLARABEL" in cp.installed_solvers():
        solver = "CLARABEL"
        # Tight tolerances; Clarabel's primal residual can stall just above 1e-10 (reg_small), in which case it
        # reports AlmostSolved, so relax tol_feas by decades until it reports Solved.  The label records the
        # tolerances of the accepted solve.
        for feas in (1e-10, 1e-9, 1e-8):
            opts = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=feas, tol_ktratio=1e-8, max_iter=500)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prob.solve(solver=solver, **opts)
            if prob.status == "optimal":
                break
    else:
        solver = "SCS"
        opts = dict(eps_abs=1e-9, eps_rel=1e-9, max_iters=1_000_000)
        prob.solve(solver=solver, **opts)
    seconds = time.perf_counter() - t0
    import importlib.metadata as md

    ver = md.version(solver.lower()) if solver == "CLARABEL" else md.version("scs")
    label = f"cvxpy {cp.__version__} + {solver} {ver} ({', '.join(f'{k}={v:g}' for k, v in opts.items())})"
    return V.value, W.value, float(prob.value), prob.status, seconds, label


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def verify(out, only):
    bad = 0
    for name, *_ in PROBLEMS:
        if only and only not in name:
            continue
        with open(os.path.join(out, f"{name}.json")) as f:
            r = json.load(f)
        X, y = np.array(r["X"]), np.array(r["y"])
        masks, V, W = np.array(r["masks"], dtype=float), np.array(r["v"]), np.array(r["w"])
        G = np.array(r["directions"])
        assert np.array_equal((X @ G.T >= 0).T.astype(float), masks), f"{name}: masks != 1[X g >= 0]"
        assert np.all(X[:, -1] == 1.0), f"{name}: last column of X is not the bias column"
        assert len({m.tobytes() for m in masks}) == len(masks) and masks.sum(axis=1).min() > 0
        bad += not check(name, X, y, masks, r["beta"], V, W, r["objective"])[-1]
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=fixtures_dir("convex_relu"))
    ap.add_argument("--only", default=None, help="only problems whose name contains this")
    ap.add_argument("--verify", action="store_true", help="re-check existing files, no solver needed")
    args = ap.parse_args()

    if args.verify:
        sys.exit(1 if verify(args.out, args.only) else 0)

    os.makedirs(args.out, exist_ok=True)
    bad = 0
    for name, seed, n, d, p, beta, kind, hidden in PROBLEMS:
        if args.only and args.only not in name:
            continue
        X, y, masks, dirs = make_problem(seed, n, d, p, kind, hidden)
        print(f"{name}: n={n} d={d}(+1 bias) P sampled={p} kept={len(masks)} beta={beta:g} ({kind})")
        V, W, objective, status, seconds, label = solve(X, y, masks, beta)
        print(f"  {label}: status {status}, {seconds:.3f}s")
        obj, loss, rel, viol, active, ok = check(name, X, y, masks, beta, V, W, objective)
        bad += (not ok) or status != "optimal"
        rec = {
            "name": name,
            "paper": "P28 Bai, Gautam, Sojoudi 2022 (arXiv 2201.01965), convex two-layer ReLU training",
            "formulation": FORMULATION,
            "bias": "X[:, -1] == 1: a column of ones appended last as the bias feature (inside u_j, not a separate term)",
            "mask_rule": "masks[i][k] = 1 if X[k,:] @ directions[i] >= 0 else 0; duplicate and all-zero masks removed, "
                         "first-appearance order",
            "kind": kind,
            "seed": seed,
            "n": n,
            "d": d,
            "P_sampled": p,
            "P": len(masks),
            "beta": beta,
            "X": X.tolist(),
            "y": y.tolist(),
            "masks": masks.astype(int).tolist(),
            "directions": dirs.tolist(),
            "objective": objective,
            "objective_recomputed": obj,
            "recovered_network_loss": loss,
            "max_constraint_violation": viol,
            "active_neurons": active,
            "v": V.tolist(),
            "w": W.tolist(),
            "solver": label,
            "status": status,
            "seconds": seconds,
        }
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as f:
            json.dump(rec, f, separators=(",", ":"))
            f.write("\n")
        print(f"  wrote {path} ({os.path.getsize(path)} bytes)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
