#!/usr/bin/env python3
"""PyTorch state-dict fixtures for optlab's safetensors interop tests.

Two modes:

  Generate (default): write two reference models, each as a safetensors
  state dict with PyTorch's own key names plus an input/output pair:

      crates/optlab/tests/fixtures/torch_mlp.safetensors
      crates/optlab/tests/fixtures/torch_cnn.safetensors

  Check: load a safetensors state dict written by the Rust side into the same
  PyTorch architecture (strict=True), run its `__input` through the model and
  compare with its `__output`:

      python3 tools/reference/state_dict_fixture.py --check PATH [--arch mlp|cnn]

  Exits non-zero when the state dict does not load or the output differs.

Every file carries safetensors metadata {"arch": "<kind>:<description>"}, where
<kind> is `mlp` or `cnn`.  Keys starting with `__` are not model parameters.

Needs: torch, safetensors (numpy is pulled in by safetensors.torch).
Run by hand only; CI never runs it.
"""

import argparse
import os
import sys

import torch
from torch import nn
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import FIXTURES_DIR as FIXTURE_DIR, REPO_ROOT  # noqa: E402

# "<kind>:<description>" as stored in the `arch` metadata entry.
ARCH = {
    "mlp": "mlp:Sequential(Linear(64,32),ReLU,Linear(32,16),Tanh,Linear(16,10)) input [N,64] output [N,10]",
    "cnn": "cnn:Sequential(Conv2d(1,8,3,padding=1),ReLU,MaxPool2d(2),Conv2d(8,16,3,padding=1),ReLU,"
    "MaxPool2d(2),Flatten,Linear(64,10)) input [N,1,8,8] NCHW output [N,10]",
}

SEEDS = {"mlp": 0, "cnn": 1}
INPUT_SHAPES = {"mlp": (5, 64), "cnn": (3, 1, 8, 8)}


def build(kind):
    """Construct the architecture (float32, PyTorch default init from the current RNG)."""
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, 16),
            nn.Tanh(),
            nn.Linear(16, 10),
        )
    if kind == "cnn":
        # 8x8 -> conv -> 8x8 -> pool -> 4x4 -> conv -> 4x4 -> pool -> 2x2; 16*2*2 = 64 features.
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 2 * 2, 10),
        )
    raise ValueError(f"unknown architecture {kind!r}")


def generate(kind):
    """Seed, build the model, draw the input, and save state dict + __input/__output."""
    torch.manual_seed(SEEDS[kind])
    model = build(kind).float().eval()
    # The input is drawn right after the model, from the same seeded RNG stream.
    x = torch.rand(*INPUT_SHAPES[kind], dtype=torch.float32)
    with torch.no_grad():
        y = model(x)

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tensors["__input"] = x.contiguous()
    tensors["__output"] = y.contiguous()

    path = os.path.join(FIXTURE_DIR, f"torch_{kind}.safetensors")
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    save_file(tensors, path, metadata={"arch": ARCH[kind]})
    print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({os.path.getsize(path)} bytes)")
    for k, v in tensors.items():
        print(f"  {k:10s} {str(v.dtype):14s} {list(v.shape)}")


def infer_kind(metadata, tensors, forced):
    """Pick the architecture: --arch, else the `arch` metadata prefix, else tensor shapes."""
    if forced:
        return forced
    arch = (metadata or {}).get("arch", "")
    for kind in ARCH:
        if arch.split(":", 1)[0].strip().lower() == kind:
            return kind
    w0 = tensors.get("0.weight")
    if w0 is not None:
        return "cnn" if w0.dim() == 4 else "mlp"
    raise SystemExit("cannot tell the architecture: pass --arch mlp|cnn")


def check(path, forced_kind, atol, rtol):
    """Load a Rust-written state dict strictly and compare the forward pass."""
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}

    kind = infer_kind(metadata, tensors, forced_kind)
    params = {k: v for k, v in tensors.items() if not k.startswith("__")}
    print(f"{path}: arch={kind} metadata={metadata}")
    for k, v in tensors.items():
        print(f"  {k:10s} {str(v.dtype):14s} {list(v.shape)}")

    # Run the model in the dtype the file stores its weights in (f32 or f64).
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) != 1:
        print(f"FAIL: parameters have mixed dtypes {dtypes}")
        return 1
    dtype = dtypes.pop()

    model = build(kind).to(dtype).eval()
    try:
        result = model.load_state_dict(params, strict=True)
    except RuntimeError as err:
        print(f"FAIL: load_state_dict(strict=True) rejected the file:\n{err}")
        return 1
    print(f"load_state_dict(strict=True): ok {result}")

    if "__input" not in tensors:
        print("no __input tensor: state dict loads, nothing to compare")
        return 0
    x = tensors["__input"].to(dtype)
    with torch.no_grad():
        y = model(x)
    print(f"forward: input {list(x.shape)} -> output {list(y.shape)}")

    if "__output" not in tensors:
        print("no __output tensor: forward pass ran, nothing to compare")
        return 0
    expected = tensors["__output"].to(dtype)
    if expected.shape != y.shape:
        print(f"FAIL: __output shape {list(expected.shape)} != model output {list(y.shape)}")
        return 1
    diff = (y - expected).abs().max().item()
    print(f"max abs diff: {diff:.3e}")
    if not torch.allclose(y, expected, atol=atol, rtol=rtol):
        print(f"FAIL: outputs differ beyond atol={atol} rtol={rtol}")
        return 1
    print("OK")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="PATH", help="verify a safetensors state dict written by the Rust side")
    ap.add_argument("--arch", choices=sorted(ARCH), help="architecture for --check (default: from metadata)")
    ap.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance for --check (default 1e-5)")
    ap.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance for --check (default 1e-5)")
    args = ap.parse_args()

    # Single-threaded CPU kernels: reproducible reductions.
    torch.set_num_threads(1)

    if args.check:
        sys.exit(check(args.check, args.arch, args.atol, args.rtol))
    for kind in ("mlp", "cnn"):
        generate(kind)


if __name__ == "__main__":
    main()
