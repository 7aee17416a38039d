#!/usr/bin/env python3
"""LipSDP fixtures for MaxMin (GroupSort-2) networks (paper P14) and one plain ReLU network.

Paper: Pauli, Havens, Araujo, Garg, Khorrami, Allgoewer, Hu, "Novel Quadratic Constraints for Extending
LipSDP beyond Slope-Restricted Activations", ICLR 2024 (arXiv 2401.14033).
Reference code: github.com/ppauli/QCs_MaxMin, commit b9175e22940cc1cbbbe03e82388b0d92c4cb4ff7 (2024-03-13,
MATLAB + YALMIP + Mosek).  What comes from where in that repository:

  * networks_weights/<name>.mat      cell array W{1..L}, W{k} is [out x in] (same as nn.Linear.weight), float64,
                                     NO biases.  MaxMin after every layer except the last.
  * LipschitzEstimation.m (type l2)  the LipSDP-NSR SDP solved here (formulation below).
  * main.m                           "naive" = prod_k norm(W{k}) (spectral norms) for l2; runs l2 before linfty
                                     (its linfty pass keeps only output row 9 = label 8; not used here).
  * LipschitzEstimation_ResReLU*.m   the only place the repo spells out the MaxMin forward map, as a residual
                                     ReLU network on CONSECUTIVE pairs (x_{2j-1}, x_{2j}) (1-based):
                                     y = H x + G relu(W1 x), H = kron(I,[0 1;0 1]), G = kron(I,[-1 0;0 1]),
                                     W1 = kron(I,[-1 1;1 -1]), i.e. (a, b) -> (min(a,b), max(a,b)).
  * published numbers (l2): weights_l2_2fc_16 naive 23.4615 / NSR 22.5944 / exact 22.0213; weights_l2_2fc_32
    42.4631 / 38.5483; weights_l2_5fc_32 298.4145 / 224.5260; weights_linf_2fc_16 (l2 bound) 17.4765 /
    15.0366 / exact 14.7987 (optlab reference notes for P14).  The training code is not in the repository.

Conventions of the fixtures.  optlab's "maxmin" maps consecutive pairs (x_{2i}, x_{2i+1}) (0-based) to
(max, min).  The repo's pairing is already consecutive (its Lambda is blkdiag over consecutive 2x2 blocks, and
the published "exact" values are reproduced only with consecutive pairing, see --exact), but its written
forward map orders each pair (min, max).  To make the fixture compute the repo's function, the columns 2i and
2i+1 of the weight FOLLOWING each MaxMin are swapped (--repo-pair-order maxmin disables this).  Any in-pair
order gives the same Lipschitz constant and the same SDP (Lambda's 2x2 blocks are swap-invariant).
The script checks the converted network (optlab convention, numpy) against the repo's residual-ReLU form on
100 random inputs (max abs diff must be < 1e-10).

LipSDP-NSR (l2), network x -> W_L s(W_{L-1} ... s(W_1 x)), widths n_0 .. n_L, s = MaxMin:
    variables rho >= 0; for k = 1..L-1: lam1_k in R^{n_k/2} (>= 0), lam2_k in R^{n_k/2} (free)
    Lambda_k = blkdiag_{j=1..n_k/2}( lam1_kj I_2 + lam2_kj 1 1^T )        (j-th block on neurons 2j-1, 2j)
    minimize rho  s.t.  T_0 = rho I_{n_0},  T_{k-1} - W_k^T Lambda_k W_k >= 0 (PSD) for k = 1..L-1,
                        T_k = Lambda_k,    T_{L-1} - W_L^T W_L >= 0 (PSD);          bound = sqrt(rho).
    First layer (n_0 = 784 > n_1): thin QR W_1^T = Q R (Q: n_0 x n_1, Q^T Q = I, R: n_1 x n_1), W_1 = R^T Q^T,
    so rho I - W_1^T Lambda_1 W_1 = rho (I - Q Q^T) + Q (rho I - R Lambda_1 R^T) Q^T  and the LMI is equivalent
    (rho >= 0) to  rho I_{n_1} - R Lambda_1 R^T >= 0  (n_1 x n_1).  Note R Lambda R^T, not R^T Lambda R.

ReLU LipSDP-Neuron (Fazlyab et al. 2019, slope [0,1], diagonal T per neuron), for 8-16-16-4:
    [[-rho I,     W_1^T T_1,  0                        ],
     [T_1 W_1,   -2 T_1,      W_2^T T_2                ],
     [0,          T_2 W_2,   -2 T_2 + W_3^T W_3         ]] <= 0 (NSD),  T_k = diag(t_k), t_k >= 0,
    minimize rho, bound = sqrt(rho).  Weights: numpy.random.default_rng(0), W_1 (16x8), W_2 (16x16), W_3 (4x16)
    drawn in that order with rng.normal(0.0, 0.5, size=(out, in)); biases 0.

Outputs (crates/optlab/tests/fixtures/lipsdp/):
    <name>.safetensors  keys 0.weight, 0.bias, 2.weight, 2.bias, ... (float64, weight [out, in], biases zero);
                        metadata: source, commit, file
    <name>.json         {"input_shape": [784], "layers": ["linear", "maxmin", ..., "linear"]}
    reference.json      {name: {"naive_l2", "lipsdp", "published", "solver", "seconds", ...}}

Run from the repository root (needs numpy, scipy, safetensors, cvxpy, clarabel; CPU only, about 1 s):
    pip install numpy scipy safetensors cvxpy clarabel
    python3 tools/reference/lipsdp_maxmin_fixture.py --mat-dir /tmp/qcs/networks_weights
    (get the .mat files with: git clone https://github.com/ppauli/QCs_MaxMin; git checkout b9175e2)
Options: --names a,b (other .mat stems), --all (every non-residual weights_*.mat), --out DIR, --exact (also
enumerate the exact l2 constant of 2-layer nets by trying all 2^(n_1/2) pair orders, for both pairings; ~30 s
for n_1 = 32).  The QR-reduced solution is re-checked on the UNREDUCED LMIs ("lmi_min_eigs" in reference.json;
the full 784x784 LMI cannot be handed to Clarabel: its dense KKT factorisation asks for ~750 GB).
Never run by CI.
"""

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np
import scipy.io as sio
from safetensors.numpy import save_file

