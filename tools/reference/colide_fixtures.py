"""Golden fixtures for CoLiDE (EV and NV) and its baseline DAGMA, from the official code.

What it does
------------
For every case of the grid (graph er2/er4, d in {10, 20, 50}, seeds 0..4,
n = 1000; noise ev and nv for d = 10 and 20, nv only for d = 50) it

  1. simulates a linear Gaussian SEM with the official CoLiDE simulator
     `utils.simulate_sem` (ER graph with `edges = k*d` expected edges for
     `erk`, i.e. p = 2 edges / (d^2 - d); weights U(+-[0.5, 2]); EV noise
     variance 1, NV noise variances U(0.5, 10)).  `simulate_sem` draws the edge
     signs and weights from NumPy's *global* generator, so this script calls
     `np.random.seed(seed)` right before it (the official main.py does not,
     which makes its weights irreproducible);
  2. runs the official CoLiDE-EV and CoLiDE-NV (`model.colide_ev/colide_nv`,
     with the hyperparameters of the official main.py: lambda1 0.05, T 4,
     s [1, .9, .8, .7], warm_iter 2e4, max_iter 7e4, lr 3e-4) and
     post-processes with the official `utils.to_dag(W, thr=0.3)`;
  3. runs the official DAGMA (`dagma.linear.DagmaLinear('l2').fit(X)` with its
     defaults: lambda1 0.03, T 5, s [1, .9, .8, .7, .6], warm_iter 3e4,
     max_iter 6e4, lr 3e-4, w_threshold 0.3), whose `fit` itself zeroes
     |w| < 0.3 (DAGMA has no to_dag step);
  4. scores every estimate with the official `utils.count_accuracy`
     (NOTEARS' count_accuracy: fdr, tpr, fpr, shd, nnz);

and writes one gzip JSON file, crates/optlab/tests/fixtures/colide/cases.json.gz:

    {"settings": {... every hyperparameter, versions, hashes, field docs ...},
     "cases": [{"id", "graph", "d", "n", "seed", "noise",
                "cov": d x d  C = X_c^T X_c / n (X_c = X - column means),
                "b_true": [[i, j, w], ...]  true weighted edges i -> j,
                "noise_var": [d true noise variances],
                "official": {"colide_ev" | "colide_nv" | "dagma": {
                     "shd", "tpr", "fdr", "fpr", "nnz", "is_dag", "seconds",
                     "w_est": [[i, j, w], ...] post-processed estimate,
                     "w_raw": [[i, j, w], ...] raw optimiser output, |w| >= raw_min_abs,
                     "sigma": CoLiDE's final sigma (EV: scalar, NV: d-vector),
                     "rounds": [{"mu", "s", "lr", "max_iter", "iters",
                                 "success", "converged"}, ...] one per
                               minimize() call, retries included}}}, ...]}

The covariance C is the only statistic of the data that CoLiDE and DAGMA's
least-squares score use: both `fit`s centre X in place and form
`cov = X.T @ X / n`; `minimize`, `_score` and `_func` read only `cov`; X is
used otherwise only for CoLiDE's initial sigma, which is
sqrt(diag(C)) (NV) or its minimum (EV) -- again a function of C.
`--verify-cov` checks this numerically: it refits one case on X' = U X_c, a
different data matrix with the same C (U a Householder reflection that fixes
the all-ones vector) and prints the largest difference of the estimates.

The "cov" stored is the exact float64 `model.cov` the official CoLiDE-EV
formed (asserted bitwise equal to this script's own X_c^T X_c / n), printed
with repr() so it round-trips exactly.  "seconds" is the wall time of the
official fit (+ post-processing), single-threaded BLAS, with `--jobs`
worker processes sharing the machine: indicative only.

How to run
----------
From the repository root (about 10 minutes on 2 cores):

    python tools/reference/colide_fixtures.py            # all cases, writes the file
    python tools/reference/colide_fixtures.py --only er2-d10 --out /tmp/x.json.gz
    python tools/reference/colide_fixtures.py --verify-cov er2-d10-s0-nv
    python tools/reference/colide_fixtures.py --summary  # mean/std table of an existing file

What it needs
-------------
Python 3.10+, numpy, scipy, networkx, tqdm (`pip install numpy scipy networkx
tqdm`), and the official code, vendored (never committed) under
$OPTLAB_REF_VENDOR (default /tmp/optlab_ref_vendor):

    colide/model.py, colide/utils.py   github.com/SAMiatto/colide @ f3697593c4a8f6d50360fb542da2cb1dfaea3547
    dagma/linear.py                    github.com/kevinsbello/dagma @ 088616885d71b56c0573cd4902c1fcbac02e649f
                                       src/dagma/linear.py (identical to PyPI dagma==1.1.1)

e.g. `git clone https://github.com/SAMiatto/colide` and copy model.py and
utils.py into $OPTLAB_REF_VENDOR/colide/; `pip download --no-deps dagma==1.1.1`,
unzip, and copy dagma/linear.py into $OPTLAB_REF_VENDOR/dagma/.  The SHA-256
of each file is checked (`--no-hash-check` to only warn).  The modules are
imported at run time; nothing of them is copied here.
"""

