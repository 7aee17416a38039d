#!/usr/bin/env python3
"""Fixtures from the AdAdaGrad reference code (timlautk/AdAdaGrad).

Two kinds of output:

1. Golden trajectories of the reference `Adagradnorm` optimizer
   (`adagradnorm.py`), in the format and naming of optim_fixtures_papers.py,
   written to crates/optlab/tests/fixtures/optim_papers/:

       adagradnorm_{rosenbrock,sinv}[_f32].safetensors
       adagradnorm_momentum_{rosenbrock,sinv}[_f32].safetensors

   Only the problems `rosenbrock` (one 1-D parameter) and `sinv` (one 2-D
   parameter), and weight_decay = 0: the reference code has two bugs that
   optlab deliberately does not reproduce -- a 1-D parameter (bias) that
   follows a 2-D one in the same step() adds that matrix's row norms to its
   accumulator (a leftover local variable; this is what an `mlp` run would
   hit), and its "weight decay" subtracts lr*wd*grad (a second gradient step,
   not a decay).  Neither problem can reach either bug.

2. crates/optlab/tests/fixtures/adadagrad/batch_tests.safetensors: the
   reference `norm_test`, `inner_product_test` and `orthogonality_test`
   (`tests.py`) on the per-sample gradients (reference
   `compute_per_sample_gradients`) of a small float64 MLP, plus the
   whole-vector statistics of the paper computed here.

The reference files are loaded at run time from a folder outside the
repository (default /tmp/optlab_ref_vendor/AdAdaGrad, or
$OPTLAB_REF_VENDOR/AdAdaGrad, or --vendor DIR); nothing of them is copied here:

    mkdir -p /tmp/optlab_ref_vendor/AdAdaGrad && cd /tmp/optlab_ref_vendor/AdAdaGrad
    curl -fsSLO https://raw.githubusercontent.com/timlautk/AdAdaGrad/cc126fba4b57c8ea1ffcd5ff5d30dc8891bf9f17/adagradnorm.py
    curl -fsSLO https://raw.githubusercontent.com/timlautk/AdAdaGrad/cc126fba4b57c8ea1ffcd5ff5d30dc8891bf9f17/tests.py

(or `git clone https://github.com/timlautk/AdAdaGrad` and
`git show cc126fb:adagradnorm.py`).  Their SHA-256 is checked
(--no-hash-check to skip).  `tests.py` imports `litgpt.utils` at module level
for a loss this script never calls; if `litgpt` is not installed, a stub
module is registered in its place (its `chunked_cross_entropy` raises).

The reference code runs unmodified.  Its momentum update uses the old
`Tensor.add_(Number, Tensor)` overload, which torch 2.15 still accepts (with a
deprecation warning, silenced here) and evaluates as add_(grad, alpha=1-mu),
so no adaptation is needed.

Usage:
    python3 tools/reference/adadagrad_fixtures.py                    # everything (9 files)
    python3 tools/reference/adadagrad_fixtures.py --only momentum    # cases whose name contains "momentum"
    python3 tools/reference/adadagrad_fixtures.py --only batch_tests # only the batch-size test file
    python3 tools/reference/adadagrad_fixtures.py --out /tmp/x       # both outputs under /tmp/x

Needs: torch, numpy, safetensors and the two reference files.  Run by hand
only; CI never runs it.  See crates/optlab/tests/fixtures/optim_papers/README.md
and crates/optlab/tests/fixtures/adadagrad/README.md.
"""

import argparse
import math
import os
import sys
import types
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (paths, spec strings, reference loading, run loop helpers, NumPy gradients)
import optim_fixtures as base  # noqa: E402  (rosenbrock, mlp_problem, STEPS, DTYPES)
import optim_fixtures_papers as papers  # noqa: E402  (run_sinv, sinv problem)

REPO_ROOT = common.REPO_ROOT
OPTIM_DIR = common.fixtures_dir("optim_papers")
BATCH_DIR = common.fixtures_dir("adadagrad")
STEPS = base.STEPS
DTYPES = base.DTYPES
DEFAULT_VENDOR = common.vendor_dir("AdAdaGrad")

