#!/usr/bin/env python3
"""Golden torch.optim trajectories for optlab's optimizer tests.

Writes one safetensors file per (case, problem, dtype) under
crates/optlab/tests/fixtures/optim/, e.g.

    sgd_momentum_rosenbrock.safetensors       (float64 run)
    sgd_momentum_rosenbrock_f32.safetensors   (float32 run)

Each case is defined by its optimizer spec string (`name:key=value,...`, every
hyperparameter written out); the torch optimizer is built by parsing that very
string, so the spec in a file always describes what produced its numbers.
See crates/optlab/tests/fixtures/optim/README.md for the file format.

Usage:
    python3 tools/reference/optim_fixtures.py            # all cases
    python3 tools/reference/optim_fixtures.py --only adam  # case names containing "adam"

Needs: torch, safetensors.  Run by hand only; CI never runs it.
"""

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (paths, spec strings, run loop helpers)
from common import REPO_ROOT, fmt_value  # noqa: E402,F401  (re-exported for the other scripts)

OUT_DIR = common.fixtures_dir("optim")

STEPS = 200
SNAPSHOT_STEP = 50  # mlp files also store the parameters after this many steps

# ---------------------------------------------------------------------------
# Optimizer specs
# ---------------------------------------------------------------------------

# Key order of each spec, which is also the full set of keys it must carry.
SPEC_KEYS = {
    "sgd": ["lr", "momentum", "dampening", "weight_decay", "nesterov"],
    "adam": ["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad"],
    "adamw": ["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad"],
    "adagrad": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
    "rmsprop": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
}
BOOL_KEYS = {"nesterov", "amsgrad", "centered"}


def make_spec(name, **params):
    """Build a spec string, insisting that every key of the optimizer is given."""
    return common.make_spec(SPEC_KEYS, name, params)


def parse_spec(spec):
    """Parse `name:key=value,...` back into (name, {key: float|bool})."""
    return common.parse_spec(spec, SPEC_KEYS, BOOL_KEYS)


def build_optimizer(spec, parameters):
    """Instantiate the torch.optim optimizer a spec describes (single-tensor, non-fused code paths)."""
    name, p = parse_spec(spec)
    common = dict(foreach=False, maximize=False, differentiable=False)
    if name == "sgd":
        return torch.optim.SGD(
            parameters, lr=p["lr"], momentum=p["momentum"], dampening=p["dampening"],
            weight_decay=p["weight_decay"], nesterov=p["nesterov"], fused=False, **common)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(
            parameters, lr=p["lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"],
            weight_decay=p["weight_decay"], amsgrad=p["amsgrad"], capturable=False, fused=False, **common)
    if name == "adagrad":
        return torch.optim.Adagrad(
            parameters, lr=p["lr"], lr_decay=p["lr_decay"], weight_decay=p["weight_decay"],
            initial_accumulator_value=p["initial_accumulator_value"], eps=p["eps"], fused=False, **common)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            parameters, lr=p["lr"], alpha=p["alpha"], eps=p["eps"], weight_decay=p["weight_decay"],
            momentum=p["momentum"], centered=p["centered"], capturable=False, **common)
    raise ValueError(f"unknown optimizer {name!r}")


# ---------------------------------------------------------------------------
# Cases: (case name, {problem: spec}).  Hyperparameters not mentioned in the
# task description are PyTorch's defaults, written out explicitly.
# ---------------------------------------------------------------------------

ADAM_DEFAULTS = dict(beta1=0.9, beta2=0.999, eps=1e-8)


def sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    return make_spec("sgd", lr=lr, momentum=momentum, dampening=dampening,
                     weight_decay=weight_decay, nesterov=nesterov)


def adam(name, lr, weight_decay, amsgrad):
    return make_spec(name, lr=lr, weight_decay=weight_decay, amsgrad=amsgrad, **ADAM_DEFAULTS)