import argparse
import contextlib
import gzip
import io
import json
import math
import os
import platform
import sys
import time

# Single-threaded BLAS (reproducible round-off, fair timings); must precede numpy.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm at import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT_DEFAULT = common.fixtures_dir("colide", "cases.json.gz")

COLIDE_COMMIT = "f3697593c4a8f6d50360fb542da2cb1dfaea3547"
DAGMA_COMMIT = "088616885d71b56c0573cd4902c1fcbac02e649f"
REFERENCE_FILES = {
    # vendor-relative path: sha256
    "colide/model.py": "1fb687808439d97566173cc13e70628d1e1f4f46bf48c0926a7890003186e9ac",
    "colide/utils.py": "e347e893d51571e5ccea1cd6d5f14f2b9b54d121c27d17591620d0362992c2c3",
    "dagma/linear.py": "dc4abe95b0a7fbc0b7e7ef5d02e044714282165347dc5e1a6369199cb84983a0",
}

N_SAMPLES = 1000
GRAPHS = ("er2", "er4")
DIMS = (10, 20, 50)
SEEDS = (0, 1, 2, 3, 4)
METHODS = ("colide_ev", "colide_nv", "dagma")
RAW_MIN_ABS = 1e-3

SIM = {
    "function": "colide utils.simulate_sem",
    "n": N_SAMPLES,
    "graph_type": "er",
    "edges": "k*d for graph 'erk'",
    "er_prob": "2*edges/(d^2-d) (networkx erdos_renyi_graph(d, p, seed=seed), upper triangle, random permutation)",
    "edge_type": "weighted",
    "w_range": [[-2.0, -0.5], [0.5, 2.0]],
    "noise": "normal",
    "ev_noise_var": 1.0,
    "nv_noise_var": "U(0.5, 10) per variable (default_rng(seed).uniform)",
    "seeding": "np.random.seed(seed) immediately before simulate_sem(..., seed=seed); "
               "simulate_sem draws edge signs/weights from the global np.random, "
               "the graph from networkx(seed), permutation, noise variances and noise from default_rng(seed)",
}

# Exactly the call of the official main.py (both CoLiDE variants).
COLIDE_FIT = {"lambda1": 0.05, "T": 4, "s": [1.0, 0.9, 0.8, 0.7],
              "warm_iter": 2e4, "max_iter": 7e4, "lr": 0.0003}
# Defaults of fit() that main.py does not override (written out for the record).
COLIDE_FIT_DEFAULTS = {"mu_init": 1.0, "mu_factor": 0.1, "checkpoint": 1000,
                       "beta_1": 0.99, "beta_2": 0.999}
COLIDE_MINIMIZE_DEFAULTS = {"tol": 1e-6, "adam_eps": 1e-8}
TO_DAG_THR = 0.3

# DagmaLinear.fit defaults (s is passed as a fresh copy: see dagma_s_note).
DAGMA_FIT = {"lambda1": 0.03, "w_threshold": 0.3, "T": 5, "mu_init": 1.0, "mu_factor": 0.1,
             "s": [1.0, 0.9, 0.8, 0.7, 0.6], "warm_iter": 3e4, "max_iter": 6e4, "lr": 0.0003,
             "checkpoint": 1000, "beta_1": 0.99, "beta_2": 0.999}


