#!/usr/bin/env python3
"""Golden trajectories of paper optimizers (Lion, diffGrad, AdamP, SGDP).

Same file format as optim_fixtures.py (which this script imports for the
`rosenbrock` and `mlp` problems and the number formatting), written to
crates/optlab/tests/fixtures/optim_papers/, plus one new problem, `sinv`
(scale-invariant; see sinv_problem()).  For each AdamP/SGDP case it also
writes `<case>_sinv_projection.safetensors`, recording whether the
scale-invariance test fired at step 1 (re-derived here, independently of the
official code, and checked against the official code's decision).

The optimizers are the papers' official PyTorch classes, loaded at run time;
nothing of them is copied into this repository:

  * AdamP, SGDP: the PyPI package `adamp==0.3.0` (pip install adamp==0.3.0),
    identical to clovaai/AdamP adamp/{adamp,sgdp}.py at 7f6f0383ff6a.
  * Lion:     google/automl lion/lion_pytorch.py   (commit 6a54c8741e7c)
  * diffGrad: shivram1987/diffGrad diffGrad_v2.py  (commit 73233ba4708a)

The last two are single files outside any package: put them in a folder of
your choice outside the repository (default /tmp/optlab_ref_vendor, or set
$OPTLAB_REF_VENDOR, or pass --vendor):

    mkdir -p /tmp/optlab_ref_vendor && cd /tmp/optlab_ref_vendor
    curl -fsSLO https://raw.githubusercontent.com/google/automl/6a54c8741e7c3265d4547c4f35f47a0391122dc5/lion/lion_pytorch.py
    curl -fsSLO https://raw.githubusercontent.com/shivram1987/diffGrad/73233ba4708701cf552bcecb1f065d46d2d77164/diffGrad_v2.py

Every loaded file's SHA-256 is checked against the version the fixtures were
made with (--no-hash-check to skip).  See
crates/optlab/tests/fixtures/optim_papers/README.md for the files and the
update rules.

Usage:
    python3 tools/reference/optim_fixtures_papers.py               # all cases
    python3 tools/reference/optim_fixtures_papers.py --only adamp  # case names containing "adamp"

Needs: torch, safetensors, adamp==0.3.0, the two vendored files.  Run by hand
only; CI never runs it.
"""

import argparse
import math
import os
import sys
import warnings

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (paths, spec strings, reference loading, run loop helpers)
import optim_fixtures as base  # noqa: E402  (rosenbrock, mlp, STEPS, DTYPES)

REPO_ROOT = common.REPO_ROOT
OUT_DIR = common.fixtures_dir("optim_papers")
STEPS = base.STEPS
DTYPES = base.DTYPES
DEFAULT_VENDOR = common.vendor_dir()

# SHA-256 of the official files the committed fixtures were generated with.
REFERENCE_SHA256 = {
    "lion_pytorch.py": "5ea5d205df80a0cf5f4794e50e3ffe27628e036c4d37664554a424f7b186f9fb",
    "diffGrad_v2.py": "0aa7eeb4e6466de5b40ec5224fb5f411526a133d7b1543ce77ee17cb2f10b6e6",
    "adamp/adamp.py": "2f92db86d0d60e3d34457885471b54dff8c927e0f5cb22737ae822f91776806e",
    "adamp/sgdp.py": "4747088d915ba72aa8b99da34b987e7c9caf4c74131451636f972fe32de2997d",
}

# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

SPEC_KEYS = {
    "lion": ["lr", "beta1", "beta2", "weight_decay"],
    "diffgrad": ["lr", "beta1", "beta2", "eps", "weight_decay"],
    "adamp": ["lr", "beta1", "beta2", "eps", "weight_decay", "delta", "wd_ratio", "nesterov"],
    "sgdp": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "eps", "delta", "wd_ratio"],
}
BOOL_KEYS = {"nesterov"}


def make_spec(name, **params):
    return common.make_spec(SPEC_KEYS, name, params, bool_keys=BOOL_KEYS)


