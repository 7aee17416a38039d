# The cvxpy + Clarabel side of a LipSDP benchmark (paper P14): an l2 Lipschitz upper bound L = sqrt(rho) of a
# feed-forward net x -> W_L s(... s(W_1 x)), with the same formulations our Rust implementation solves
# (minimise rho; biases are irrelevant and ignored).
#   Model: a PyTorch nn.Sequential state dict in safetensors (keys 0.weight, 0.bias, 2.weight, ...; Linear layers
#   only, weight [out, in], ordered by the integer prefix). Optional --spec JSON
#   {"input_shape": [n], "layers": ["linear", "relu"|"maxmin", "linear", ...]}; without a spec the activations
#   between Linear layers are ReLU. "maxmin" pairs consecutive features (x_{2i}, x_{2i+1}) -> (max, min).
#   Reduction: when h1 < n, thin QR of W1^T = Q R (numpy.linalg.qr, mode "reduced") and W1 <- W1 Q (h1 x h1);
#   the bound is unchanged (W1 x = W1 Q Q^T x, ||Q^T x|| <= ||x||, Q^T onto).
#   ReLU (LipSDP-Neuron, slope-restricted [0,1]): variables rho >= 0, t_k >= 0 per hidden neuron, T_k = diag(t_k).
#     One LMI G >> 0 over the blocks (input of size n' = W1.shape[1] after reduction, hidden layers 1..L-1):
#     G[0,0] = rho I; G[k,k] = 2 T_k (minus W_L^T W_L on the last hidden block); G[k-1,k] = -W_k^T T_k, G[k,k-1]
#     its transpose (W_k maps block k-1 to block k, W_1 the reduced first weight); all other blocks 0.
#   MaxMin (layer-chained): variables rho >= 0 and per hidden layer k and pair j: lam1_{k,j} >= 0, lam2_{k,j} free;
#     Lambda_k = blkdiag_j(lam1_{k,j} I_2 + lam2_{k,j} 1 1^T). LMIs: rho I - W1^T Lambda_1 W1 >> 0;
#     Lambda_{k-1} - W_k^T Lambda_k W_k >> 0 for k = 2..L-1; Lambda_{L-1} - W_L^T W_L >> 0.
#   Solver: cvxpy, solver=cp.CLARABEL with tol_gap_abs = tol_gap_rel = tol_feas = --tol (default 1e-10; cvxpy
#   passes these straight to clarabel.DefaultSettings) and max_threads = --threads; all other Clarabel settings
#   default. The problem is built anew for every repeat; seconds_total is the wall time of problem.solve() (cvxpy
#   canonicalisation + Clarabel), seconds_solver is problem.solver_stats.solve_time (Clarabel's own time), each
#   the minimum over --repeat repeats; seconds_build the time to build the cvxpy problem.
# Prints one JSON line on stdout:
#   {"library", "versions", "activation", "bound", "rho", "status", "seconds_total", "seconds_solver", "reduced",
#    "lmi_sizes", "naive", ...}
# Exit code 3 with {"error": "cvxpy not installed"} when `import cvxpy` or `import clarabel` fails.
import argparse, json, os, platform, sys, time

p = argparse.ArgumentParser(description="LipSDP (l2) with cvxpy + Clarabel (prints one JSON line)")
p.add_argument("--model", required=True, help="safetensors state dict of an nn.Sequential of Linear layers")
p.add_argument("--spec", help='JSON {"input_shape": [n], "layers": ["linear", "relu"|"maxmin", ...]}')
p.add_argument("--threads", type=int, default=2, help="Clarabel max_threads (and BLAS/rayon thread env vars)")
p.add_argument("--repeat", type=int, default=1)
p.add_argument("--tol", type=float, default=1e-10, help="Clarabel tol_gap_abs = tol_gap_rel = tol_feas")
p.add_argument("--verbose", action="store_true")
a = p.parse_args()

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ.setdefault(var, str(a.threads))