def case_grid(only=None):
    """(graph, d, seed, noise) for the whole grid, in file order; `only` filters on the case id."""
    out = []
    for graph in GRAPHS:
        for d in DIMS:
            for noise in (("ev", "nv") if d < 50 else ("nv",)):
                for seed in SEEDS:
                    if only and only not in case_id(graph, d, seed, noise):
                        continue
                    out.append((graph, d, seed, noise))
    return out


def case_id(graph, d, seed, noise):
    return f"{graph}-d{d}-s{seed}-{noise}"


# ---------------------------------------------------------------------------
# The official code
# ---------------------------------------------------------------------------


class Reference:
    """The vendored official modules: .utils, .model (CoLiDE), .dagma_linear."""

    def __init__(self, vendor=None, enforce_hash=True):
        vendor = vendor or common.vendor_dir()
        for rel, want in REFERENCE_FILES.items():
            path = os.path.join(vendor, rel)
            if not os.path.isfile(path):
                sys.exit(f"missing vendored reference file {path}\n"
                         f"(official CoLiDE: github.com/SAMiatto/colide @ {COLIDE_COMMIT}, model.py and "
                         f"utils.py -> {vendor}/colide/; DAGMA: github.com/kevinsbello/dagma @ {DAGMA_COMMIT} "
                         f"src/dagma/linear.py or PyPI dagma==1.1.1 -> {vendor}/dagma/linear.py; "
                         f"see tools/reference/colide_fixtures.py's docstring)")
            common.check_reference(path, want, enforce_hash)
        self.utils = common.load_file_module(os.path.join(vendor, "colide", "utils.py"), "colide_utils")
        self.model = common.load_file_module(os.path.join(vendor, "colide", "model.py"), "colide_model")
        self.dagma_linear = common.load_file_module(os.path.join(vendor, "dagma", "linear.py"), "dagma_linear")


def simulate(ref, graph, d, seed, noise, n=N_SAMPLES):
    """(X, W_true, noise_var) from the official simulator (its progress print swallowed)."""
    import numpy as np

    assert graph.startswith("er"), graph
    k = int(graph[2:])
    np.random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        X, W, var_nv = ref.utils.simulate_sem(
            n_nodes=d, n_samples=n, edges=k * d, graph_type="er", edge_type="weighted",
            var_type=noise, noise="normal", var=SIM["ev_noise_var"],
            w_range=tuple(tuple(r) for r in SIM["w_range"]), seed=seed)
    noise_var = np.full(d, SIM["ev_noise_var"]) if noise == "ev" else np.asarray(var_nv, dtype=float)
    return X, W, noise_var


class _CountingBar:
    """Stands in for fit()'s tqdm bar inside minimize(): one update() per finished iteration."""

    def __init__(self, inner):
        self.inner, self.calls, self.last = inner, 0, None

    def update(self, k=1):
        self.calls += 1
        self.last = k
        if self.inner is not None:
            self.inner.update(k)


def _recording(cls, kind):
    """Subclass of an official model class that logs every minimize() call (the algorithm is untouched)."""

    class Recording(cls):
        def minimize(self, W, *args, **kw):
            if kind == "colide":
                sigma, mu, max_iter, s = args[:4]
            else:
                mu, max_iter, s = args[:3]
            bar = _CountingBar(kw.get("pbar"))
            kw["pbar"] = bar
            out = super().minimize(W, *args, **kw)
            success = bool(out[-1])
            self.rounds.append({
                "mu": float(mu), "s": float(s), "lr": float(kw["lr"]), "max_iter": int(max_iter),
                "iters": bar.calls, "success": success,
                "converged": bool(success and (bar.last or 0) > 1),
            })
            self.last_W = out[0].copy()
            return out

    Recording.__name__ = "Recording_" + cls.__name__
    return Recording