def parse_spec(spec):
    return common.parse_spec(spec, SPEC_KEYS, BOOL_KEYS)


# ---------------------------------------------------------------------------
# Loading the official implementations
# ---------------------------------------------------------------------------

REF = {}  # name -> optimizer class
REF_INFO = {}  # name -> provenance string (stored in the metadata)


def load_references(vendor, enforce_hash):
    for fname in ("lion_pytorch.py", "diffGrad_v2.py"):
        common.check_reference(os.path.join(vendor, fname), REFERENCE_SHA256[fname], enforce_hash)
    REF["lion"] = common.load_file_module(os.path.join(vendor, "lion_pytorch.py"), "ref_lion_pytorch").Lion
    REF["diffgrad"] = common.load_file_module(os.path.join(vendor, "diffGrad_v2.py"), "ref_diffgrad_v2").diffgrad
    REF_INFO["lion"] = "google/automl@6a54c8741e7c3265d4547c4f35f47a0391122dc5:lion/lion_pytorch.py"
    REF_INFO["diffgrad"] = "shivram1987/diffGrad@73233ba4708701cf552bcecb1f065d46d2d77164:diffGrad_v2.py"

    try:
        import adamp
        from importlib.metadata import version
    except ImportError:
        sys.exit("needs the `adamp` package: pip install adamp==0.3.0")
    pkg = os.path.dirname(adamp.__file__)
    for fname in ("adamp/adamp.py", "adamp/sgdp.py"):
        common.check_reference(os.path.join(pkg, os.path.basename(fname)), REFERENCE_SHA256[fname], enforce_hash,
                               require=False)
    REF["adamp"], REF["sgdp"] = adamp.AdamP, adamp.SGDP
    info = f"pypi adamp=={version('adamp')} (= clovaai/AdamP@7f6f0383ff6ad3839d5c7f79f1db0a44c5a12fdb:adamp/%s)"
    REF_INFO["adamp"], REF_INFO["sgdp"] = info % "adamp.py", info % "sgdp.py"


# ---------------------------------------------------------------------------
# The scale-invariance test of AdamP/SGDP, re-derived (not the official code)
# ---------------------------------------------------------------------------


def cosine_test(p, grad, delta, eps):
    """Which view (if any) AdamP/SGDP treat `p` as scale-invariant in.

    Re-derivation of the paper's test |cos(w, g)| < delta / sqrt(dim), done as
    the official code does it: first per output channel (rows of p viewed as
    [p.shape[0], -1], dim = row length; fires if the *largest* |cos| over the
    rows is below the threshold), else over the whole tensor (dim = numel).
    Only for tensors with ndim > 1.  The cosine is that of
    torch.nn.functional.cosine_similarity: x.y / (max(|x|, eps) max(|y|, eps)),
    evaluated here in float64.  Returns (view or None, |cos| per row,
    |cos| whole tensor, channel threshold, layer threshold).
    """
    assert p.dim() > 1
    w = p.detach().to(torch.float64).reshape(p.shape[0], -1)
    g = grad.detach().to(torch.float64).reshape(p.shape[0], -1)

    def abs_cos(x, y):  # rows of x and y
        nx = torch.sqrt((x * x).sum(dim=1)).clamp_min(eps)
        ny = torch.sqrt((y * y).sum(dim=1)).clamp_min(eps)
        return ((x * y).sum(dim=1) / (nx * ny)).abs()

    cos_ch = abs_cos(g, w)
    cos_layer = abs_cos(g.reshape(1, -1), w.reshape(1, -1))
    thr_ch = delta / math.sqrt(w.shape[1])
    thr_layer = delta / math.sqrt(w.numel())
    if cos_ch.max().item() < thr_ch:
        view = "channel"
    elif cos_layer.max().item() < thr_layer:
        view = "layer"
    else:
        view = None
    return view, cos_ch, cos_layer, thr_ch, thr_layer


