"""P18 (DCDM) fixtures for crates/optlab/tests/linsolve.rs, from the official code:

  * ayano721/2023_DCDM `lib/conjugate_gradient.py` (commit 8cee1c5): `ConjugateGradientSparse.dcdm`,
    `cg_normal`, `pcg_normal` and `lanczos_iteration_with_normalization_correction` (the Lanczos of
    `src/datasetcreate.py`, whose tridiagonal T is diagonalised by numpy's eigh there);
  * the training loss of `src/train.py` (`custom_loss_function_cnn_1d_fast`, TensorFlow) transcribed to numpy:
    mean over the batch of ||b - A q (q.b)/(q.A q)||^2.

The file imports TensorFlow at the top but the functions used here are numpy/scipy only, so a stub module stands
in for it. Get the file with

    git -C <2023_DCDM checkout> show 8cee1c5:lib/conjugate_gradient.py > $OPTLAB_REF_VENDOR/dcdm/conjugate_gradient.py
    pip install numpy scipy
    python3 tools/reference/dcdm_fixtures.py

The Poisson matrix is built here independently of optlab (5-point Laplacian, zero Dirichlet values outside the
grid, Neumann at solid cells, an identity row on each solid cell). The direction oracle for DCDM is a fixed
nonlinear map, q = mask * (r + 0.5 tanh(3 r)), which the Rust test implements too.

Writes crates/optlab/tests/fixtures/linsolve/dcdm.json.
"""

import argparse
import json
import os
import sys
import types

import common

CG_SHA = "3753488687c47e28f94795fc64fcd939bbb10a4b64743802b3f54a5a8252d3b8"


def poisson(n, solid):
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    for y in range(n):
        for x in range(n):
            i = y * n + x
            if solid[i]:
                rows.append(i), cols.append(i), vals.append(1.0)
                continue
            nbrs = [(x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)]
            d = 4.0
            for (a, b) in nbrs:
                if 0 <= a < n and 0 <= b < n:
                    j = b * n + a
                    if solid[j]:
                        d -= 1.0
                    else:
                        rows.append(i), cols.append(j), vals.append(-1.0)
            rows.append(i), cols.append(i), vals.append(d)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n * n, n * n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-hash-check", action="store_true")
    args = ap.parse_args()
    import numpy as np

    path = common.vendor_dir("dcdm", "conjugate_gradient.py")
    common.check_reference(path, CG_SHA, not args.no_hash_check)
    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
    cgmod = common.load_file_module(path, "dcdm_cg")

    n = 12
    solid = [False] * (n * n)
    for y in range(4, 7):
        for x in range(5, 9):
            solid[y * n + x] = True
    A = poisson(n, solid)
    mask = np.array([0.0 if s else 1.0 for s in solid])
    CG = cgmod.ConjugateGradientSparse(A)
    rng = np.random.default_rng(18)

    # Lanczos and Ritz values as datasetcreate.py computes them.
    m = 24
    start = A.dot(mask * rng.normal(size=n * n))
    W, diag, sub = CG.lanczos_iteration_with_normalization_correction(start, m)
    T = np.diag(diag) + np.diag(sub, 1) + np.diag(sub, -1)
    ritz_vals = np.linalg.eigh(T)[0]

    b = mask * rng.normal(size=n * n)

    def predict(r):
        return mask * (r + 0.5 * np.tanh(3.0 * r))

    _, res_dcdm = CG.dcdm(b, np.zeros(n * n), predict, 40, 1e-10, False, False)
    _, res_cg = CG.cg_normal(np.zeros(n * n), b, 40, 1e-12, False)
    dinv = 1.0 / A.diagonal()
    _, res_pcg = CG.pcg_normal(np.zeros(n * n), b, lambda r: dinv * r, 40, 1e-12, False)

    # The training loss on a batch of three unit right-hand sides.
    bs = [mask * rng.normal(size=n * n) for _ in range(3)]
    bs = [v / np.linalg.norm(v) for v in bs]
    loss = 0.0
    for v in bs:
        q = predict(v)
        aq = A.dot(q)
        loss += np.sum((v - aq * (q @ v) / (q @ aq)) ** 2)
    loss /= len(bs)

    coo = A.tocoo()
    out = {
        "source": "ayano721/2023_DCDM@8cee1c5 lib/conjugate_gradient.py",
        "n": n,
        "solid": [int(s) for s in solid],
        "triplets": [[int(i), int(j), float(v)] for i, j, v in zip(coo.row, coo.col, coo.data)],
        "lanczos_start": start.tolist(),
        "lanczos_steps": m,
        "ritz_values": ritz_vals.tolist(),
        "b": b.tolist(),
        "dcdm_residuals": [float(r) for r in res_dcdm],
        "cg_residuals": [float(r) for r in res_cg],
        "jacobi_pcg_residuals": [float(r) for r in res_pcg],
        "loss_batch": [v.tolist() for v in bs],
        "loss": float(loss),
    }
    os.makedirs(common.fixtures_dir("linsolve"), exist_ok=True)
    dst = common.fixtures_dir("linsolve", "dcdm.json")
    with open(dst, "w") as f:
        json.dump(out, f)
    print(f"wrote {dst}: {len(res_dcdm)} DCDM residuals, {len(res_cg)} CG, {len(res_pcg)} PCG, loss {loss:.6e}")


if __name__ == "__main__":
    main()