import cvxpy as cp
import clarabel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fixtures_dir  # noqa: E402

REPO = "github.com/ppauli/QCs_MaxMin"
COMMIT = "b9175e22940cc1cbbbe03e82388b0d92c4cb4ff7"

PUBLISHED = {
    "weights_l2_2fc_16": {"naive_l2": 23.4615, "lipsdp": 22.5944, "exact": 22.0213},
    "weights_l2_2fc_32": {"naive_l2": 42.4631, "lipsdp": 38.5483},
    "weights_l2_5fc_32": {"naive_l2": 298.4145, "lipsdp": 224.5260},
    "weights_linf_2fc_16": {"naive_l2": 17.4765, "lipsdp": 15.0366, "exact": 14.7987},
}

SOLVER_NAME = f"cvxpy {cp.__version__} + Clarabel {clarabel.__version__}"
CLARABEL_OPTS = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=500)


# ---------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------


def load_mat(path):
    """W{1..L} from a QCs_MaxMin .mat file, as a list of float64 [out, in] arrays."""
    m = sio.loadmat(path)
    ws = [np.ascontiguousarray(np.asarray(w, dtype=np.float64)) for w in m["W"].flat]
    for a, b in zip(ws, ws[1:]):
        assert b.shape[1] == a.shape[0], [w.shape for w in ws]
    for w in ws[:-1]:
        assert w.shape[0] % 2 == 0
    return ws


def repo_forward(ws, x):
    """The repo's MaxMin network, literally its residual-ReLU form (LipschitzEstimation_ResReLU*.m). x: [N, n0]."""
    h = x.T
    for w in ws[:-1]:
        z = w @ h
        n = z.shape[0] // 2
        H = np.kron(np.eye(n), [[0.0, 1.0], [0.0, 1.0]])
        G = np.kron(np.eye(n), [[-1.0, 0.0], [0.0, 1.0]])
        W1 = np.kron(np.eye(n), [[-1.0, 1.0], [1.0, -1.0]])
        h = H @ z + G @ np.maximum(W1 @ z, 0.0)
    return (ws[-1] @ h).T