class ProjectionLog:
    """Wraps an official AdamP/SGDP instance's _projection to log and cross-check each decision."""

    def __init__(self, opt):
        self.events = []  # (step index per parameter, shape, view or None)
        self.min_rel_margin = math.inf
        self.calls = {}
        orig = opt._projection

        def wrapped(p, grad, perturb, delta, wd_ratio, eps):
            assert wd_ratio != 1, "wd_ratio == 1 would hide the official decision"
            view, cos_ch, cos_layer, thr_ch, thr_layer = cosine_test(p, grad, delta, eps)
            # how close the (float64) re-derived test is to flipping
            m = abs(cos_ch.max().item() - thr_ch) / thr_ch
            if view != "channel":
                m = min(m, abs(cos_layer.item() - thr_layer) / thr_layer)
            self.min_rel_margin = min(self.min_rel_margin, m)
            out, wd = orig(p, grad, perturb, delta, wd_ratio, eps)
            official_fired = wd != 1
            if official_fired != (view is not None):
                raise AssertionError(
                    f"re-derived cosine test ({view}) disagrees with the official code "
                    f"(fired={official_fired}) for a {tuple(p.shape)} tensor")
            k = self.calls.get(id(p), 0)
            self.calls[id(p)] = k + 1
            self.events.append((k, tuple(p.shape), view))
            return out, wd

        opt._projection = wrapped

    def summary(self):
        fired = sum(1 for _, _, v in self.events if v is not None)
        return f"projection fired {fired}/{len(self.events)}, min rel margin {self.min_rel_margin:.3g}"


LAST_PROJECTION_LOG = []  # the ProjectionLog of the most recent AdamP/SGDP build


def build_optimizer(spec, parameters):
    """Instantiate the official optimizer class a spec describes."""
    name, p = parse_spec(spec)
    if name == "lion":
        opt = REF["lion"](parameters, lr=p["lr"], betas=(p["beta1"], p["beta2"]),
                          weight_decay=p["weight_decay"])
    elif name == "diffgrad":
        opt = REF["diffgrad"](parameters, lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"],
                              weight_decay=p["weight_decay"])
    elif name == "adamp":
        opt = REF["adamp"](parameters, lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"],
                           weight_decay=p["weight_decay"], delta=p["delta"], wd_ratio=p["wd_ratio"],
                           nesterov=p["nesterov"])
    elif name == "sgdp":
        opt = REF["sgdp"](parameters, lr=p["lr"], momentum=p["momentum"], dampening=p["dampening"],
                          weight_decay=p["weight_decay"], nesterov=p["nesterov"], eps=p["eps"],
                          delta=p["delta"], wd_ratio=p["wd_ratio"])
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    if name in ("adamp", "sgdp"):
        LAST_PROJECTION_LOG[:] = [ProjectionLog(opt)]
    else:
        LAST_PROJECTION_LOG[:] = []
    return opt


# ---------------------------------------------------------------------------
# The `sinv` problem
# ---------------------------------------------------------------------------


def sinv_problem():
    """torch.manual_seed(7); W0, U: randn(4, 8); t: randn(4) -- float32, in that order."""
    torch.manual_seed(7)
    w0 = torch.randn(4, 8)
    u = torch.randn(4, 8)
    t = torch.randn(4)
    return w0, u, t


def sinv(w, u, t):
    """f(W) = sum_i ((U_i . W_i) / ||W_i||_2 - t_i)^2: invariant to scaling any row of W."""
    return (((u * w).sum(dim=1) / torch.linalg.vector_norm(w, dim=1) - t) ** 2).sum()


def run_sinv(spec, dtype, build=build_optimizer):
    """One [4, 8] parameter; data made in float32 and cast (like the mlp problem)."""
    w32, u32, t32 = sinv_problem()
    init, u, t = w32.to(dtype), u32.to(dtype), t32.to(dtype)
    w = init.clone().requires_grad_(True)
    opt = build(spec, [w])
    rows = [w.detach().clone()]
    for _ in range(STEPS):
        opt.zero_grad()
        sinv(w, u, t).backward()
        opt.step()
        rows.append(w.detach().clone())
    trajectory = torch.stack(rows)  # [201, 4, 8]
    with torch.no_grad():
        values = torch.stack([sinv(r, u, t) for r in rows])  # [201]
    return {"init": init, "U": u, "t": t, "trajectory": trajectory, "values": values}


