#!/usr/bin/env python3
"""Golden AdaHessian trajectories from the official code (amirgholami/adahessian).

Same format and naming as optim_fixtures.py (whose `rosenbrock` and `mlp`
problems it reuses), written to crates/optlab/tests/fixtures/adahessian/:

    adahessian_{rosenbrock,mlp}[_f32].safetensors      hessian_power=1, weight_decay=0
    adahessian_hp_{rosenbrock,mlp}[_f32].safetensors   hessian_power=0.5, weight_decay=1e-3

AdaHessian draws a Rademacher probe z per parameter tensor and per step with
torch's RNG (`2 * torch.randint_like(p, high=2) - 1`).  To make the files
replayable without torch's RNG, this script wraps `torch.randint_like` while
the reference `step()` runs and stores the probe actually used as
`probe.<t>.<name>` (t = 1..200; name `x` for rosenbrock's one parameter, the
state-dict names for mlp), in the run's dtype.  The RNG is seeded with
PROBE_SEED right before the first step (after the mlp problem's own seed 123),
so reruns reproduce the probes too.

The reference is one file, loaded at run time from a folder outside the
repository (default /tmp/optlab_ref_vendor/adahessian, or
$OPTLAB_REF_VENDOR/adahessian, or --vendor DIR); nothing of it is copied here:

    mkdir -p /tmp/optlab_ref_vendor/adahessian && cd /tmp/optlab_ref_vendor/adahessian
    curl -fsSLO https://raw.githubusercontent.com/amirgholami/adahessian/85ebc00ce873c8497a64ca80bbfa5d996109efea/image_classification/optim_adahessian.py

(or `git clone https://github.com/amirgholami/adahessian` and
`git show 85ebc00:image_classification/optim_adahessian.py`).  Its SHA-256 is
checked (--no-hash-check to skip).  The reference runs unmodified, with
`single_gpu=True` (its default; the multi-GPU path uses an unimported `dist`).

Each run is also replayed independently of the reference class (own update
code, the recorded probes, analytic Hessian in float64 NumPy for rosenbrock,
torch.autograd Hessian-vector products for mlp); the script exits 1 if a
replay disagrees or a trajectory is not finite.

Usage:
    python3 tools/reference/adahessian_fixtures.py               # all 8 files
    python3 tools/reference/adahessian_fixtures.py --only hp     # cases whose name contains "hp"
    python3 tools/reference/adahessian_fixtures.py --out /tmp/x  # write elsewhere

Needs: torch, numpy, safetensors and the reference file.  Run by hand only;
CI never runs it.  See crates/optlab/tests/fixtures/adahessian/README.md.
"""

import argparse
import contextlib
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (paths, spec strings, reference loading, run loop helpers)
import optim_fixtures as base  # noqa: E402  (rosenbrock, mlp_problem, STEPS, DTYPES)
import optim_fixtures_papers as papers  # noqa: E402  (summarize)

REPO_ROOT = common.REPO_ROOT
OUT_DIR = common.fixtures_dir("adahessian")
STEPS = base.STEPS
SNAPSHOT_STEP = base.SNAPSHOT_STEP
DTYPES = base.DTYPES
DEFAULT_VENDOR = common.vendor_dir("adahessian")

REF_REPO = "amirgholami/adahessian"
REF_COMMIT = "85ebc00ce873c8497a64ca80bbfa5d996109efea"  # file last changed in 935a047 (2021-05-21)
REF_PATH = "image_classification/optim_adahessian.py"
REF_FILE = "optim_adahessian.py"
REF_SHA256 = "3a4aa8e169e190e081804ae0773438225cbf1ec957abd9d1c442e27540bf8c00"
REF_INFO = f"{REF_REPO}@{REF_COMMIT}:{REF_PATH} (class Adahessian, sha256 {REF_SHA256})"

PROBE_SEED = 0  # torch.manual_seed right before step 1 (the probes are stored anyway)

# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

SPEC_KEYS = {"adahessian": ["lr", "beta1", "beta2", "eps", "weight_decay", "hessian_power"]}


def make_spec(name, **params):
    return common.make_spec(SPEC_KEYS, name, params)


def parse_spec(spec):
    return common.parse_spec(spec, SPEC_KEYS)


def adahessian(lr, weight_decay=0.0, hessian_power=1.0, beta1=0.9, beta2=0.999, eps=1e-4):
    # betas, eps: the reference's defaults ((0.9, 0.999), 1e-4)
    return make_spec("adahessian", lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     weight_decay=weight_decay, hessian_power=hessian_power)


# Learning rates: 0.01 on rosenbrock, 0.1 on mlp (every trajectory stays finite;
# main() refuses non-finite results).
ROSENBROCK_LR = 1e-2
MLP_LR = 0.1