import numpy as np

try:
    import cvxpy as cp
    import clarabel
except ImportError:
    print(json.dumps({"error": "cvxpy not installed"}))
    sys.exit(3)


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(2)


def pkg_version(name, mod=None):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return getattr(mod, "__version__", "unknown")


# ---- model ---------------------------------------------------------------------------------------------------
try:
    from safetensors.numpy import load_file
except ImportError:
    fail("safetensors not installed")
state = load_file(a.model)
wkeys = sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[0]))
Ws = [np.asarray(state[k], dtype=np.float64) for k in wkeys]
if len(Ws) < 2:
    fail("need at least two Linear layers")
for i in range(1, len(Ws)):
    if Ws[i].shape[1] != Ws[i - 1].shape[0]:
        fail(f"shape mismatch between {wkeys[i - 1]} {Ws[i - 1].shape} and {wkeys[i]} {Ws[i].shape}")

activation = "relu"
if a.spec:
    with open(a.spec) as f:
        spec = json.load(f)
    layers = [str(l).lower() for l in spec["layers"]]
    acts = [l for l in layers if l != "linear"]
    if any(l not in ("relu", "maxmin") for l in acts):
        fail(f"unsupported layer kinds in spec: {sorted(set(acts) - {'relu', 'maxmin'})}")
    if len(set(acts)) > 1:
        fail("mixed activations are not supported")
    if layers.count("linear") != len(Ws):
        fail(f"spec has {layers.count('linear')} linear layers, model has {len(Ws)}")
    if acts:
        activation = acts[0]
    if "input_shape" in spec and int(np.prod(spec["input_shape"])) != Ws[0].shape[1]:
        fail(f"spec input_shape {spec['input_shape']} does not match first weight {Ws[0].shape}")

naive = float(np.prod([np.linalg.norm(W, 2) for W in Ws]))

# ---- QR reduction of the first weight -----------------------------------------------------------------------
W = list(Ws)
h1, n = W[0].shape
reduced = h1 < n
if reduced:
    Q, _ = np.linalg.qr(W[0].T, mode="reduced")  # W1^T = Q R, Q (n x h1)
    W[0] = W[0] @ Q  # (h1 x h1)
n0 = W[0].shape[1]
hidden = [Wk.shape[0] for Wk in W[:-1]]  # sizes of hidden blocks 1..L-1
Lw = len(W)
if activation == "maxmin" and any(h % 2 for h in hidden):
    fail(f"maxmin needs even hidden widths, got {hidden}")


# ---- problem construction -----------------------------------------------------------------------------------
def build_relu():
    rho = cp.Variable(nonneg=True, name="rho")
    ts = [cp.Variable(h, nonneg=True, name=f"t{k + 1}") for k, h in enumerate(hidden)]
    sizes = [n0] + hidden
    nb = len(sizes)
    blocks = [[None] * nb for _ in range(nb)]
    for i in range(nb):
        for j in range(nb):
            blocks[i][j] = np.zeros((sizes[i], sizes[j]))
    blocks[0][0] = rho * np.eye(n0)
    WL = W[-1]
    for k in range(1, nb):
        T = cp.diag(ts[k - 1])
        d = 2 * T
        if k == nb - 1:
            d = d - WL.T @ WL
        blocks[k][k] = d
        off = -(W[k - 1].T @ T)  # W_k (block k-1 -> block k) is W[k-1]
        blocks[k - 1][k] = off
        blocks[k][k - 1] = off.T
    G = cp.bmat(blocks)
    lmis = [G]
    return rho, lmis, [G.shape[0]]