def run_method(ref, method, X, record=True):
    """Fit one official method on a copy of X; returns a dict with W_raw, W_post, seconds, ..."""
    import numpy as np

    X = X.copy()  # every fit centres X in place
    if method in ("colide_ev", "colide_nv"):
        cls = getattr(ref.model, method)
        if record:
            cls = _recording(cls, "colide")
        m = cls(seed=0)
        m.rounds = []
        fit = dict(COLIDE_FIT, s=list(COLIDE_FIT["s"]))  # fit mutates s in place on retries
        t0 = time.perf_counter()
        W_raw, sigma = m.fit(X, **fit)
        W_post = ref.utils.to_dag(W_raw, thr=TO_DAG_THR)
        seconds = time.perf_counter() - t0
        W_raw = W_raw.copy()
        sigma = float(sigma) if method == "colide_ev" else [float(v) for v in sigma]
    elif method == "dagma":
        cls = ref.dagma_linear.DagmaLinear
        if record:
            cls = _recording(cls, "dagma")
        m = cls(loss_type="l2")
        m.rounds = []
        # Pass s explicitly as a fresh list: the default list of fit() is mutated on retries and
        # would otherwise carry larger s values into every later call in the same process.
        fit = dict(DAGMA_FIT, s=list(DAGMA_FIT["s"]))
        t0 = time.perf_counter()
        W_post = m.fit(X, **fit)
        seconds = time.perf_counter() - t0
        W_post = W_post.copy()
        W_raw = m.last_W if record else None
        sigma = None
    else:
        raise ValueError(method)
    return {"m": m, "W_raw": W_raw, "W_post": W_post, "seconds": seconds, "sigma": sigma,
            "s_final": [float(v) for v in fit["s"]], "rounds": getattr(m, "rounds", [])}


def score(ref, W_true, W_post):
    fdr, tpr, fpr, shd, nnz = ref.utils.count_accuracy(W_true != 0, W_post != 0)
    return {"shd": int(shd), "tpr": float(tpr), "fdr": float(fdr), "fpr": float(fpr), "nnz": int(nnz),
            "is_dag": bool(ref.utils.is_dag(W_post))}


def edges(W, min_abs=0.0):
    """[[i, j, w], ...] for W[i, j] != 0 (and |w| >= min_abs), row-major."""
    import numpy as np

    out = []
    for i, j in zip(*np.nonzero(W)):
        w = float(W[i, j])
        if abs(w) >= min_abs:
            out.append([int(i), int(j), w])
    return out


def run_case(args):
    graph, d, seed, noise, vendor, enforce = args
    import numpy as np

    ref = Reference(vendor, enforce)
    X, W_true, noise_var = simulate(ref, graph, d, seed, noise)
    Xc = X - X.mean(axis=0, keepdims=True)
    cov = Xc.T @ Xc / float(X.shape[0])
    official = {}
    for method in METHODS:
        r = run_method(ref, method, X)
        if method == "colide_ev":
            assert np.array_equal(r["m"].cov, cov), "cov differs from the official model.cov"
            cov = r["m"].cov
        entry = score(ref, W_true, r["W_post"])
        entry["seconds"] = r["seconds"]
        entry["w_est"] = edges(r["W_post"])
        entry["w_raw"] = edges(r["W_raw"], RAW_MIN_ABS)
        if r["sigma"] is not None:
            entry["sigma"] = r["sigma"]
        entry["s_final"] = r["s_final"]
        entry["rounds"] = r["rounds"]
        official[method] = entry
    return {
        "id": case_id(graph, d, seed, noise), "graph": graph, "d": d, "n": int(X.shape[0]),
        "seed": seed, "noise": noise,
        "cov": [[float(v) for v in row] for row in cov],
        "b_true": edges(W_true),
        "noise_var": [float(v) for v in noise_var],
        "official": official,
    }