CASES = [
    ("adahessian", {
        "rosenbrock": adahessian(ROSENBROCK_LR),
        "mlp": adahessian(MLP_LR),
    }),
    ("adahessian_hp", {
        "rosenbrock": adahessian(ROSENBROCK_LR, weight_decay=1e-3, hessian_power=0.5),
        "mlp": adahessian(MLP_LR, weight_decay=1e-3, hessian_power=0.5),
    }),
]

# ---------------------------------------------------------------------------
# Reference code
# ---------------------------------------------------------------------------

REF = {}


def load_reference(vendor, enforce_hash):
    path = os.path.join(vendor, REF_FILE)
    common.check_reference(path, REF_SHA256, enforce_hash)
    REF["mod"] = common.load_file_module(path, "ref_optim_adahessian")


def build_optimizer(spec, parameters):
    name, p = parse_spec(spec)
    assert name == "adahessian"
    return REF["mod"].Adahessian(parameters, lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"],
                                 weight_decay=p["weight_decay"], hessian_power=p["hessian_power"],
                                 single_gpu=True)


@contextlib.contextmanager
def record_probes(params, names, out, step):
    """Wrap torch.randint_like during one reference step(); store each probe 2*r-1 as probe.<step>.<name>.

    The reference calls `2 * torch.randint_like(p, high=2) - 1` once per parameter
    (those with a gradient, in param_groups order) -- checked here.
    """
    orig = torch.randint_like
    calls = []

    def wrapped(inp, *args, **kwargs):
        r = orig(inp, *args, **kwargs)
        calls.append((inp, args, kwargs, r.detach().clone()))
        return r

    torch.randint_like = wrapped
    try:
        yield
    finally:
        torch.randint_like = orig
    assert len(calls) == len(params), f"step {step}: {len(calls)} randint_like calls for {len(params)} params"
    for (inp, args, kwargs, r), p, n in zip(calls, params, names):
        assert inp is p and args == () and kwargs == {"high": 2}, (n, args, kwargs)
        assert r.dtype == p.dtype and r.shape == p.shape
        assert ((r == 0) | (r == 1)).all()
        out[f"probe.{step}.{n}"] = 2 * r - 1  # the same expression as the reference


# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------

def run_rosenbrock(spec, dtype):
    init = torch.tensor(base.ROSENBROCK_INIT, dtype=dtype)
    p = init.clone().requires_grad_(True)
    opt = build_optimizer(spec, [p])
    out = {"init": init}
    rows = [p.detach().clone()]
    torch.manual_seed(PROBE_SEED)
    for t in range(1, STEPS + 1):
        opt.zero_grad()  # set_to_none: no graph accumulates across steps
        base.rosenbrock(p).backward(create_graph=True)
        with record_probes([p], ["x"], out, t):
            opt.step()
        rows.append(p.detach().clone())
    out["trajectory"] = torch.stack(rows)  # [201, 2]
    with torch.no_grad():
        out["values"] = torch.stack([base.rosenbrock(r) for r in rows])
    return out, opt


def run_mlp(spec, dtype):
    x32, y, init32 = base.mlp_problem()
    x = x32.to(dtype)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in init32.items()}, strict=True)
    names = [n for n, _ in model.named_parameters()]
    params = [q for _, q in model.named_parameters()]
    assert names == list(model.state_dict().keys())

    def snapshot(prefix):
        return {f"{prefix}.{k}": v.detach().clone() for k, v in model.state_dict().items()}

    out = {"x": x, "y": y.to(dtype)}
    out.update(snapshot("init"))
    opt = build_optimizer(spec, model.parameters())
    losses = []
    torch.manual_seed(PROBE_SEED)
    for t in range(1, STEPS + 1):
        if t - 1 == SNAPSHOT_STEP:
            out.update(snapshot(f"step{SNAPSHOT_STEP}"))
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)  # mean over the batch
        loss.backward(create_graph=True)
        with record_probes(params, names, out, t):
            opt.step()
        losses.append(loss.detach().clone())
    out.update(snapshot("final"))
    out["losses"] = torch.stack(losses)
    return out, opt


PROBLEMS = {"rosenbrock": run_rosenbrock, "mlp": run_mlp}

# ---------------------------------------------------------------------------
# Independent replay (no reference class)
# ---------------------------------------------------------------------------


def hutchinson(hz):
    """The reference's per-tensor diagonal estimate from Hz (z = +-1): |Hz|, spatially averaged for 4-D."""
    if hz.ndim <= 2:
        return np.abs(hz) if isinstance(hz, np.ndarray) else hz.abs()
    assert hz.ndim == 4, "the reference handles only 0/1/2/4-D tensors"
    return hz.abs().mean(dim=[2, 3], keepdim=True)


