"""Helpers shared by the scripts in tools/reference/.

Standard library only at import time (the NumPy-only verify scripts import it
too); torch and numpy are imported inside the functions that need them.

  * paths: REPO_ROOT, FIXTURES_DIR, fixtures_dir(), vendor_dir()
  * spec strings: fmt_value(), make_spec(), parse_spec(), parse_spec_loose()
  * vendored reference files: sha256(), check_reference(), load_file_module()
  * generator loops: deterministic_torch(), iter_runs(), finish_tensors(), run_metadata()
  * NumPy gradients of the shared problems: rosenbrock_grad(), sinv_grad()
"""

import hashlib
import importlib.util
import os
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES_DIR = os.path.join(REPO_ROOT, "crates", "optlab", "tests", "fixtures")
VENDOR_ROOT = os.environ.get("OPTLAB_REF_VENDOR", "/tmp/optlab_ref_vendor")


def fixtures_dir(*parts):
    """crates/optlab/tests/fixtures[/parts...]."""
    return os.path.join(FIXTURES_DIR, *parts)


def vendor_dir(*parts):
    """The vendor folder ($OPTLAB_REF_VENDOR or /tmp/optlab_ref_vendor)[/parts...]."""
    return os.path.join(VENDOR_ROOT, *parts)


# ---------------------------------------------------------------------------
# Spec strings `name:key=value,...`
# ---------------------------------------------------------------------------


def fmt_value(v):
    """Format a hyperparameter: `true`/`false`, or the shortest float repr with a plain exponent (1e-8)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    s = repr(float(v))
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


def make_spec(spec_keys, name, params, fmt=None, bool_keys=None):
    """Build a spec string, insisting that every key of optimizer `name` (spec_keys[name]) is given.

    fmt(key, value) formats one value (default: fmt_value).  With bool_keys,
    also checks that exactly those keys carry booleans.
    """
    keys = spec_keys[name]
    missing = [k for k in keys if k not in params]
    extra = [k for k in params if k not in keys]
    assert not missing and not extra, f"{name}: missing {missing}, unknown {extra}"
    if bool_keys is not None:
        for k in keys:
            assert isinstance(params[k], bool) == (k in bool_keys), f"{name}.{k}: wrong type"
    fmt = fmt or (lambda _k, v: fmt_value(v))
    return f"{name}:" + ",".join(f"{k}={fmt(k, params[k])}" for k in keys)


def parse_spec(spec, spec_keys, bool_keys=()):
    """Parse `name:key=value,...` into (name, {key: float|bool}), checking the keys against spec_keys[name]."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in rest.split(","):
        k, _, v = item.partition("=")
        if k in bool_keys:
            assert v in ("true", "false"), f"bad boolean {item!r} in {spec!r}"
            params[k] = v == "true"
        else:
            params[k] = float(v)
    assert list(params) == spec_keys[name], f"spec {spec!r} does not list exactly {spec_keys[name]}"
    return name, params


def parse_spec_loose(spec):
    """`name:key=value,...` -> (name, {key: float|bool}) without a key list (the verify scripts)."""
    name, rest = spec.split(":", 1)
    hp = {}
    for item in rest.split(","):
        k, v = item.split("=")
        hp[k] = (v == "true") if v in ("true", "false") else float(v)
    return name, hp


# ---------------------------------------------------------------------------
# Vendored reference files
# ---------------------------------------------------------------------------


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_reference(path, want, enforce, require=True):
    """Exit if `path` is missing (when require); on a SHA-256 other than `want`, exit (enforce) or warn."""
    if require and not os.path.isfile(path):
        sys.exit(f"missing {path}: see this script's docstring for where to get it")
    got = sha256(path)
    if got != want:
        msg = f"{path}: sha256 {got} differs from the reference version's {want}"
        if enforce:
            sys.exit(msg + " (pass --no-hash-check to use it anyway)")
        print("WARNING: " + msg, file=sys.stderr)


def load_file_module(path, name):
    """Import a single .py file as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------
# Generator loops
# ---------------------------------------------------------------------------


def deterministic_torch():
    """Single-threaded, deterministic CPU kernels so reruns reproduce the files bit for bit."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def iter_runs(cases, dtypes, only=None):
    """Yield (case, problem, spec, dname, dtype, suffix) for every case whose name contains `only`."""
    for case, specs in cases:
        if only and only not in case:
            continue
        for problem, spec in specs.items():
            for dname, (dtype, suffix) in dtypes.items():
                yield case, problem, spec, dname, dtype, suffix


def finish_tensors(tensors, dtype):
    """Cast every tensor to `dtype`, make it contiguous; returns (tensors, all finite)."""
    import torch

    tensors = {k: v.to(dtype).contiguous() for k, v in tensors.items()}
    finite = all(torch.isfinite(v).all().item() for v in tensors.values())
    return tensors, finite


def run_metadata(spec, problem, dname, steps, **extra):
    """The metadata of a trajectory file: spec, problem, dtype, steps, torch_version, then `extra`."""
    import torch

    return {"spec": spec, "problem": problem, "dtype": dname, "steps": str(steps),
            "torch_version": torch.__version__, **extra}


# ---------------------------------------------------------------------------
# NumPy gradients of the shared problems
# ---------------------------------------------------------------------------


def rosenbrock_grad(p):
    """Gradient of (1-x)^2 + 100 (y-x^2)^2."""
    import numpy as np

    x, y = p
    return np.array([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


def sinv_grad(w, u, t):
    """d/dW_i of (u_i.w_i/|w_i| - t_i)^2 = 2 r_i (u_i/|w_i| - (u_i.w_i) w_i/|w_i|^3): orthogonal to w_i."""
    import numpy as np

    n = np.sqrt((w * w).sum(axis=1, keepdims=True))
    s = (u * w).sum(axis=1, keepdims=True)
    r = s / n - t[:, None]
    return 2.0 * r * (u / n - s * w / n ** 3)