def optlab_forward(spec, sd, x):
    """optlab's convention: linear = x W^T + b; maxmin: (x_{2i}, x_{2i+1}) -> (max, min); relu."""
    h = x
    for i, kind in enumerate(spec["layers"]):
        if kind == "linear":
            h = h @ sd[f"{i}.weight"].T + sd[f"{i}.bias"]
        elif kind == "maxmin":
            p = h.reshape(h.shape[0], -1, 2)
            h = np.stack([p.max(axis=2), p.min(axis=2)], axis=2).reshape(h.shape)
        elif kind == "relu":
            h = np.maximum(h, 0.0)
        else:
            raise ValueError(kind)
    return h


def to_state_dict(ws, act, swap_next=False):
    """nn.Sequential(Linear, act, Linear, act, ..., Linear) state dict + spec.  swap_next: swap column pairs
    (2i, 2i+1) of every weight that follows an activation (repo's (min, max) pairs -> optlab's (max, min))."""
    sd, layers = {}, []
    for k, w in enumerate(ws):
        w = w.copy()
        if k > 0 and swap_next:
            perm = np.arange(w.shape[1]).reshape(-1, 2)[:, ::-1].reshape(-1)
            w = w[:, perm]
        idx = len(layers)
        sd[f"{idx}.weight"] = np.ascontiguousarray(w)
        sd[f"{idx}.bias"] = np.zeros(w.shape[0])
        layers.append("linear")
        if k < len(ws) - 1:
            layers.append(act)
    return sd, {"input_shape": [int(ws[0].shape[1])], "layers": layers}


def naive_l2(ws):
    return float(np.prod([np.linalg.norm(w, 2) for w in ws]))


# ---------------------------------------------------------------------------
# SDPs
# ---------------------------------------------------------------------------


def sym(m):
    return (m + m.T) / 2


def solve(prob):
    t0 = time.perf_counter()
    prob.solve(solver=cp.CLARABEL, **CLARABEL_OPTS)
    wall = time.perf_counter() - t0
    assert prob.status == cp.OPTIMAL, prob.status
    return wall, prob.solver_stats.solve_time


def lipsdp_maxmin(ws, use_qr=True):
    """LipSDP-NSR (l2) of LipschitzEstimation.m; returns (bound, rho, lambdas, timings)."""
    rho = cp.Variable(nonneg=True)
    cons, lams, Tm, first = [], [], None, True
    for k, w in enumerate(ws[:-1]):
        n = w.shape[0] // 2
        l1 = cp.Variable(n, nonneg=True)
        l2 = cp.Variable(n)
        lams.append((l1, l2))
        # Lambda = blkdiag_j(l1_j I2 + l2_j 11^T) = diag(E l1) + E diag(l2) E^T, linear in (l1, l2)
        E = np.kron(np.eye(n), np.ones((2, 1)))             # [2n, n], E[2j+r, j] = 1
        Lam = cp.diag(E @ l1) + E @ cp.diag(l2) @ E.T        # l1_j on the diagonal, l2_j on the whole 2x2 block
        if first:
            if use_qr and w.shape[1] > w.shape[0]:
                _, R = np.linalg.qr(w.T, mode="reduced")     # w.T = Q R, w = R^T Q^T
                cons.append(sym(rho * np.eye(w.shape[0]) - R @ Lam @ R.T) >> 0)
            else:
                cons.append(sym(rho * np.eye(w.shape[1]) - w.T @ Lam @ w) >> 0)
            first = False
        else:
            cons.append(sym(Tm - w.T @ Lam @ w) >> 0)
        Tm = Lam
    wl = ws[-1]
    cons.append(sym(Tm - wl.T @ wl) >> 0)
    prob = cp.Problem(cp.Minimize(rho), cons)
    wall, solve_time = solve(prob)
    lam_vals = [(l1.value.copy(), l2.value.copy()) for l1, l2 in lams]
    return float(np.sqrt(rho.value)), float(rho.value), lam_vals, wall, solve_time