def sinv_projection_check(spec, dtype):
    """Step-1 inputs of the cosine test on `sinv`, and its decision at every step of a full run."""
    _, p = parse_spec(spec)
    w32, u32, t32 = sinv_problem()
    init, u, t = w32.to(dtype), u32.to(dtype), t32.to(dtype)
    w = init.clone().requires_grad_(True)
    sinv(w, u, t).backward()
    view, cos_ch, cos_layer, thr_ch, thr_layer = cosine_test(w, w.grad, p["delta"], p["eps"])
    # The same run as the trajectory file, recording the official decision at every step.
    run_sinv(spec, dtype)
    log = LAST_PROJECTION_LOG[0]
    assert [k for k, _, _ in log.events] == list(range(STEPS))
    assert log.events[0][2] == view, "step-1 decision of the run differs from the direct re-derivation"
    fired = torch.tensor([1.0 if v is not None else 0.0 for _, _, v in log.events], dtype=dtype)
    views = {v for _, _, v in log.events}
    tensors = {
        "init": init, "U": u, "t": t,
        "grad1": w.grad.detach().clone(),                  # raw gradient at init (step 1)
        "cos_channel1": cos_ch.to(dtype),                  # |cos(g_i, w_i)| per row, step 1
        "cos_layer1": cos_layer.to(dtype),                 # |cos(g, w)| whole tensor, step 1
        "fired": fired,                                    # [200] 1.0 where the projection fired at step t+1
    }
    meta = {
        "projection_fired": "true" if view is not None else "false",
        "projection_view": view or "none",
        "projection_views_all_steps": ",".join(sorted(v or "none" for v in views)),
        "threshold_channel": repr(thr_ch),
        "threshold_layer": repr(thr_layer),
    }
    return tensors, meta, log


PROBLEMS = {
    "rosenbrock": lambda spec, dtype: base.run_rosenbrock(spec, dtype, build=build_optimizer),
    "mlp": lambda spec, dtype: base.run_mlp(spec, dtype, build=build_optimizer),
    "sinv": run_sinv,
}

# ---------------------------------------------------------------------------
# Cases.  Hyperparameters not named in the task are the official code's
# defaults, written out.
# ---------------------------------------------------------------------------


def lion(lr, weight_decay, beta1=0.9, beta2=0.99):
    return make_spec("lion", lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay)


def diffgrad(lr, weight_decay, beta1=0.9, beta2=0.999, eps=1e-8):
    return make_spec("diffgrad", lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)


def adamp(lr, weight_decay=0.0, nesterov=False, beta1=0.9, beta2=0.999, eps=1e-8, delta=0.1, wd_ratio=0.1):
    return make_spec("adamp", lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                     delta=delta, wd_ratio=wd_ratio, nesterov=nesterov)


def sgdp(lr, momentum, weight_decay=0.0, nesterov=False, dampening=0.0, eps=1e-8, delta=0.1, wd_ratio=0.1):
    return make_spec("sgdp", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                     nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio)


def same(spec):
    return {"rosenbrock": spec, "mlp": spec, "sinv": spec}


# SGDP's lr=0.1 sends Rosenbrock from [-1.5, 2] (|grad| ~ 1e3) to inf within a
# few steps; there it uses 1e-3, the lr of the SGD fixtures on Rosenbrock.
SGDP_ROSENBROCK_LR = 1e-3