def pair_maps(h):
    """Sparse A1, A2 with vec_F(Lambda) = A1 @ lam1 + A2 @ lam2 for Lambda = blkdiag_j(lam1_j I2 + lam2_j 11^T)."""
    import scipy.sparse as sp

    m = h // 2
    r1, c1, r2, c2 = [], [], [], []
    for j in range(m):
        i0, i1 = 2 * j, 2 * j + 1
        for (r, c) in ((i0, i0), (i1, i1)):
            r1.append(r + c * h); c1.append(j)
        for (r, c) in ((i0, i0), (i1, i1), (i0, i1), (i1, i0)):
            r2.append(r + c * h); c2.append(j)
    A1 = sp.csc_matrix((np.ones(len(r1)), (r1, c1)), shape=(h * h, m))
    A2 = sp.csc_matrix((np.ones(len(r2)), (r2, c2)), shape=(h * h, m))
    return A1, A2


def build_maxmin():
    rho = cp.Variable(nonneg=True, name="rho")
    lams = []
    for k, h in enumerate(hidden):
        l1 = cp.Variable(h // 2, nonneg=True, name=f"lam1_{k + 1}")
        l2 = cp.Variable(h // 2, name=f"lam2_{k + 1}")
        A1, A2 = pair_maps(h)
        lams.append(cp.reshape(A1 @ l1 + A2 @ l2, (h, h), order="F"))
    lmis = [rho * np.eye(n0) - W[0].T @ lams[0] @ W[0]]
    for k in range(1, Lw - 1):
        lmis.append(lams[k - 1] - W[k].T @ lams[k] @ W[k])
    lmis.append(lams[-1] - W[-1].T @ W[-1])
    return rho, lmis, [M.shape[0] for M in lmis]


opts = dict(tol_gap_abs=a.tol, tol_gap_rel=a.tol, tol_feas=a.tol, max_threads=a.threads)
runs = []
for _ in range(max(1, a.repeat)):
    tb = time.perf_counter()
    rho, lmis, lmi_sizes = build_maxmin() if activation == "maxmin" else build_relu()
    # each LMI expression is symmetric by construction; symmetrise explicitly so cvxpy's PSD cone sees it exactly
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (M + M.T) >> 0 for M in lmis])
    t0 = time.perf_counter()
    try:
        prob.solve(solver=cp.CLARABEL, verbose=a.verbose, **opts)
    except cp.error.SolverError as e:
        fail(f"solver error: {e}")
    t1 = time.perf_counter()
    st = prob.solver_stats
    runs.append(dict(build=t0 - tb, total=t1 - t0, solver=st.solve_time, iters=st.num_iters,
                     status=prob.status, rho=None if rho.value is None else float(rho.value),
                     eigs=[None if M.value is None else float(np.linalg.eigvalsh(0.5 * (M.value + M.value.T))[0])
                           for M in lmis]))

last = runs[-1]
rho_v = last["rho"]
print(json.dumps({
    "library": "cvxpy+Clarabel",
    "versions": {"cvxpy": pkg_version("cvxpy", cp), "clarabel": pkg_version("clarabel", clarabel),
                 "numpy": np.__version__, "python": platform.python_version()},
    "model": os.path.basename(a.model),
    "activation": activation,
    "arch": "-".join(str(x) for x in [Ws[0].shape[1]] + [Wk.shape[0] for Wk in Ws]),
    "bound": None if rho_v is None else float(np.sqrt(max(rho_v, 0.0))),
    "rho": rho_v,
    "status": last["status"],
    "iterations": last["iters"],
    "seconds_total": min(r["total"] for r in runs),
    "seconds_solver": min(r["solver"] for r in runs if r["solver"] is not None) if any(
        r["solver"] is not None for r in runs) else None,
    "seconds_build": min(r["build"] for r in runs),
    "repeat": len(runs),
    "threads": a.threads,
    "solver_settings": {"tol_gap_abs": a.tol, "tol_gap_rel": a.tol, "tol_feas": a.tol, "max_threads": a.threads},
    "reduced": reduced,
    "lmi_sizes": lmi_sizes,
    "lmi_min_eigs": last["eigs"],
    "naive": naive,
}))
