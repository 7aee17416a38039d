"""The gradient penalty of the official off-policy GAIL code (P04, lionelblonde/liayn-pytorch, agents/sam_agent.py
`grad_pen`, restated here: interpolation eps*p + (1 - eps)*e, autograd.grad with create_graph, the l2 norm per row,
(norm - target).clamp(min=0)**2 one-sided or (norm - target)**2, times scale, mean), for crates/optlab/tests/rl.rs.

    pip install torch
    python3 tools/reference/penalty_fixtures.py

A tanh MLP discriminator 5-16-16-1 in float64 with fixed weights, policy and expert batches of 6 and fixed eps;
the penalty (scale 10, target 1, and target 0.2 so the one-sided clamp is active for some rows) and its gradient in
every discriminator parameter. Writes crates/optlab/tests/fixtures/rl/penalty.json.
"""

import json
import os

import common


def main():
    import torch

    common.deterministic_torch()
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    pol = torch.randn(6, 5, dtype=torch.float64)
    exp = torch.randn(6, 5, dtype=torch.float64) + 1.0
    eps = torch.rand(6, 1, dtype=torch.float64)
    flat = lambda t: t.detach().reshape(-1).tolist()
    out = {"params": {n: {"shape": list(p.shape), "values": flat(p)} for n, p in net.named_parameters()},
           "policy": flat(pol), "expert": flat(exp), "eps": flat(eps), "cases": []}
    for one_sided in [True, False]:
        for target in [1.0, 0.2]:
            interp = (eps * pol + (1 - eps) * exp).requires_grad_(True)
            score = net(interp)
            grads = torch.autograd.grad(score, [interp], grad_outputs=torch.ones_like(score), create_graph=True,
                                        retain_graph=True, only_inputs=True)[0]
            norm = grads.norm(2, dim=-1)
            pen = (norm - target).clamp(min=0).pow(2) if one_sided else (norm - target).pow(2)
            pen = 10.0 * pen.mean()
            # The last bias does not move the input gradient: its gradient is zero (None from autograd).
            g = torch.autograd.grad(pen, list(net.parameters()), allow_unused=True)
            g = [torch.zeros_like(p) if t is None else t for p, t in zip(net.parameters(), g)]
            out["cases"].append({"one_sided": one_sided, "target": target, "penalty": float(pen),
                                 "norms": flat(norm),
                                 "grad": {n: flat(t) for (n, _), t in zip(net.named_parameters(), g)}})
            print(one_sided, target, float(pen), flat(norm))
    os.makedirs(common.fixtures_dir("rl"), exist_ok=True)
    with open(common.fixtures_dir("rl", "penalty.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
