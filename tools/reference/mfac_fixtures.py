#!/usr/bin/env python3
"""Golden M-FAC trajectories and a Woodbury IHVP check from the official code (IST-DASLab/M-FAC).

Same format and naming as optim_fixtures.py (whose `rosenbrock` and `mlp`
problems it reuses), written to crates/optlab/tests/fixtures/mfac/:

    mfac_a_{rosenbrock,mlp}[_f32].safetensors   ngrads=8,  damp=1e-2, momentum=0,   weight_decay=0
    mfac_b_{rosenbrock,mlp}[_f32].safetensors   ngrads=16, damp=1e-1, momentum=0.9, weight_decay=1e-3
    ihvp.safetensors                            float64: G [12,40], v [40], damp 0.05,
                                                `dense` = (damp I + G^T G / m)^{-1} v,
                                                `reference` = HInvSlow(G, damp).mul(v),
                                                `dynamic` = HInvFastUpMulti (the class MFAC uses)
                                                            after update(G[i]) for i = 0..m-1, .mul(v)

The reference is one file, loaded at run time from a folder outside the
repository (default /tmp/optlab_ref_vendor/mfac, or $OPTLAB_REF_VENDOR/mfac,
or --vendor DIR); nothing of it is copied here:

    mkdir -p /tmp/optlab_ref_vendor/mfac && cd /tmp/optlab_ref_vendor/mfac
    curl -fsSLO https://raw.githubusercontent.com/IST-DASLab/M-FAC/8116367fb537b48484e2e4bde24f11f42b117f8a/optim.py

(or `git clone https://github.com/IST-DASLab/M-FAC` and
`git show 8116367:optim.py`).  Its SHA-256 is checked (--no-hash-check to skip).

The reference is written for CUDA.  To run it on CPU in float32 and float64,
three things are substituted at load time, none of which changes the math:

  * `torch.lu(A, pivot=False)` (CUDA only) -> an unpivoted Doolittle LU in
    torch (the unpivoted LU is unique, so only rounding order can differ from
    cuSOLVER's);
  * `nn.parallel.parallel_apply` (needs a CUDA device) -> a sequential
    `[f(x) for f, x in zip(fs, xs)]` (the reference only uses it to run one
    closure per "GPU"; here there is a single one, optdev=None = CPU);
  * dtype: MFAC.__init__ hard-codes the gradient buffer as
    `torch.zeros((ngrads, d), dtype=torch.float)` and the momentum buffer
    `torch.zeros(w.shape)` (default dtype, float32).  The source text is
    patched to use `w.dtype` (the parameters' dtype) for both, so the float64
    run is float64 throughout.  For float32 parameters this is a no-op.
    (Unpatched, a float64 model would get its gradients rounded to float32 in
    the buffer and a float32 momentum buffer -- a precision artefact, not part
    of the algorithm.)

`hinv_cuda` (the optional CUDA kernel) is not importable here, so the
reference takes its pure-PyTorch paths (USE_CUDA = False).

Each trajectory is also replayed without the reference (float64 NumPy, dense
inverse of damp I + (1/m) sum_i g_i g_i^T over the ring buffer); the script
exits 1 if a replay disagrees, a trajectory is not finite, or the IHVPs differ.

Usage:
    python3 tools/reference/mfac_fixtures.py               # all 9 files
    python3 tools/reference/mfac_fixtures.py --only mfac_b # cases whose name contains "mfac_b"
    python3 tools/reference/mfac_fixtures.py --out /tmp/x  # write elsewhere

Needs: torch, numpy, safetensors and the reference file.  Run by hand only;
CI never runs it.  See crates/optlab/tests/fixtures/mfac/README.md.
"""

import argparse
import math
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (paths, spec strings, reference loading, run loop helpers)
import optim_fixtures as base  # noqa: E402  (rosenbrock, run_rosenbrock, run_mlp, mlp_problem, STEPS, DTYPES)