REF_COMMIT = "cc126fba4b57c8ea1ffcd5ff5d30dc8891bf9f17"  # both files last changed in 135b9aa (2025-01-09)
REFERENCE_SHA256 = {
    "adagradnorm.py": "1eafa49cd59b2d59a31d53d6f5be741ffccaf93eeb08edce14c37169ec5bc4d1",
    "tests.py": "5bd1076886cdd36158cbda7e8916f2ae2a95166636e941124ef2951640412144",
}
REF_INFO = {k: f"timlautk/AdAdaGrad@{REF_COMMIT}:{k}" for k in REFERENCE_SHA256}

# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

SPEC_KEYS = {"adagradnorm": ["lr", "momentum", "lr_decay", "weight_decay", "initial_accumulator_value"]}


def make_spec(name, **params):
    return common.make_spec(SPEC_KEYS, name, params)


def parse_spec(spec):
    return common.parse_spec(spec, SPEC_KEYS)


def adagradnorm(lr, momentum, lr_decay, weight_decay=0.0, initial_accumulator_value=1e-2):
    # initial_accumulator_value: the reference's default, 1e-2
    assert weight_decay == 0.0, "the reference's weight decay is a bug (p -= lr*wd*grad); not reproduced"
    return make_spec("adagradnorm", lr=lr, momentum=momentum, lr_decay=lr_decay,
                     weight_decay=weight_decay, initial_accumulator_value=initial_accumulator_value)


def same(spec):
    return {"rosenbrock": spec, "sinv": spec}


CASES = [
    ("adagradnorm", same(adagradnorm(0.1, momentum=0.0, lr_decay=0.0))),
    ("adagradnorm_momentum", same(adagradnorm(0.1, momentum=0.9, lr_decay=1e-3))),
]

# ---------------------------------------------------------------------------
# Loading the reference code
# ---------------------------------------------------------------------------

REF = {}


def load_references(vendor, enforce_hash):
    for fname, want in REFERENCE_SHA256.items():
        common.check_reference(os.path.join(vendor, fname), want, enforce_hash)
    try:
        import litgpt.utils  # noqa: F401
    except ImportError:
        # tests.py: `from litgpt.utils import chunked_cross_entropy`, used only by
        # compute_loss_litgpt, which this script never calls.
        stub = types.ModuleType("litgpt")
        stub_utils = types.ModuleType("litgpt.utils")

        def chunked_cross_entropy(*_a, **_k):
            raise NotImplementedError("litgpt stub (adadagrad_fixtures.py)")

        stub_utils.chunked_cross_entropy = chunked_cross_entropy
        stub.utils = stub_utils
        sys.modules.setdefault("litgpt", stub)
        sys.modules.setdefault("litgpt.utils", stub_utils)
    for fname, key in (("adagradnorm.py", "opt"), ("tests.py", "tests")):
        REF[key] = common.load_file_module(os.path.join(vendor, fname), f"ref_adadagrad_{key}")


# ---------------------------------------------------------------------------
# Task 1: Adagradnorm trajectories
# ---------------------------------------------------------------------------

LAST_OPT = []  # the most recently built reference optimizer


def build_optimizer(spec, parameters):
    name, p = parse_spec(spec)
    assert name == "adagradnorm"
    opt = REF["opt"].Adagradnorm(parameters, lr=p["lr"], momentum=p["momentum"], lr_decay=p["lr_decay"],
                                 weight_decay=p["weight_decay"],
                                 initial_accumulator_value=p["initial_accumulator_value"])
    LAST_OPT[:] = [opt]
    return opt


PROBLEMS = {
    "rosenbrock": lambda spec, dtype: base.run_rosenbrock(spec, dtype, build=build_optimizer),
    "sinv": lambda spec, dtype: papers.run_sinv(spec, dtype, build=build_optimizer),
}


rosenbrock_grad = common.rosenbrock_grad
sinv_grad = common.sinv_grad


