"""The official LV-HBA toy run (P13), for crates/optlab/tests/lvhba.rs.

    pip install numpy scipy
    mkdir -p /tmp/optlab_ref_vendor/lvhba
    # SUSTech-Optimization/LV-HBA @ 6a55cb348b5de65c9fc439ce483605b5cadd1ab0, Toy-example/LLC/LV-HBA.py
    cp LV-HBA.py /tmp/optlab_ref_vendor/lvhba/
    python3 tools/reference/lvhba_fixtures.py

Runs the official `fun(n)` with its defaults (alpha=0.008, beta=0.02, eta=0.01, lambda=1, gamma1=gamma2=10,
u=1000, c_k = 0.025 (k+1)^0.3, z0 = -1) for 1500 iterations and writes
crates/optlab/tests/fixtures/lvhba/toy.json: log(||x - x*|| / ||x*||) after every iteration and the final x, y,
theta, lambda and z. Two source patches: the unused `import torch` is dropped and `fun` also returns its final
state. The official defaults do not converge on this problem: the relative error after 1500 iterations is about
118 (its minimum along the way about 0.15).
"""

import argparse
import json
import os

import numpy as np

import common

REF_FILE = "LV-HBA.py"
REF_SHA256 = "90262da872704022acfab4291f1963cc5893d49f57f78e0acd5370017fff2530"
SOURCE_PATCHES = [
    ("import torch\n", ""),
    ("    return res1,res2,time_computation", "    return res1,res2,time_computation,(x,y,theta,_lambda,z)"),
]


def load_reference(vendor, enforce_hash):
    path = os.path.join(vendor, REF_FILE)
    common.check_reference(path, REF_SHA256, enforce_hash)
    with open(path) as f:
        src = f.read()
    src = src.split("if __name__ == '__main__':")[0]
    for old, new in SOURCE_PATCHES:
        assert src.count(old) == 1, f"patch target not found exactly once: {old!r}"
        src = src.replace(old, new)
    scope = {}
    exec(compile(src, path, "exec"), scope)
    return scope


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-hash-check", action="store_true")
    ap.add_argument("--iterations", type=int, default=1500)
    args = ap.parse_args()
    ref = load_reference(common.vendor_dir("lvhba"), not args.no_hash_check)
    res1, _, _, (x, y, theta, lam, z) = ref["fun"](args.iterations)
    out = {
        "iterations": args.iterations,
        "log_rel_error": [float(v) for v in res1],
        "x": np.asarray(x).ravel().tolist(),
        "y": np.asarray(y).ravel().tolist(),
        "theta": np.asarray(theta).ravel().tolist(),
        "lambda": float(np.asarray(lam).ravel()[0]),
        "z": float(np.asarray(z).ravel()[0]),
    }
    os.makedirs(common.fixtures_dir("lvhba"), exist_ok=True)
    with open(common.fixtures_dir("lvhba", "toy.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")
    err = np.exp(np.array(res1))
    print(f"relative error of x: final {err[-1]:.4g}, minimum {err.min():.4g} at iteration {err.argmin() + 1}")


if __name__ == "__main__":
    main()
