#!/usr/bin/env python3
"""Independent NumPy re-implementation of the torch.optim update rules.

Replays every float64 Rosenbrock fixture in crates/optlab/tests/fixtures/optim/
from its `spec` metadata, using the analytic gradient and plain NumPy, and
compares against the stored trajectory.  It documents, as executable code,
exactly what the Rust optimizers have to compute to match PyTorch, and checks
that the fixture files are self-consistent.

    python3 tools/reference/verify_optim_fixtures.py [--tol 1e-12]

Needs: numpy, safetensors (no torch).  Run by hand only; CI never runs it.
"""

import argparse
import glob
import os
import sys

import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (paths, spec parsing, NumPy gradients; no torch)

REPO_ROOT = common.REPO_ROOT
FIXTURE_DIR = common.fixtures_dir("optim")


rosenbrock_grad = common.rosenbrock_grad  # gradient of (1-x)^2 + 100 (y-x^2)^2
parse_spec = common.parse_spec_loose  # `name:key=value,...` -> (name, {key: float|bool})


class Optimizer:
    """One optimizer's state for a single parameter vector; step(p, g, t) returns the new p."""

    def __init__(self, spec, n):
        self.name, self.hp = parse_spec(spec)
        self.buf = None                      # sgd / rmsprop momentum buffer
        self.m = np.zeros(n)                 # adam first moment
        self.v = np.zeros(n)                 # adam second moment / rmsprop square_avg
        self.vmax = np.zeros(n)              # amsgrad running max
        self.ga = np.zeros(n)                # centered rmsprop grad average
        self.acc = np.full(n, self.hp.get("initial_accumulator_value", 0.0))  # adagrad sum

    def step(self, p, g, t):
        h = self.hp
        if self.name == "sgd":
            g = g + h["weight_decay"] * p
            if h["momentum"] != 0:
                # First step: the buffer is the gradient itself (no dampening).
                if self.buf is None:
                    self.buf = g.copy()
                else:
                    self.buf = h["momentum"] * self.buf + (1 - h["dampening"]) * g
                g = g + h["momentum"] * self.buf if h["nesterov"] else self.buf
            return p - h["lr"] * g

        if self.name in ("adam", "adamw"):
            if self.name == "adamw":
                p = p * (1 - h["lr"] * h["weight_decay"])    # decoupled decay
            else:
                g = g + h["weight_decay"] * p                # L2 in the gradient
            self.m = self.m + (1 - h["beta1"]) * (g - self.m)  # torch uses lerp
            self.v = h["beta2"] * self.v + (1 - h["beta2"]) * g * g
            v = self.v
            if h["amsgrad"]:
                self.vmax = np.maximum(self.vmax, self.v)
                v = self.vmax
            denom = np.sqrt(v) / np.sqrt(1 - h["beta2"] ** t) + h["eps"]
            return p - (h["lr"] / (1 - h["beta1"] ** t)) * self.m / denom

        if self.name == "adagrad":
            g = g + h["weight_decay"] * p
            clr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
            self.acc = self.acc + g * g
            return p - clr * g / (np.sqrt(self.acc) + h["eps"])

        if self.name == "rmsprop":
            g = g + h["weight_decay"] * p
            self.v = h["alpha"] * self.v + (1 - h["alpha"]) * g * g
            if h["centered"]:
                self.ga = self.ga + (1 - h["alpha"]) * (g - self.ga)  # torch uses lerp
                avg = np.sqrt(self.v - self.ga * self.ga) + h["eps"]
            else:
                avg = np.sqrt(self.v) + h["eps"]
            if h["momentum"] > 0:
                self.buf = (np.zeros_like(p) if self.buf is None else h["momentum"] * self.buf) + g / avg
                return p - h["lr"] * self.buf
            return p - h["lr"] * g / avg

        raise ValueError(f"unknown optimizer {self.name!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tol", type=float, default=1e-12, help="max abs difference allowed (default 1e-12)")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(FIXTURE_DIR, "*_rosenbrock.safetensors")))
    if not files:
        sys.exit(f"no fixtures under {FIXTURE_DIR}: run optim_fixtures.py first")
    bad = 0
    for path in files:
        with safe_open(path, framework="np") as f:
            spec = f.metadata()["spec"]
            init, traj = f.get_tensor("init"), f.get_tensor("trajectory")
        opt = Optimizer(spec, init.size)
        p, rows = init.copy(), [init.copy()]
        for t in range(1, traj.shape[0]):
            p = opt.step(p, rosenbrock_grad(p), t)
            rows.append(p.copy())
        diff = np.abs(np.array(rows) - traj).max()
        ok = diff <= args.tol
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(path):42s} max abs diff {diff:.2e}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