def replay_optlab_semantics(spec, problem, tensors):
    """optlab's AdaGradNorm rules, in float64 NumPy, independent of the reference code.

    2-D parameter: each output row r keeps sum_r += ||g_r||^2 (stored in every
    entry of the row); 1-D: per-coordinate sum += g^2.  sum starts at
    initial_accumulator_value; d = g, or with momentum d = buf = mu*buf + (1-mu)*g
    (buf starts at 0); x -= clr * d / (sqrt(sum) + 1e-10),
    clr = lr / (1 + (t-1)*lr_decay).  Returns (trajectory, final sum, final buf).
    """
    _, h = parse_spec(spec)
    T = {k: v.to(torch.float64).numpy() for k, v in tensors.items()}
    x = T["init"].copy()
    s = np.full(x.shape, h["initial_accumulator_value"])
    buf = np.zeros(x.shape)
    rows = [x]
    for t in range(1, STEPS + 1):
        g = rosenbrock_grad(x) if problem == "rosenbrock" else sinv_grad(x, T["U"], T["t"])
        if x.ndim == 2:
            s = s + (g * g).sum(axis=1, keepdims=True)  # broadcast: every entry of the row
        else:
            s = s + g * g
        if h["momentum"] > 0:
            buf = h["momentum"] * buf + (1.0 - h["momentum"]) * g
            d = buf
        else:
            d = g
        clr = h["lr"] / (1.0 + (t - 1) * h["lr_decay"])
        x = x - clr * d / (np.sqrt(s) + 1e-10)
        rows.append(x)
    return np.stack(rows), s, buf


def check_against_semantics(spec, problem, dname, tensors, opt):
    """Compare the reference run with the optlab rules; returns (max |traj diff|, max |sum diff|)."""
    traj, s, buf = replay_optlab_semantics(spec, problem, tensors)
    (p,) = [q for g in opt.param_groups for q in g["params"]]
    st = opt.state[p]
    ref_sum = st["sum"].detach().to(torch.float64).numpy()
    assert ref_sum.shape == tuple(p.shape), (ref_sum.shape, p.shape)
    if p.dim() == 2:  # every entry of a row holds the same sum
        assert (st["sum"] == st["sum"][:, :1]).all(), "row sums differ within a row"
    assert st["step"] == STEPS
    assert ("momentum_buffer" in st) == (parse_spec(spec)[1]["momentum"] > 0)
    dt = float(np.abs(traj - tensors["trajectory"].to(torch.float64).numpy()).max())
    ds = float(np.abs(s - ref_sum).max() / np.abs(s).max())
    if "momentum_buffer" in st:
        db = float(np.abs(buf - st["momentum_buffer"].to(torch.float64).numpy()).max())
        ds = max(ds, db)
    return dt, ds


def write_trajectories(args):
    failures = []
    written = 0
    worst = {"f64": 0.0, "f32": 0.0}
    for case, problem, spec, dname, dtype, suffix in common.iter_runs(CASES, DTYPES, args.only):
        tensors, finite = common.finish_tensors(PROBLEMS[problem](spec, dtype), dtype)
        opt = LAST_OPT[0]
        dt, ds = check_against_semantics(spec, problem, dname, tensors, opt)
        worst[dname] = max(worst[dname], dt)
        tol = 1e-12 if dname == "f64" else 1e-4
        if not dt <= tol:
            failures.append(f"{case}_{problem}{suffix}: differs from the optlab rules by {dt:.3g}")
        fname = f"{case}_{problem}{suffix}.safetensors"
        metadata = common.run_metadata(spec, problem, dname, STEPS, reference=REF_INFO["adagradnorm.py"])
        save_file(tensors, os.path.join(args.optim_out, fname), metadata=metadata)
        written += 1
        summary, last = papers.summarize(problem, tensors)
        print(f"{'ok ' if finite else 'NaN/inf'} {fname:45s} {spec:95s} {summary}  "
              f"[vs optlab rules: traj {dt:.2g}, state {ds:.2g}]")
        if not finite or not math.isfinite(last):
            failures.append(f"{fname}: not finite")
    if written:
        print(f"{written} trajectory files written to {args.optim_out}; max |reference - optlab rules| "
              f"f64 {worst['f64']:.3g}, f32 {worst['f32']:.3g}")
    return failures


# ---------------------------------------------------------------------------
# Task 2: adaptive batch-size tests
# ---------------------------------------------------------------------------

ETA, THETA, NU = 0.5, 0.5, 0.5


def batch_problem():
    """optim_fixtures.py's mlp problem (seed 123; x, y, then the model; float32), cast to float64."""
    x32, y, init32 = base.mlp_problem()
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(torch.float64)
    model.load_state_dict({k: v.to(torch.float64) for k, v in init32.items()}, strict=True)
    return x32.to(torch.float64), y, model


def per_sample_grads_loop(model, x, y):
    """Independent cross-check of the vmap per-sample gradients: one backward per sample."""
    out = {k: [] for k, _ in model.named_parameters()}
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for k, p in model.named_parameters():
            out[k].append(p.grad.detach().clone())
    model.zero_grad()
    return {k: torch.stack(v) for k, v in out.items()}