def settings(jobs):
    import networkx
    import numpy
    import scipy

    return {
        "generator": "tools/reference/colide_fixtures.py",
        "reference": {
            "colide": {"repo": "github.com/SAMiatto/colide", "commit": COLIDE_COMMIT,
                       "sha256": {k: v for k, v in REFERENCE_FILES.items() if k.startswith("colide/")}},
            "dagma": {"repo": "github.com/kevinsbello/dagma", "commit": DAGMA_COMMIT,
                      "pypi": "dagma==1.1.1 (same linear.py)",
                      "sha256": {k: v for k, v in REFERENCE_FILES.items() if k.startswith("dagma/")}},
        },
        "versions": {"python": platform.python_version(), "numpy": numpy.__version__,
                     "scipy": scipy.__version__, "networkx": networkx.__version__},
        "grid": {"graphs": list(GRAPHS), "d": list(DIMS), "seeds": list(SEEDS), "n": N_SAMPLES,
                 "noise": {"10": ["ev", "nv"], "20": ["ev", "nv"], "50": ["nv"]}},
        "simulation": SIM,
        "colide_ev": {"call": "model.colide_ev(seed=0).fit(X, **fit)", "fit": COLIDE_FIT,
                      "fit_defaults_used": COLIDE_FIT_DEFAULTS, "minimize_defaults_used": COLIDE_MINIMIZE_DEFAULTS,
                      "postprocess": f"utils.to_dag(W, thr={TO_DAG_THR})", "init": "W=0, sigma=min_j ||X_c[:,j]||/sqrt(n)"},
        "colide_nv": {"call": "model.colide_nv(seed=0).fit(X, **fit)", "fit": COLIDE_FIT,
                      "fit_defaults_used": COLIDE_FIT_DEFAULTS, "minimize_defaults_used": COLIDE_MINIMIZE_DEFAULTS,
                      "postprocess": f"utils.to_dag(W, thr={TO_DAG_THR})", "init": "W=0, sigma_j=||X_c[:,j]||/sqrt(n)"},
        "dagma": {"call": "dagma.linear.DagmaLinear(loss_type='l2').fit(X, **fit)", "fit": DAGMA_FIT,
                  "minimize_defaults_used": {"tol": 1e-6, "adam_eps": 1e-8},
                  "postprocess": "none beyond fit's own W[|W| < w_threshold] = 0 (no to_dag)",
                  "s_note": "s passed as a fresh copy of the default list on every call (fit mutates it on retries)"},
        "metrics": "colide utils.count_accuracy(W_true != 0, W_post != 0) (= NOTEARS/DAGMA count_accuracy); "
                   "is_dag from utils.is_dag",
        "raw_min_abs": RAW_MIN_ABS,
        "timing": f"time.perf_counter around fit (+ to_dag for CoLiDE); OMP/OPENBLAS/MKL_NUM_THREADS="
                  f"{os.environ.get('OMP_NUM_THREADS')}; {jobs} worker process(es) on {os.cpu_count()} CPU(s); "
                  f"{platform.processor() or platform.machine()}",
        "iteration_overrides": None,
        "fields": {
            "cov": "d x d, C = X_c^T X_c / n, X_c = X - column means (float64, exactly the official model.cov)",
            "b_true": "[i, j, w]: true edge i -> j with weight w (W_true[i, j]; X = X W_true + noise)",
            "noise_var": "true noise variances (ev: all 1.0)",
            "w_est": "[i, j, w]: the post-processed estimate the metrics score",
            "w_raw": "[i, j, w]: raw W from the last minimize() (before to_dag / threshold), |w| >= raw_min_abs",
            "sigma": "CoLiDE's final noise std estimate(s)",
            "s_final": "the s list after fit (each failed minimize adds 0.1 to that round's s)",
            "rounds": "one entry per minimize() call incl. failed ones: mu, s, lr, max_iter, iters run, "
                      "success, converged (relative objective change <= tol at a checkpoint before max_iter)",
        },
    }


# ---------------------------------------------------------------------------
# Summary table
# ---------------------------------------------------------------------------