def maxmin_lmi_min_eigs(ws, rho, lam_vals):
    """Smallest eigenvalue of each LMI of the UNREDUCED problem at the solver's point (feasibility check)."""
    out, Tm = [], rho * np.eye(ws[0].shape[1])
    for w, (l1, l2) in zip(ws[:-1], lam_vals):
        Lam = np.zeros((2 * len(l1),) * 2)
        for j in range(len(l1)):
            Lam[2 * j:2 * j + 2, 2 * j:2 * j + 2] = l1[j] * np.eye(2) + l2[j]
        out.append(float(np.linalg.eigvalsh(sym(Tm - w.T @ Lam @ w))[0]))
        Tm = Lam
    out.append(float(np.linalg.eigvalsh(sym(Tm - ws[-1].T @ ws[-1]))[0]))
    return out


def lipsdp_relu_neuron(ws):
    """LipSDP-Neuron (Fazlyab et al. 2019), alpha=0, beta=1, one block-tridiagonal LMI."""
    rho = cp.Variable(nonneg=True)
    hid = [w.shape[0] for w in ws[:-1]]
    ts = [cp.Variable(h, nonneg=True) for h in hid]
    sizes = [ws[0].shape[1]] + hid
    nb = len(sizes)
    blocks = [[np.zeros((sizes[i], sizes[j])) for j in range(nb)] for i in range(nb)]
    blocks[0][0] = -rho * np.eye(sizes[0])
    for k, (w, t) in enumerate(zip(ws[:-1], ts)):
        T = cp.diag(t)
        blocks[k + 1][k] = T @ w
        blocks[k][k + 1] = w.T @ T
        blocks[k + 1][k + 1] = -2 * T
    wl = ws[-1]
    blocks[nb - 1][nb - 1] = blocks[nb - 1][nb - 1] + wl.T @ wl
    M = cp.bmat(blocks)
    prob = cp.Problem(cp.Minimize(rho), [sym(M) << 0])
    wall, solve_time = solve(prob)
    Mv = sym(np.asarray(M.value))                            # feasibility check at the solution
    return float(np.sqrt(rho.value)), float(rho.value), wall, solve_time, float(np.linalg.eigvalsh(Mv)[-1])


def exact_2layer(ws, pairs):
    """max over all 2^(h/2) in-pair orders of ||W2 P W1||_2 (exact l2 constant of a bias-free 2-layer net
    when the pair-difference rows are linearly independent, so every order is realised on an open cone)."""
    W1, W2 = ws
    G = W1 @ W1.T
    best = 0.0
    for bits in itertools.product([0, 1], repeat=len(pairs)):
        perm = np.arange(W1.shape[0])
        for (a, b), s in zip(pairs, bits):
            if s:
                perm[a], perm[b] = b, a
        M = W2 @ G[np.ix_(perm, perm)] @ W2.T       # (W2 P W1)(W2 P W1)^T, P W1 = W1[perm]
        best = max(best, float(np.linalg.eigvalsh(M)[-1]))
    return float(np.sqrt(best))


# ---------------------------------------------------------------------------