def whole_vector_stats(G):
    """Paper statistics on one flattened gradient per sample. G: [n, P] float64 NumPy."""
    n = G.shape[0]
    gbar = G.mean(axis=0)
    ip = G @ gbar                                       # <g_i, gbar>
    inner_variance = ip.var(ddof=1)
    ortho = G - np.outer(ip, gbar) / (gbar @ gbar)      # g_i minus its projection on gbar
    orthogonal_variance_sum = ortho.var(axis=0, ddof=1).sum()
    sum_sq_norms = (G * G).sum()
    variance_sum = G.var(axis=0, ddof=1).sum()          # = the norm test's variance_one_norm
    return dict(n=n, gbar_sq=float(gbar @ gbar), inner_variance=float(inner_variance),
                orthogonal_variance_sum=float(orthogonal_variance_sum), sum_sq_norms=float(sum_sq_norms),
                variance_sum=float(variance_sum))


def per_tensor_stats(blocks):
    """The reference's per-tensor statistics, re-derived in NumPy. blocks: list of [n, P_k]."""
    var_sum = ip_var = orth_var = gsq = 0.0
    for B in blocks:
        gbar = B.mean(axis=0)
        var_sum += B.var(axis=0, ddof=1).sum()
        ip = B @ gbar
        ip_var += ip.var(ddof=1)
        orth_var += (B - np.outer(ip, gbar) / (gbar @ gbar)).var(axis=0, ddof=1).sum()
        gsq += gbar @ gbar
    return dict(variance_one_norm=var_sum, inner_variance=ip_var, orthogonal_variance=orth_var, gbar_sq=gsq)


