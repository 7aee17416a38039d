"""The official SSO step (P34), for crates/optlab/tests/sso.rs.

    pip install torch numpy
    mkdir -p /tmp/optlab_ref_vendor/sso/optimizers
    # WilderLavington/Target-Based-Surrogates-For-Stochastic-Optimization @ 205dde6ab514f1eea3472326b67397ea8982e551:
    cp helpers.py /tmp/optlab_ref_vendor/sso/
    cp optimizers/sgd_fmdopt.py optimizers/lsopt.py /tmp/optlab_ref_vendor/sso/optimizers/
    python3 tools/reference/sso_fixtures.py

Runs the official SGD_FMDOpt (its LSOpt inner line search: step reset to 10 each outer step, expand_coeff=2 raised
to 1/n_batches_per_epoch, c=0.1, beta_update=0.9, as main.py passes them) in float64 on a linear model nn.Linear(3, 1)
with MSELoss(reduction='sum') over a fixed batch of 12 examples, for three cases (m, eta, n_batches_per_epoch,
eta_schedule), three outer steps each, and writes crates/optlab/tests/fixtures/sso/linear_mse.json: the data, the
initial weight and bias, and the weight and bias after every outer step. No source patches.
"""

import argparse
import json
import os
import sys

import common

REF_FILES = {
    "helpers.py": "baa402bdfb171488c734396a4dacd8048ac7fa8ce575e43f05d108707e4b4fc4",
    "optimizers/lsopt.py": "e632dc83d28fc6d17effbe68131e261034c974eea6ff75f3135ace923857bc48",
    "optimizers/sgd_fmdopt.py": "6367b0b8d39a87efca7ee7febd355d95fe141bfc24898e888cd5deec897f315a",
}
CASES = [
    {"m": 1, "eta": 1.0, "batches": 1, "schedule": "constant"},
    {"m": 5, "eta": 0.5, "batches": 1, "schedule": "constant"},
    {"m": 4, "eta": 2.0, "batches": 3, "schedule": "stochastic"},
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-hash-check", action="store_true")
    args = ap.parse_args()
    vendor = common.vendor_dir("sso")
    for f, h in REF_FILES.items():
        common.check_reference(os.path.join(vendor, f), h, not args.no_hash_check)
    sys.path.insert(0, vendor)
    import numpy as np
    import torch
    from optimizers.sgd_fmdopt import SGD_FMDOpt
    from optimizers.lsopt import LSOpt

    common.deterministic_torch()
    rng = np.random.default_rng(34)
    x = rng.normal(size=(12, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=12)
    w0 = rng.normal(size=(1, 3)) * 0.5
    b0 = rng.normal(size=1) * 0.5
    X = torch.tensor(x)
    Y = torch.tensor(y).reshape(-1, 1)
    out = {"x": x.ravel().tolist(), "y": y.tolist(), "weight": w0.ravel().tolist(), "bias": b0.tolist(), "cases": []}
    for case in CASES:
        model = torch.nn.Linear(3, 1).double()
        with torch.no_grad():
            model.weight.copy_(torch.tensor(w0))
            model.bias.copy_(torch.tensor(b0))
        loss_func = torch.nn.MSELoss(reduction="sum")
        opt = SGD_FMDOpt(model.parameters(), m=case["m"], eta=case["eta"], eta_schedule=case["schedule"],
                         inner_optim=LSOpt,
                         surr_optim_args={"lr": 1.0, "n_batches_per_epoch": case["batches"], "c": 0.1,
                                          "beta_update": 0.9, "expand_coeff": 2.0},
                         reset_lr_on_step=True, total_steps=3)
        steps = []
        for _ in range(3):
            opt.zero_grad()
            opt.step(lambda call_backward=False: (loss_func, X, Y, model))
            steps.append({"weight": model.weight.detach().ravel().tolist(), "bias": model.bias.detach().tolist(),
                          "inner_steps": opt.state["inner_steps"]})
        out["cases"].append({**case, "steps": steps})
        print(case, "final loss", float(loss_func(model(X), Y)))
    os.makedirs(common.fixtures_dir("sso"), exist_ok=True)
    with open(common.fixtures_dir("sso", "linear_mse.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
