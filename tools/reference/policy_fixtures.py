"""Policy log-probabilities, gradients and Hessian-vector products from PyTorch, for crates/optlab/tests/rl.rs.

    pip install torch numpy
    python3 tools/reference/policy_fixtures.py

For a softmax policy (MLP 4-8-2, tanh; torch.distributions.Categorical) and a Gaussian policy (MLP 3-8-2, tanh,
state-independent log_std; torch.distributions.Normal, log-probabilities summed over the action), in float64:
the weights, a batch of 5 observations, actions and advantages, log pi(a|s), the gradient of the REINFORCE
objective J = mean(advantage * log pi(a|s)) in every parameter, and H v for a fixed direction v by double
backward (torch.autograd.grad with create_graph=True). Writes crates/optlab/tests/fixtures/rl/policy.json.
"""

import json
import os

import common


def main():
    import torch

    common.deterministic_torch()
    torch.manual_seed(16)
    out = {}
    for name, obs_dim, n_out, gaussian in [("softmax", 4, 2, False), ("gaussian", 3, 2, True)]:
        net = torch.nn.Sequential(torch.nn.Linear(obs_dim, 8), torch.nn.Tanh(), torch.nn.Linear(8, n_out)).double()
        params = dict(net.named_parameters())
        if gaussian:
            params["log_std"] = torch.nn.Parameter(torch.tensor([-0.3, 0.2], dtype=torch.float64))
        obs = torch.randn(5, obs_dim, dtype=torch.float64)
        adv = torch.randn(5, dtype=torch.float64)
        if gaussian:
            actions = torch.randn(5, n_out, dtype=torch.float64)
            dist = torch.distributions.Normal(net(obs), params["log_std"].exp())
            logp = dist.log_prob(actions).sum(-1)
        else:
            actions = torch.tensor([0, 1, 1, 0, 1])
            logp = torch.distributions.Categorical(logits=net(obs)).log_prob(actions)
        objective = (adv * logp).mean()
        names = list(params)
        grads = torch.autograd.grad(objective, [params[n] for n in names], create_graph=True)
        v = [torch.randn_like(params[n]) for n in names]
        dot = sum((g * vi).sum() for g, vi in zip(grads, v))
        hv = torch.autograd.grad(dot, [params[n] for n in names])
        flat = lambda t: t.detach().reshape(-1).tolist()
        out[name] = {
            "names": names,
            "params": {n: {"shape": list(params[n].shape), "values": flat(params[n])} for n in names},
            "obs": flat(obs), "actions": flat(actions.double()), "advantages": flat(adv),
            "log_prob": flat(logp), "grad": {n: flat(g) for n, g in zip(names, grads)},
            "v": {n: flat(t) for n, t in zip(names, v)}, "hv": {n: flat(t) for n, t in zip(names, hv)},
        }
    os.makedirs(common.fixtures_dir("rl"), exist_ok=True)
    with open(common.fixtures_dir("rl", "policy.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