def write_batch_tests(args):
    failures = []
    x, y, model = batch_problem()
    n = x.shape[0]
    psg = REF["tests"].compute_per_sample_gradients(model, x, y)  # dict name -> [n, *shape]
    names = [k for k, _ in model.named_parameters()]
    assert list(psg) == names, (list(psg), names)

    # Cross-check the vmap gradients against one backward per sample.
    loop = per_sample_grads_loop(model, x, y)
    dg = max(float((psg[k] - loop[k]).abs().max()) for k in names)
    if not dg <= 1e-14:
        failures.append(f"per-sample gradients: vmap vs loop differ by {dg:.3g}")
    # ... and their mean against the full-batch gradient of the mean loss.
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    dm = max(float((psg[k].mean(0) - p.grad).abs().max()) for k, p in model.named_parameters())
    model.zero_grad()
    if not dm <= 1e-15:
        failures.append(f"mean per-sample gradient vs batch gradient differ by {dm:.3g}")
    print(f"ok  per-sample gradients: vmap vs per-sample backward max|diff| {dg:.2g}; "
          f"their mean vs the batch gradient {dm:.2g}")

    tests = REF["tests"]
    nt = tests.norm_test(psg, eta=ETA)
    ipt = tests.inner_product_test(psg, theta=THETA)
    ot = tests.orthogonality_test(psg, nu=NU)
    both = tests.inner_product_orthogonality_test(psg, theta=THETA, nu=NU)  # the augmented test (not stored)

    blocks = [psg[k].reshape(n, -1).numpy() for k in names]
    pt = per_tensor_stats(blocks)
    wv = whole_vector_stats(np.concatenate(blocks, axis=1))

    # Cross-checks: the reference's per-tensor numbers re-derived; relations that must hold.
    def rel(a, b):
        return abs(a - b) / max(abs(b), 1e-300)

    checks = {
        "norm_test.variance_one_norm (re-derived)": rel(nt[1], pt["variance_one_norm"]),
        "norm_test.batch_grad_norm_squared (re-derived)": rel(nt[2], pt["gbar_sq"]),
        "inner_product_test.variance (re-derived)": rel(ipt[1], pt["inner_variance"]),
        "orthogonality_test.variance (re-derived)": rel(ot[1], pt["orthogonal_variance"]),
        "norm test per-tensor == whole-vector": rel(nt[1], wv["variance_sum"]),
        "||gbar||^2 per-tensor sum == whole": rel(nt[2], wv["gbar_sq"]),
        "sum ||g_i||^2 == (n-1) var_sum + n ||gbar||^2":
            rel(wv["sum_sq_norms"], (n - 1) * wv["variance_sum"] + n * wv["gbar_sq"]),
        "all three tests report the same ||gbar||^2": max(rel(ipt[2], nt[2]), rel(ot[2], nt[2])),
        "augmented test == the two separate tests":
            max(rel(both[1], ipt[1]), rel(both[2], ot[1]), rel(both[3], nt[2]),
                float(both[0] != max(ipt[0], ot[0]))),
    }
    for k, v in checks.items():
        ok = v <= 1e-12
        print(f"{'ok ' if ok else 'BAD'} {k:55s} rel diff {v:.2g}")
        if not ok:
            failures.append(k)

    # The tests' raw ratios (before max(batch size, .) and ceil), for the README.
    raw = {
        "norm_test": nt[1] / (ETA ** 2 * nt[2]),
        "inner_product_test": ipt[1] / (THETA ** 2 * ipt[2] ** 2),
        "orthogonality_test": ot[1] / (NU ** 2 * ot[2]),
        "whole.inner_product": wv["inner_variance"] / (THETA ** 2 * wv["gbar_sq"] ** 2),
        "whole.orthogonality": wv["orthogonal_variance_sum"] / (NU ** 2 * wv["gbar_sq"]),
    }
    for k, v in raw.items():
        print(f"    raw ratio {k:25s} {v!r}  -> ceil(max({n}, .)) = {math.ceil(max(n, v))}")

    scalars = {
        "norm_test.new_batch_size": nt[0],
        "norm_test.variance_one_norm": nt[1],
        "norm_test.batch_grad_norm_squared": nt[2],
        "inner_product_test.new_batch_size": ipt[0],
        "inner_product_test.variance_per_tensor_sum": ipt[1],
        "orthogonality_test.new_batch_size": ot[0],
        "orthogonality_test.variance_per_tensor_sum": ot[1],
        "whole.inner_variance": wv["inner_variance"],
        "whole.orthogonal_variance_sum": wv["orthogonal_variance_sum"],
        "whole.sum_sq_norms": wv["sum_sq_norms"],
    }
    tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tensors["x"] = x.contiguous()
    tensors["y"] = y.to(torch.float64).contiguous()
    for k, v in scalars.items():
        tensors[k] = torch.tensor([float(v)], dtype=torch.float64)
    for k, v in scalars.items():
        print(f"    {k:45s} {float(v)!r}")
    assert all(v.dtype == torch.float64 for v in tensors.values())
    if not all(torch.isfinite(v).all().item() for v in tensors.values()):
        failures.append("batch_tests: not finite")
    metadata = {
        "eta": common.fmt_value(ETA),
        "theta": common.fmt_value(THETA),
        "nu": common.fmt_value(NU),
        "batch_size": str(n),
        "torch_version": torch.__version__,
        "reference": REF_INFO["tests.py"],
    }
    os.makedirs(args.batch_out, exist_ok=True)
    path = os.path.join(args.batch_out, "batch_tests.safetensors")
    save_file(tensors, path, metadata=metadata)
    print(f"ok  {path}")
    return failures


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="only cases whose name contains this substring "
                                   "(adagradnorm, adagradnorm_momentum, batch_tests)")
    ap.add_argument("--out", help="write both outputs under this folder (optim_papers/ and adadagrad/) "
                                  "instead of the fixtures folders")
    ap.add_argument("--vendor", default=DEFAULT_VENDOR,
                    help="folder holding adagradnorm.py and tests.py (default: $OPTLAB_REF_VENDOR/AdAdaGrad "
                         "or /tmp/optlab_ref_vendor/AdAdaGrad)")
    ap.add_argument("--no-hash-check", action="store_true", help="accept reference files of another version")
    args = ap.parse_args()
    args.optim_out = os.path.join(args.out, "optim_papers") if args.out else OPTIM_DIR
    args.batch_out = os.path.join(args.out, "adadagrad") if args.out else BATCH_DIR

    load_references(os.path.abspath(args.vendor), enforce_hash=not args.no_hash_check)
    # adagradnorm.py's buf.mul_(m).add_(1 - m, grad) uses the deprecated add_(Number, Tensor)
    # overload; torch 2.15 still evaluates it as add_(grad, alpha=1 - m).
    warnings.filterwarnings("ignore", message="This overload of add", category=UserWarning)

    common.deterministic_torch()
    os.makedirs(args.optim_out, exist_ok=True)

    failures = write_trajectories(args)
    if not args.only or args.only in "batch_tests":
        failures += write_batch_tests(args)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