REPO_ROOT = common.REPO_ROOT
OUT_DIR = common.fixtures_dir("mfac")
STEPS = base.STEPS
DTYPES = base.DTYPES
DEFAULT_VENDOR = common.vendor_dir("mfac")

REF_REPO = "IST-DASLab/M-FAC"
REF_COMMIT = "8116367fb537b48484e2e4bde24f11f42b117f8a"  # optim.py last changed in 835320e (2021-07-02)
REF_PATH = "optim.py"
REF_FILE = "optim.py"
REF_SHA256 = "67e48df9eefa915a7e8ab96823c331a590dfa8d775aa04935a86fa7964a0fbda"
REF_INFO = f"{REF_REPO}@{REF_COMMIT}:{REF_PATH} (class MFAC, sha256 {REF_SHA256})"

# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

SPEC_KEYS = {"mfac": ["lr", "momentum", "weight_decay", "ngrads", "damp"]}


def make_spec(name, **params):
    def fmt(k, v):
        return str(int(v)) if k == "ngrads" else common.fmt_value(v)  # ngrads is an integer: `ngrads=8`
    return common.make_spec(SPEC_KEYS, name, params, fmt=fmt)


def parse_spec(spec):
    name, params = common.parse_spec(spec, SPEC_KEYS)
    ng = params["ngrads"]
    assert ng == int(ng) and ng >= 1, f"ngrads must be a positive integer in {spec!r}"
    return name, params


def mfac(lr, ngrads, damp, momentum=0.0, weight_decay=0.0):
    return make_spec("mfac", lr=lr, momentum=momentum, weight_decay=weight_decay, ngrads=ngrads, damp=damp)


# Learning rates.  Rosenbrock, scanned over 1e-4..1: 1e-4 and 1e-3 barely move
# (f 12.5 -> 12.48 / 12.29); 1e-2 moves (f -> 10.5 / 10.3) with float32 and
# float64 staying within ~5e-4 of each other; 3e-2 already makes case A's
# float32 and float64 runs drift apart (x -1.41 vs -1.35), 0.1 makes case A
# climb (f max 24), 1.0 gives NaN (case A, f32).  mlp: 1e-2 (loss 1.136 ->
# 0.035 / 0.68).  main() refuses non-finite results.
ROSENBROCK_LR = 1e-2
MLP_LR = 1e-2

CASES = [
    ("mfac_a", {
        "rosenbrock": mfac(ROSENBROCK_LR, ngrads=8, damp=1e-2),
        "mlp": mfac(MLP_LR, ngrads=8, damp=1e-2),
    }),
    ("mfac_b", {
        "rosenbrock": mfac(ROSENBROCK_LR, ngrads=16, damp=1e-1, momentum=0.9, weight_decay=1e-3),
        "mlp": mfac(MLP_LR, ngrads=16, damp=1e-1, momentum=0.9, weight_decay=1e-3),
    }),
]

# ---------------------------------------------------------------------------
# Reference code, with the CPU substitutions described in the docstring
# ---------------------------------------------------------------------------

REF = {}

# Exact source substitutions (each must occur exactly once).
SOURCE_PATCHES = [
    ("torch.zeros((ngrads, w.numel()), dtype=torch.float)",
     "torch.zeros((ngrads, w.numel()), dtype=w.dtype)"),
    ("self.v = torch.zeros(w.shape, device=self.optdev)",
     "self.v = torch.zeros(w.shape, device=self.optdev, dtype=w.dtype)"),
]


def lu_nopivot(A, pivot=True, get_infos=False):
    """Stand-in for torch.lu(A, pivot=False): packed unpivoted LU (unit L below, U on/above the diagonal)."""
    assert pivot is False and not get_infos and A.dim() == 2
    LU = A.clone()
    n = LU.shape[0]
    for k in range(n - 1):
        LU[k + 1:, k] /= LU[k, k]
        LU[k + 1:, k + 1:] -= torch.outer(LU[k + 1:, k], LU[k, k + 1:])
    pivots = torch.arange(1, n + 1, dtype=torch.int32)
    return LU, pivots