CASES = [
    ("lion", same(lion(1e-3, weight_decay=0.0))),
    ("lion_wd", same(lion(1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99))),
    ("diffgrad", same(diffgrad(1e-2, weight_decay=0.0))),
    ("diffgrad_wd", same(diffgrad(1e-2, weight_decay=1e-3))),
    ("adamp", same(adamp(1e-2))),
    ("adamp_wd_nesterov", same(adamp(1e-2, weight_decay=1e-2, nesterov=True))),
    ("sgdp", {
        "rosenbrock": sgdp(SGDP_ROSENBROCK_LR, momentum=0.9),
        "mlp": sgdp(0.1, momentum=0.9),
        "sinv": sgdp(0.1, momentum=0.9),
    }),
    ("sgdp_wd_nesterov", {
        "rosenbrock": sgdp(SGDP_ROSENBROCK_LR, momentum=0.9, weight_decay=1e-2, nesterov=True),
        "mlp": sgdp(0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
        "sinv": sgdp(0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
    }),
]

# ---------------------------------------------------------------------------


def summarize(problem, tensors):
    if problem != "sinv":
        return base.summarize(problem, tensors)
    first, last = tensors["values"][0].item(), tensors["values"][-1].item()
    norms = torch.linalg.vector_norm(tensors["trajectory"][-1].double(), dim=1).tolist()
    return f"f {first:.4g} -> {last:.4g}, row norms {' '.join(f'{n:.3f}' for n in norms)}", last


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="generate only cases whose name contains this substring")
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default: the fixtures folder)")
    ap.add_argument("--vendor", default=DEFAULT_VENDOR,
                    help="folder holding lion_pytorch.py and diffGrad_v2.py (default: $OPTLAB_REF_VENDOR "
                         "or /tmp/optlab_ref_vendor)")
    ap.add_argument("--no-hash-check", action="store_true", help="accept reference files of another version")
    args = ap.parse_args()

    load_references(os.path.abspath(args.vendor), enforce_hash=not args.no_hash_check)
    # diffGrad_v2.py uses add_(Number, Tensor)-style overloads that torch deprecates (same results).
    warnings.filterwarnings("ignore", message="This overload of add", category=UserWarning)
    warnings.filterwarnings("ignore", message="This overload of addc", category=UserWarning)

    common.deterministic_torch()
    os.makedirs(args.out, exist_ok=True)

    failures = []
    written = 0
    for case, specs in CASES:
        if args.only and args.only not in case:
            continue
        for problem, spec in specs.items():
            name = parse_spec(spec)[0]
            for dname, (dtype, suffix) in DTYPES.items():
                tensors, finite = common.finish_tensors(PROBLEMS[problem](spec, dtype), dtype)
                fname = f"{case}_{problem}{suffix}.safetensors"
                metadata = common.run_metadata(spec, problem, dname, STEPS, reference=REF_INFO[name])
                save_file(tensors, os.path.join(args.out, fname), metadata=metadata)
                written += 1
                summary, last = summarize(problem, tensors)
                extra = f"  [{LAST_PROJECTION_LOG[0].summary()}]" if LAST_PROJECTION_LOG else ""
                print(f"{'ok ' if finite else 'NaN/inf'} {fname:45s} {spec:100s} {summary}{extra}")
                if not finite or not math.isfinite(last):
                    failures.append(fname)

        if parse_spec(specs["sinv"])[0] in ("adamp", "sgdp"):
            spec = specs["sinv"]
            tensors, meta, log = sinv_projection_check(spec, torch.float64)
            _, meta32, _ = sinv_projection_check(spec, torch.float32)
            assert meta32["projection_fired"] == meta["projection_fired"], "f32 and f64 decisions differ"
            fname = f"{case}_sinv_projection.safetensors"
            metadata = common.run_metadata(spec, "sinv", "f64", STEPS, kind="projection",
                                           reference=REF_INFO[parse_spec(spec)[0]], **meta,
                                           projection_fired_f32=meta32["projection_fired"])
            save_file({k: v.to(torch.float64).contiguous() for k, v in tensors.items()},
                      os.path.join(args.out, fname), metadata=metadata)
            written += 1
            print(f"ok  {fname:45s} projection_fired={meta['projection_fired']} view={meta['projection_view']} "
                  f"max|cos| {tensors['cos_channel1'].max().item():.3g} < {meta['threshold_channel'][:8]}; "
                  f"{log.summary()}")

    print(f"{written} files written to {args.out}")
    if failures:
        print(f"non-finite trajectories: {failures}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
