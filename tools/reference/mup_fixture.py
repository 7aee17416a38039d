# Golden fixture for optlab's muP (P42) against microsoft/mup itself (PyPI `mup` 1.0.0, the package of
# microsoft/mup@1981497): base shapes, per-tensor learning rates and weight decay of MuAdam, MuAdamW and MuSGD, and
# the training trajectories they produce.
#
#   Sequential(Linear(8, 16), ReLU, Linear(16, 16), ReLU, MuReadout(16, 3)) in float64, base shapes from the
#   same network at width 4 (base) and 8 (delta): mup.set_base_shapes(model, base, delta=delta), which also
#   rescales the Linear biases and the MuReadout parameters (their values after that are the saved state dict).
#   optlab's equivalent: mlp:hidden=16-16,act=relu,param=mup,base=4.
#
# Per optimizer: every parameter's infshape (ninf, width_mult, fanin/fanout ratio) and the lr and weight decay of
# its param group, then 4 steps of mean cross-entropy on fixed random batches, the parameters after each step.
# Run: python3 tools/reference/mup_fixture.py   (needs torch, safetensors, mup==1.0.0)
# Writes crates/optlab/tests/fixtures/mup/mlp.safetensors (initial state dict) and mlp.json.
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from mup import MuAdam, MuAdamW, MuReadout, MuSGD, set_base_shapes
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "../../crates/optlab/tests/fixtures/mup")


def net(w):
    return nn.Sequential(nn.Linear(8, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), MuReadout(w, 3)).double()


def flat(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().double().flatten()]}


OPTIMIZERS = [
    ("adam", "adam:lr=0.01,weight_decay=0.1", lambda ps: MuAdam(ps, lr=0.01, weight_decay=0.1)),
    ("adamw", "adamw:lr=0.01,weight_decay=0.1", lambda ps: MuAdamW(ps, lr=0.01, weight_decay=0.1)),
    ("sgd", "sgd:lr=0.05,momentum=0.9,weight_decay=0.001",
     lambda ps: MuSGD(ps, lr=0.05, momentum=0.9, weight_decay=0.001)),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(3)
    model = net(16)
    set_base_shapes(model, net(4), delta=net(8))
    with torch.no_grad():
        model[4].weight.uniform_(-0.3, 0.3)  # a nonzero readout, so every gradient is nontrivial
    init = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    save_file(init, f"{OUT}/mlp.safetensors")
    names = {id(p): n for n, p in model.named_parameters()}
    infshapes = {
        n: {"ninf": p.infshape.ninf(), "width_mult": p.infshape.width_mult(),
            "fanin_fanout_mult_ratio": p.infshape.fanin_fanout_mult_ratio() if p.dim() >= 2 else None}
        for n, p in model.named_parameters()
    }
    batches = [(torch.randn(5, 8, dtype=torch.float64), torch.randint(0, 3, (5,))) for _ in range(4)]
    cases = []
    for key, spec, make in OPTIMIZERS:
        model.load_state_dict(init)
        opt = make(model.parameters())
        groups = {names[id(p)]: {"lr": g["lr"], "weight_decay": g["weight_decay"]}
                  for g in opt.param_groups for p in g["params"]}
        steps = []
        for x, y in batches:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            steps.append({n: flat(p) for n, p in model.named_parameters()})
        cases.append({"key": key, "spec": spec, "groups": groups, "steps": steps})
        print(key, {n: (round(g["lr"], 6), round(g["weight_decay"], 6)) for n, g in groups.items()})
    json.dump({"model": "mlp:hidden=16-16,act=relu,param=mup,base=4", "inputs": 8, "outputs": 3,
               "infshapes": infshapes, "batches": [{"x": flat(x), "y": y.tolist()} for x, y in batches],
               "cases": cases, "torch": torch.__version__},
              open(f"{OUT}/mlp.json", "w"))


if __name__ == "__main__":
    main()