def sequential_apply(fs, inputs, kwargs_tup=None, devices=None):
    assert kwargs_tup is None and devices is None
    return [f(x) for f, x in zip(fs, inputs)]


class _TorchShim(types.ModuleType):
    """The `torch` the reference module sees: real torch except `lu`."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    lu = staticmethod(lu_nopivot)


class _NNShim(types.ModuleType):
    """The `nn` the reference module sees: real torch.nn except `parallel.parallel_apply`."""

    def __init__(self):
        super().__init__("nn")
        self.parallel = types.SimpleNamespace(parallel_apply=sequential_apply)

    def __getattr__(self, name):
        return getattr(nn, name)


def load_reference(vendor, enforce_hash):
    path = os.path.join(vendor, REF_FILE)
    common.check_reference(path, REF_SHA256, enforce_hash)
    with open(path) as f:
        src = f.read()
    for old, new in SOURCE_PATCHES:
        assert src.count(old) == 1, f"patch target not found exactly once: {old!r}"
        src = src.replace(old, new)
    mod = types.ModuleType("ref_mfac_optim")
    mod.__file__ = path
    exec(compile(src, path, "exec"), mod.__dict__)
    assert mod.USE_CUDA is False, "hinv_cuda is importable; this script expects the pure-PyTorch path"
    mod.torch = _TorchShim()
    mod.nn = _NNShim()
    REF["mod"] = mod


def build_optimizer(spec, parameters):
    name, p = parse_spec(spec)
    assert name == "mfac"
    return REF["mod"].MFAC(parameters, lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"],
                           ngrads=int(p["ngrads"]), damp=p["damp"])


# ---------------------------------------------------------------------------
# Independent replay (float64 NumPy, dense inverse)
# ---------------------------------------------------------------------------

def np_step_factory(spec, d):
    _, p = parse_spec(spec)
    m = int(p["ngrads"])
    G = np.zeros((m, d))
    st = {"last": 0, "v": np.zeros(d)}

    def step(w, grad):
        g = grad + p["weight_decay"] * w if p["weight_decay"] > 0 else grad
        G[st["last"]] = g
        st["last"] = (st["last"] + 1) % m
        Fm = p["damp"] * np.eye(d) + G.T @ G / m
        u = np.linalg.solve(Fm, g)
        if p["momentum"] > 0:
            st["v"] = p["momentum"] * st["v"] + (1 - p["momentum"]) * u
            u = st["v"]
        return w - p["lr"] * u

    return step


def replay_rosenbrock(spec, t):
    traj = t["trajectory"].double().numpy()
    step = np_step_factory(spec, 2)
    w = t["init"].double().numpy().copy()
    err = 0.0
    for k in range(STEPS):
        w = step(w, common.rosenbrock_grad(w))
        err = max(err, np.max(np.abs(w - traj[k + 1]) / (1e-12 + np.abs(traj[k + 1]))))
    return err


def replay_mlp(spec, t, dtype):
    """Full-batch replay with torch autograd for the gradient, NumPy dense IHVP for the update (float64)."""
    x32, y, init32 = base.mlp_problem()
    names = list(init32.keys())
    shapes = [init32[n].shape for n in names]
    sizes = [int(np.prod(s)) for s in shapes]
    x = x32.double()
    w = torch.cat([init32[n].double().reshape(-1) for n in names]).numpy()
    step = np_step_factory(spec, w.size)

    def unflat(w):
        out, o = [], 0
        for s, n in zip(shapes, sizes):
            out.append(torch.tensor(w[o:o + n]).reshape(s).requires_grad_(True))
            o += n
        return out

    for _ in range(STEPS):
        W1, b1, W2, b2 = unflat(w)
        loss = F.cross_entropy(torch.tanh(x @ W1.T + b1) @ W2.T + b2, y)
        grads = torch.autograd.grad(loss, [W1, b1, W2, b2])
        w = step(w, torch.cat([g.reshape(-1) for g in grads]).numpy())
    final = torch.cat([t[f"final.{n}"].double().reshape(-1) for n in names]).numpy()
    return float(np.max(np.abs(w - final) / (1e-8 + np.abs(final))))


# ---------------------------------------------------------------------------
# IHVP fixture
# ---------------------------------------------------------------------------

IHVP_SEED, IHVP_M, IHVP_D, IHVP_DAMP = 5, 12, 40, 0.05


def make_ihvp():
    torch.manual_seed(IHVP_SEED)
    G = torch.randn(IHVP_M, IHVP_D, dtype=torch.float64)
    v = torch.randn(IHVP_D, dtype=torch.float64)
    Fm = IHVP_DAMP * torch.eye(IHVP_D, dtype=torch.float64) + G.T @ G / IHVP_M
    dense = torch.linalg.solve(Fm, v)
    mod = REF["mod"]
    reference = mod.HInvSlow(G.clone(), damp=IHVP_DAMP).mul(v)
    dyn = mod.HInvFastUpMulti(torch.zeros(IHVP_M, IHVP_D, dtype=torch.float64), None, [None], damp=IHVP_DAMP)
    for i in range(IHVP_M):
        dyn.update(G[i, :])
    dynamic = dyn.mul(v)
    tensors = {"G": G, "v": v, "dense": dense, "reference": reference, "dynamic": dynamic}
    errs = {k: ((tensors[k] - dense).abs().max() / dense.abs().max()).item() for k in ("reference", "dynamic")}
    return tensors, errs


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="generate only cases whose name contains this substring ('ihvp' for that file)")
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default: the fixtures folder)")
    ap.add_argument("--vendor", default=DEFAULT_VENDOR, help="folder holding the reference optim.py")
    ap.add_argument("--no-hash-check", action="store_true")
    args = ap.parse_args()

    common.deterministic_torch()
    os.makedirs(args.out, exist_ok=True)
    load_reference(args.vendor, not args.no_hash_check)

    failures = []
    for case, problem, spec, dname, dtype, suffix in common.iter_runs(CASES, DTYPES, args.only):
        tensors = base.PROBLEMS[problem](spec, dtype, build=build_optimizer)
        tensors, finite = common.finish_tensors(tensors, dtype)
        fname = f"{case}_{problem}{suffix}.safetensors"
        metadata = common.run_metadata(spec, problem, dname, STEPS, reference=REF_INFO)
        save_file(tensors, os.path.join(args.out, fname), metadata=metadata)
        summary, last = base.summarize(problem, tensors)
        if finite:
            err = replay_rosenbrock(spec, tensors) if problem == "rosenbrock" else replay_mlp(spec, tensors, dtype)
            # float32 files: replay error printed for information only (float64 replay)
            tol = (1e-9 if problem == "rosenbrock" else 1e-7) if dname == "f64" else math.inf
            ok = err <= tol
        else:
            err, ok = float("nan"), False
        status = "ok " if ok else "FAIL"
        print(f"{status} {fname:38s} {spec:70s} {summary}  replay rel err {err:.2e}")
        if not ok or not math.isfinite(last):
            failures.append(fname)

    if not args.only or "ihvp" in args.only:
        tensors, errs = make_ihvp()
        metadata = {"damp": common.fmt_value(IHVP_DAMP), "m": str(IHVP_M), "d": str(IHVP_D), "seed": str(IHVP_SEED),
                    "dtype": "f64", "torch_version": torch.__version__, "reference": REF_INFO}
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(args.out, "ihvp.safetensors"),
                  metadata=metadata)
        ok = all(e < 1e-10 for e in errs.values())
        print(f"{'ok ' if ok else 'FAIL'} ihvp.safetensors  max rel diff to dense: " +
              ", ".join(f"{k} {e:.2e}" for k, e in errs.items()))
        if not ok:
            failures.append("ihvp.safetensors")

    if failures:
        print(f"failed: {failures}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
