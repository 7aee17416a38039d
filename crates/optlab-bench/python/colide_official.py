"""Time the official CoLiDE-EV / CoLiDE-NV / DAGMA on one simulated case.

    python crates/optlab-bench/python/colide_official.py --d 20 --graph er2 --seed 0 --noise nv --variant ev
    -> {"seconds": 7.1, "shd": 3, "tpr": 0.95, ...}   (one JSON line on stdout)

The data are exactly those of the golden fixtures (same official simulator,
same seeding: tools/reference/colide_fixtures.py), and the fit uses the same
hyperparameters (CoLiDE: the official main.py's; DAGMA: DagmaLinear.fit
defaults).  "seconds" is the wall time of the official fit plus its
post-processing (to_dag(thr=0.3) for CoLiDE; DAGMA's fit thresholds itself),
the best of --repeat runs; simulation and scoring are not timed.  BLAS runs
single-threaded unless --threads says otherwise.

Needs numpy, scipy, networkx, tqdm and the vendored official code under
$OPTLAB_REF_VENDOR (default /tmp/optlab_ref_vendor): colide/model.py,
colide/utils.py (github.com/SAMiatto/colide) and dagma/linear.py
(github.com/kevinsbello/dagma or PyPI dagma==1.1.1); see the docstring of
tools/reference/colide_fixtures.py.  Exits with a message if they are missing.
"""

import argparse
import json
import os
import sys

VARIANTS = {"ev": "colide_ev", "nv": "colide_nv", "dagma": "dagma"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--graph", default="er2", help="erK: ER graph with K*d expected edges (er2, er4, ...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", choices=("ev", "nv"), default="ev")
    ap.add_argument("--variant", choices=tuple(VARIANTS), required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, help="report the fastest of this many fits")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    ap.add_argument("--vendor", default=None, help="vendor folder (default $OPTLAB_REF_VENDOR or /tmp/optlab_ref_vendor)")
    ap.add_argument("--no-hash-check", action="store_true")
    ap.add_argument("--emit-cov", action="store_true",
                    help="also print the covariance of the centred data and the true edges (for optlab-bench solvers)")
    a = ap.parse_args()
    if not (a.graph.startswith("er") and a.graph[2:].isdigit()):
        sys.exit(f"--graph must be erK (e.g. er2, er4), got {a.graph!r}")

    # Before numpy is imported anywhere.
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(a.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if a.vendor:
        os.environ["OPTLAB_REF_VENDOR"] = a.vendor

    # tools/reference of the checkout this script lives in (crates/optlab-bench/python/ -> repository root).
    root = os.path.dirname(os.path.abspath(__file__))
    while not os.path.isdir(os.path.join(root, "tools", "reference")) and os.path.dirname(root) != root:
        root = os.path.dirname(root)
    sys.path.insert(0, os.path.join(root, "tools", "reference"))
    import colide_fixtures as cf  # noqa: E402  (stdlib-only at import; numpy comes later)

    vendor = a.vendor or cf.common.vendor_dir()
    missing = [p for p in cf.REFERENCE_FILES if not os.path.isfile(os.path.join(vendor, p))]
    if missing:
        sys.exit("colide_official.py: the vendored official code is missing: "
                 + ", ".join(os.path.join(vendor, p) for p in missing)
                 + "\nPut github.com/SAMiatto/colide's model.py and utils.py in <vendor>/colide/ and "
                   "github.com/kevinsbello/dagma's src/dagma/linear.py (= PyPI dagma==1.1.1) in "
                   "<vendor>/dagma/ (vendor: --vendor, $OPTLAB_REF_VENDOR or /tmp/optlab_ref_vendor); "
                   "see tools/reference/colide_fixtures.py.")

    ref = cf.Reference(vendor, not a.no_hash_check)
    X, W_true, _ = cf.simulate(ref, a.graph, a.d, a.seed, a.noise, n=a.n)
    method = VARIANTS[a.variant]
    best = None
    for _ in range(max(1, a.repeat)):
        r = cf.run_method(ref, method, X, record=False)
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    m = cf.score(ref, W_true, best["W_post"])
    out = {"seconds": round(best["seconds"], 4), "shd": m["shd"], "tpr": m["tpr"],
           "fdr": m["fdr"], "fpr": m["fpr"], "nnz": m["nnz"], "is_dag": m["is_dag"],
           "variant": a.variant, "graph": a.graph, "d": a.d, "n": a.n, "seed": a.seed,
           "noise": a.noise, "threads": a.threads, "repeat": a.repeat}
    if a.emit_cov:
        import numpy as np
        Xc = X - X.mean(axis=0, keepdims=True)
        out["cov"] = (Xc.T @ Xc / float(X.shape[0])).tolist()
        out["b_true"] = [[int(i), int(j), float(W_true[i, j])] for i, j in zip(*np.nonzero(W_true))]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