def adahessian_update(h, t, p, g, d, m, v):
    """One update as the reference writes it; works on NumPy arrays (float64) or torch tensors."""
    b1, b2, k = h["beta1"], h["beta2"], h["hessian_power"]
    m = m * b1 + (1 - b1) * g
    v = v * b2 + (1 - b2) * d * d
    bc1 = 1 - b1 ** t
    bc2 = 1 - b2 ** t
    sq = np.sqrt(v) if isinstance(v, np.ndarray) else v.sqrt()
    denom = sq ** k / math.sqrt(bc2) ** k + h["eps"]
    p = p - h["lr"] * (m / bc1 / denom + h["weight_decay"] * p)
    return p, m, v


def replay_rosenbrock(spec, tensors):
    """float64 NumPy, analytic gradient and Hessian; returns the trajectory."""
    _, h = parse_spec(spec)
    x = tensors["init"].double().numpy().copy()
    m = np.zeros(2)
    v = np.zeros(2)
    rows = [x]
    for t in range(1, STEPS + 1):
        a, b = x
        g = np.array([-2.0 * (1.0 - a) - 400.0 * a * (b - a * a), 200.0 * (b - a * a)])
        H = np.array([[2.0 - 400.0 * (b - a * a) + 800.0 * a * a, -400.0 * a], [-400.0 * a, 200.0]])
        z = tensors[f"probe.{t}.x"].double().numpy()
        assert set(np.unique(z)) <= {-1.0, 1.0}
        x, m, v = adahessian_update(h, t, x, g, hutchinson(H @ z), m, v)
        rows.append(x)
    return np.stack(rows)


def replay_mlp(spec, tensors, dtype):
    """torch in the run's dtype, functional model, autograd HVP with the stored probes; returns final params."""
    _, h = parse_spec(spec)
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    P = [tensors[f"init.{n}"].clone() for n in names]
    x, y = tensors["x"], tensors["y"].long()
    m = [torch.zeros_like(q) for q in P]
    v = [torch.zeros_like(q) for q in P]
    for t in range(1, STEPS + 1):
        ps = [q.clone().requires_grad_(True) for q in P]
        logits = torch.tanh(x @ ps[0].T + ps[1]) @ ps[2].T + ps[3]
        loss = F.cross_entropy(logits, y)
        gs = torch.autograd.grad(loss, ps, create_graph=True)
        zs = [tensors[f"probe.{t}.{n}"] for n in names]
        # full Hessian times the concatenated probe (all tensors at once, cross blocks included)
        hz = torch.autograd.grad(gs, ps, grad_outputs=zs)
        for i in range(len(P)):
            P[i], m[i], v[i] = adahessian_update(h, t, P[i], gs[i].detach(), hutchinson(hz[i]), m[i], v[i])
    return {n: q for n, q in zip(names, P)}


def check_replay(spec, problem, dtype, tensors):
    if problem == "rosenbrock":
        traj = replay_rosenbrock(spec, tensors)
        ref = tensors["trajectory"].double().numpy()
        return float(np.abs(traj - ref).max() / np.abs(ref).max())
    final = replay_mlp(spec, tensors, dtype)
    return max(float(((final[n] - tensors[f"final.{n}"]).abs().max() /
                      tensors[f"final.{n}"].abs().max()).item()) for n in final)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="generate only cases whose name contains this substring")
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default: the fixtures folder)")
    ap.add_argument("--vendor", default=DEFAULT_VENDOR,
                    help="folder holding optim_adahessian.py (default: $OPTLAB_REF_VENDOR/adahessian "
                         "or /tmp/optlab_ref_vendor/adahessian)")
    ap.add_argument("--no-hash-check", action="store_true", help="accept another version of the reference file")
    args = ap.parse_args()

    load_reference(os.path.abspath(args.vendor), enforce_hash=not args.no_hash_check)
    common.deterministic_torch()
    os.makedirs(args.out, exist_ok=True)

    failures = []
    for case, problem, spec, dname, dtype, suffix in common.iter_runs(CASES, DTYPES, args.only):
        tensors, opt = PROBLEMS[problem](spec, dtype)
        tensors, finite = common.finish_tensors(tensors, dtype)
        for st in opt.state.values():
            assert st["step"] == STEPS
        rel = check_replay(spec, problem, dtype, tensors)
        tol = 1e-12 if dname == "f64" else 1e-4
        fname = f"{case}_{problem}{suffix}.safetensors"
        if not rel <= tol:
            failures.append(f"{fname}: independent replay differs by {rel:.3g} (relative)")
        metadata = common.run_metadata(
            spec, problem, dname, STEPS, reference=REF_INFO, probe_seed=str(PROBE_SEED),
            probes="probe.<t>.<name>, t=1..steps: the Rademacher vector of step t")
        save_file(tensors, os.path.join(args.out, fname), metadata=metadata)
        summary, last = papers.summarize(problem, tensors)
        print(f"{'ok ' if finite else 'NaN/inf'} {fname:40s} {spec:95s} {summary}  [replay {rel:.2g}]")
        if not finite or not math.isfinite(last):
            failures.append(f"{fname}: not finite")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