def adagrad(lr, lr_decay, initial_accumulator_value, weight_decay=0.0, eps=1e-10):
    return make_spec("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                     initial_accumulator_value=initial_accumulator_value, eps=eps)


def rmsprop(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    return make_spec("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                     momentum=momentum, centered=centered)


# Learning rates of the SGD family per problem.  With lr=1e-3 every SGD variant
# stays finite on Rosenbrock from [-1.5, 2] (the Nesterov run overshoots to
# f ~ 281 around the valley's bend, then settles); lower it here if a change of
# case ever makes a trajectory diverge -- main() refuses non-finite results.
SGD_ROSENBROCK_LR = 1e-3
SGD_MLP_LR = 0.1

CASES = [
    ("sgd_plain", {
        "rosenbrock": sgd(SGD_ROSENBROCK_LR),
        "mlp": sgd(SGD_MLP_LR),
    }),
    ("sgd_momentum", {
        "rosenbrock": sgd(SGD_ROSENBROCK_LR, momentum=0.9, dampening=0.0),
        "mlp": sgd(SGD_MLP_LR, momentum=0.9, dampening=0.0),
    }),
    ("sgd_nesterov", {
        "rosenbrock": sgd(SGD_ROSENBROCK_LR, momentum=0.9, nesterov=True, weight_decay=1e-3),
        "mlp": sgd(SGD_MLP_LR, momentum=0.9, nesterov=True, weight_decay=1e-3),
    }),
    ("sgd_dampening", {
        "rosenbrock": sgd(SGD_ROSENBROCK_LR, momentum=0.9, dampening=0.1),
        "mlp": sgd(SGD_MLP_LR, momentum=0.9, dampening=0.1),
    }),
    ("adam", {
        "rosenbrock": adam("adam", 1e-2, weight_decay=0.0, amsgrad=False),
        "mlp": adam("adam", 1e-2, weight_decay=0.0, amsgrad=False),
    }),
    ("adam_amsgrad", {
        "rosenbrock": adam("adam", 1e-2, weight_decay=1e-2, amsgrad=True),
        "mlp": adam("adam", 1e-2, weight_decay=1e-2, amsgrad=True),
    }),
    ("adamw", {
        "rosenbrock": adam("adamw", 1e-2, weight_decay=1e-2, amsgrad=False),
        "mlp": adam("adamw", 1e-2, weight_decay=1e-2, amsgrad=False),
    }),
    ("adamw_amsgrad", {
        "rosenbrock": adam("adamw", 1e-2, weight_decay=1e-2, amsgrad=True),
        "mlp": adam("adamw", 1e-2, weight_decay=1e-2, amsgrad=True),
    }),
    ("adagrad", {
        "rosenbrock": adagrad(0.1, lr_decay=1e-3, initial_accumulator_value=0.1),
        "mlp": adagrad(0.1, lr_decay=1e-3, initial_accumulator_value=0.1),
    }),
    ("rmsprop", {
        "rosenbrock": rmsprop(1e-3, alpha=0.99),
        "mlp": rmsprop(1e-3, alpha=0.99),
    }),
    ("rmsprop_centered", {
        "rosenbrock": rmsprop(1e-3, alpha=0.99, centered=True, momentum=0.9, weight_decay=1e-3),
        "mlp": rmsprop(1e-3, alpha=0.99, centered=True, momentum=0.9, weight_decay=1e-3),
    }),
]

# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------

ROSENBROCK_INIT = [-1.5, 2.0]


def rosenbrock(p):
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 on a [2] tensor."""
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def run_rosenbrock(spec, dtype, build=None):
    """One [2] parameter tensor; returns the tensors to save.

    `build(spec, params)` makes the optimizer (default: build_optimizer, i.e.
    torch.optim); optim_fixtures_papers.py passes its own builder.
    """
    init = torch.tensor(ROSENBROCK_INIT, dtype=dtype)
    p = init.clone().requires_grad_(True)
    opt = (build or build_optimizer)(spec, [p])
    rows = [p.detach().clone()]
    for _ in range(STEPS):
        opt.zero_grad()
        rosenbrock(p).backward()
        opt.step()
        rows.append(p.detach().clone())
    trajectory = torch.stack(rows)  # [201, 2]; row t = after t steps
    with torch.no_grad():
        values = torch.stack([rosenbrock(r) for r in rows])  # [201]
    return {"init": init, "trajectory": trajectory, "values": values}


def mlp_problem():
    """Fixed data and the initial state dict (float32, as PyTorch creates them)."""
    torch.manual_seed(123)
    x = torch.randn(32, 8)
    y = torch.randint(0, 3, (32,))
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return x, y, init


def run_mlp(spec, dtype, build=None):
    """Full-batch cross-entropy training from the fixed float32 init cast to `dtype`.

    `build` as in run_rosenbrock.
    """
    x32, y, init32 = mlp_problem()
    # The float64 run starts from the exact float64 image of the float32 init/data;
    # the float32 run starts from those float32 values unchanged.
    x = x32.to(dtype)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in init32.items()}, strict=True)

    def snapshot(prefix):
        return {f"{prefix}.{k}": v.detach().clone() for k, v in model.state_dict().items()}

    out = {"x": x, "y": y.to(dtype)}
    out.update(snapshot("init"))
    opt = (build or build_optimizer)(spec, model.parameters())
    losses = []
    for step in range(STEPS):
        if step == SNAPSHOT_STEP:
            out.update(snapshot(f"step{SNAPSHOT_STEP}"))
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)  # mean over the batch
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
    out.update(snapshot("final"))
    out["losses"] = torch.stack(losses)  # [200]; loss before update t
    return out


PROBLEMS = {"rosenbrock": run_rosenbrock, "mlp": run_mlp}
DTYPES = {"f64": (torch.float64, ""), "f32": (torch.float32, "_f32")}


def summarize(problem, tensors):
    """(one-line summary, last f or loss) of a rosenbrock or mlp run; optim_fixtures_papers.py extends it."""
    if problem == "mlp":
        first, last = tensors["losses"][0].item(), tensors["losses"][-1].item()
        return f"loss {first:.4f} -> {last:.4f}", last
    first, last = tensors["values"][0].item(), tensors["values"][-1].item()
    end = tensors["trajectory"][-1].tolist()
    return f"f {first:.4g} -> {last:.4g} at [{end[0]:.4f}, {end[1]:.4f}]", last

# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="generate only cases whose name contains this substring")
    ap.add_argument("--out", default=OUT_DIR, help="output folder (default: the fixtures folder)")
    args = ap.parse_args()

    common.deterministic_torch()
    os.makedirs(args.out, exist_ok=True)

    failures = []
    for case, problem, spec, dname, dtype, suffix in common.iter_runs(CASES, DTYPES, args.only):
        tensors, finite = common.finish_tensors(PROBLEMS[problem](spec, dtype), dtype)
        fname = f"{case}_{problem}{suffix}.safetensors"
        save_file(tensors, os.path.join(args.out, fname), metadata=common.run_metadata(spec, problem, dname, STEPS))
        summary, last = summarize(problem, tensors)
        status = "ok " if finite else "NaN/inf"
        print(f"{status} {fname:45s} {spec:80s} {summary}")
        if not finite or not math.isfinite(last):
            failures.append(fname)

    if failures:
        print(f"non-finite trajectories: {failures}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
