"""PyTorch's `torch.nn.utils.spectral_norm` (one power iteration per training forward, eps 1e-12, dim 0) on an MLP
5-7-3 (tanh) with every Linear normalized, for crates/optlab/tests/spectral.rs.

    pip install torch
    python3 tools/reference/spectral_norm_fixtures.py

Records the state dict (names in PyTorch's order, weight_orig/weight_u/weight_v), then three training forwards on a
fixed batch (outputs, and u and v after each), the gradient of sum(y^2) of the third in every parameter, and one
eval forward (no power iteration). Float64. Writes crates/optlab/tests/fixtures/spectral_norm.json.
"""

import json
import os

import common


def main():
    import torch
    from torch.nn.utils import spectral_norm

    common.deterministic_torch()
    torch.manual_seed(11)
    net = torch.nn.Sequential(spectral_norm(torch.nn.Linear(5, 7)), torch.nn.Tanh(),
                              spectral_norm(torch.nn.Linear(7, 3))).double()
    # double() converts the buffers too; renormalize u and v as PyTorch keeps them unit vectors.
    with torch.no_grad():
        for m in (net[0], net[2]):
            m.weight_u.copy_(torch.nn.functional.normalize(m.weight_u, dim=0))
            m.weight_v.copy_(torch.nn.functional.normalize(m.weight_v, dim=0))
    flat = lambda t: t.detach().reshape(-1).tolist()
    state = [{"name": k, "shape": list(v.shape), "values": flat(v)} for k, v in net.state_dict().items()]
    x = torch.randn(4, 5, dtype=torch.float64)
    net.train()
    steps = []
    for _ in range(3):
        y = net(x)
        steps.append({"output": flat(y), "buffers": {k: flat(v) for k, v in net.state_dict().items() if k.endswith(("_u", "_v"))}})
    net.zero_grad()
    (y ** 2).sum().backward()
    grads = {n: flat(p.grad) for n, p in net.named_parameters()}
    net.eval()
    with torch.no_grad():
        y_eval = net(x)
    sigma = [float(torch.linalg.matrix_norm(m.weight_orig.detach(), ord=2)) for m in (net[0], net[2])]
    out = {"state": state, "x": flat(x), "train": steps, "grads": grads, "eval_output": flat(y_eval),
           "exact_sigma": sigma, "torch": torch.__version__}
    path = os.path.join(common.FIXTURES_DIR, "spectral_norm.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