def summary(data):
    import numpy as np

    groups = {}
    for c in data["cases"]:
        for m, e in c["official"].items():
            groups.setdefault((c["graph"], c["d"], c["noise"], m), []).append(e)
    lines = ["| graph | d | noise | method | SHD | TPR | FDR | nnz | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for (g, d, noise, m), es in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], METHODS.index(kv[0][3]))):
        def ms(key, f="{:.2f}"):
            a = np.array([e[key] for e in es], dtype=float)
            return (f + " ± " + f).format(a.mean(), a.std())
        lines.append(f"| {g} | {d} | {noise} | {m} | {ms('shd', '{:.1f}')} | {ms('tpr')} | {ms('fdr')} | "
                     f"{ms('nnz', '{:.1f}')} | {ms('seconds', '{:.1f}')} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# --verify-cov
# ---------------------------------------------------------------------------


def verify_cov(ref, cid):
    """Refit case `cid` on X' = U X_c (same C, different data) and report the differences."""
    import numpy as np

    g, d, s, noise = cid.split("-")
    graph, d, seed = g, int(d[1:]), int(s[1:])
    X, W_true, _ = simulate(ref, graph, d, seed, noise)
    n = X.shape[0]
    Xc = X - X.mean(axis=0, keepdims=True)
    rng = np.random.default_rng(12345)
    v = rng.standard_normal(n)
    v -= v.mean()  # v orthogonal to 1, so U = I - 2 v v^T / |v|^2 fixes 1 and keeps X' centred
    v /= np.linalg.norm(v)
    X2 = Xc - 2.0 * np.outer(v, v @ Xc) + 5.0  # plus an offset the fit removes again
    C1 = Xc.T @ Xc / n
    X2c = X2 - X2.mean(axis=0, keepdims=True)
    C2 = X2c.T @ X2c / n
    print(f"{cid}: max|X'-X_c| = {np.abs(X2c - Xc).max():.3g}, max|C'-C| = {np.abs(C2 - C1).max():.3g}")
    for method in METHODS:
        a = run_method(ref, method, X, record=False)
        b = run_method(ref, method, X2, record=False)
        same = np.array_equal(a["W_post"] != 0, b["W_post"] != 0)
        print(f"  {method:10s} max|dW_post| = {np.abs(a['W_post'] - b['W_post']).max():.3g}  "
              f"same support: {same}  shd {score(ref, W_true, a['W_post'])['shd']} / "
              f"{score(ref, W_true, b['W_post'])['shd']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT_DEFAULT)
    ap.add_argument("--only", help="only the cases whose id (e.g. er2-d10-s0-ev) contains this")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--vendor", default=None, help="vendor folder (default $OPTLAB_REF_VENDOR or /tmp/optlab_ref_vendor)")
    ap.add_argument("--no-hash-check", action="store_true")
    ap.add_argument("--verify-cov", metavar="CASE_ID")
    ap.add_argument("--summary", action="store_true", help="print the mean ± std table of --out and exit")
    a = ap.parse_args()
    enforce = not a.no_hash_check

    if a.summary:
        with gzip.open(a.out, "rt") as f:
            print(summary(json.load(f)))
        return
    if a.verify_cov:
        verify_cov(Reference(a.vendor, enforce), a.verify_cov)
        return

    Reference(a.vendor, enforce)  # fail early if the vendored files are missing
    grid = case_grid(a.only)
    todo = [(g, d, s, nz, a.vendor, enforce) for g, d, s, nz in grid]
    t0 = time.time()
    cases = []
    if a.jobs > 1:
        import multiprocessing as mp

        # Largest cases first so the workers finish together; the file keeps grid order.
        order = sorted(range(len(todo)), key=lambda i: -todo[i][1] * (2 if todo[i][0] == "er4" else 1))
        with mp.get_context("fork").Pool(a.jobs) as pool:
            res = {}
            for k, c in enumerate(pool.imap_unordered(_indexed, [(i, todo[i]) for i in order])):
                res[c[0]] = c[1]
                _progress(k + 1, len(todo), c[1], t0)
            cases = [res[i] for i in range(len(todo))]
    else:
        for k, t in enumerate(todo):
            c = run_case(t)
            cases.append(c)
            _progress(k + 1, len(todo), c, t0)

    data = {"settings": settings(a.jobs), "cases": cases}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    raw = json.dumps(data, separators=(",", ":")).encode()
    with open(a.out, "wb") as f:
        # mtime=0 and no file name: identical reruns give identical bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(raw)
    print(f"wrote {a.out}: {len(cases)} cases, {os.path.getsize(a.out)} bytes "
          f"({len(raw)} uncompressed), {time.time() - t0:.0f}s")
    print(summary(data))


def _indexed(it):
    i, t = it
    return i, run_case(t)


def _progress(k, total, c, t0):
    o = c["official"]
    msg = "  ".join(f"{m} shd {o[m]['shd']:3d} tpr {o[m]['tpr']:.2f} {o[m]['seconds']:5.1f}s" for m in METHODS)
    print(f"[{k}/{total} {time.time() - t0:6.0f}s] {c['id']:16s} {msg}", flush=True)


if __name__ == "__main__":
    main()