def write_net(out, name, sd, spec, meta):
    st = os.path.join(out, f"{name}.safetensors")
    save_file(sd, st, metadata=meta)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(spec, f)
        f.write("\n")
    return os.path.getsize(st)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mat-dir", required=True, help="QCs_MaxMin/networks_weights")
    ap.add_argument("--out", default=fixtures_dir("lipsdp"))
    ap.add_argument("--names", default=",".join(PUBLISHED))
    ap.add_argument("--all", action="store_true", help="every weights_*.mat (not the residual resweights_*)")
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--repo-pair-order", choices=["minmax", "maxmin"], default="minmax",
                    help="in-pair output order of the repo's MaxMin (default: its ResReLU form, (min, max))")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    if args.all:
        names = sorted(f[:-4] for f in os.listdir(args.mat_dir) if f.startswith("weights_") and f.endswith(".mat"))
    else:
        names = [n for n in args.names.split(",") if n]

    ref_path = os.path.join(args.out, "reference.json")
    ref = {}
    if os.path.exists(ref_path):
        with open(ref_path) as f:
            ref = json.load(f)

    rng = np.random.default_rng(12345)
    print(f"{'network':24s} {'arch':22s} {'naive_l2':>12s} {'lipsdp':>12s} {'published':>12s} "
          f"{'min eig':>10s} {'solve s':>8s} {'wall s':>7s} {'bytes':>9s}")
    for name in names:
        ws = load_mat(os.path.join(args.mat_dir, name + ".mat"))
        arch = "-".join(str(w.shape[1]) for w in ws) + f"-{ws[-1].shape[0]}"

        sd, spec = to_state_dict(ws, "maxmin", swap_next=(args.repo_pair_order == "minmax"))
        if args.repo_pair_order == "maxmin":
            repo_fn = lambda x: optlab_forward(spec, to_state_dict(ws, "maxmin")[0], x)  # noqa: E731
        else:
            repo_fn = lambda x: repo_forward(ws, x)  # noqa: E731
        x = rng.uniform(0.0, 1.0, size=(100, ws[0].shape[1]))
        diff = float(np.abs(optlab_forward(spec, sd, x) - repo_fn(x)).max())
        x = rng.normal(0.0, 1.0, size=(100, ws[0].shape[1]))
        diff = max(diff, float(np.abs(optlab_forward(spec, sd, x) - repo_fn(x)).max()))
        assert diff < 1e-10, (name, diff)

        size = write_net(args.out, name, sd, spec,
                         {"source": REPO, "commit": COMMIT, "file": f"networks_weights/{name}.mat",
                          "arch": arch, "maxmin": "consecutive pairs (x[2i], x[2i+1]) -> (max, min)"})

        nv = naive_l2(ws)
        L, rho, lam_vals, wall, st = lipsdp_maxmin(ws, use_qr=True)
        eigs = maxmin_lmi_min_eigs(ws, rho, lam_vals)
        entry = {
            "naive_l2": nv,
            "lipsdp": L,
            "published": PUBLISHED.get(name),
            "solver": SOLVER_NAME,
            "seconds": wall,
            "arch": arch,
            "variant": "LipSDP-NSR l2 (LipschitzEstimation.m); first LMI QR-reduced",
            "rho": rho,
            "lmi_min_eigs": eigs,
            "forward_max_abs_diff_vs_repo": diff,
            "source": f"{REPO}@{COMMIT}:networks_weights/{name}.mat",
        }
        if args.exact and len(ws) == 2 and ws[0].shape[0] <= 32:
            h = ws[0].shape[0]
            entry["exact_l2"] = exact_2layer(ws, [(2 * i, 2 * i + 1) for i in range(h // 2)])
            entry["exact_l2_if_half_split_pairing"] = exact_2layer(ws, [(i, i + h // 2) for i in range(h // 2)])
        ref[name] = entry
        pub = PUBLISHED.get(name, {}).get("lipsdp", float("nan"))
        print(f"{name:24s} {arch:22s} {nv:12.4f} {L:12.4f} {pub:12.4f} {min(eigs):10.2e} {st:8.3f} {wall:7.3f} "
              f"{size:9d}" + (f"  exact {entry['exact_l2']:.4f} (half-split pairing would give "
                               f"{entry['exact_l2_if_half_split_pairing']:.4f})" if "exact_l2" in entry else ""))

    # ReLU 8-16-16-4, LipSDP-Neuron
    name = "relu_8_16_16_4"
    g = np.random.default_rng(0)
    ws = [g.normal(0.0, 0.5, size=(o, i)) for i, o in [(8, 16), (16, 16), (16, 4)]]
    sd, spec = to_state_dict(ws, "relu")
    size = write_net(args.out, name, sd, spec, {"source": "numpy.random.default_rng(0), N(0, 0.5^2), biases 0",
                                                "arch": "8-16-16-4"})
    L, rho, wall, st, maxeig = lipsdp_relu_neuron(ws)
    nv = naive_l2(ws)
    ref[name] = {"naive_l2": nv, "lipsdp": L, "published": None, "solver": SOLVER_NAME, "seconds": wall,
                 "arch": "8-16-16-4",
                 "variant": "LipSDP-Neuron (Fazlyab et al. 2019), slope [0,1], T_k = diag(t_k) >= 0",
                 "rho": rho, "lmi_max_eig": maxeig,
                 "source": "rng = numpy.random.default_rng(0); W_k = rng.normal(0, 0.5, (out, in)) for "
                           "(16,8), (16,16), (4,16) in order; biases 0"}
    print(f"{name:24s} {'8-16-16-4':22s} {nv:12.4f} {L:12.4f} {'-':>12s} {maxeig:10.2e} {st:8.3f} {wall:7.3f} "
          f"{size:9d}")

    with open(ref_path, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print("wrote", ref_path)


if __name__ == "__main__":
    main()
