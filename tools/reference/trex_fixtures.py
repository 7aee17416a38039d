"""P07 (T-Rex) fixtures for crates/optlab/tests/explain.rs, from the reference implementations the official code
(FaisalHamman/TReX-Counterfactuals) runs:

  * the base counterfactuals: ART's ElasticNet attack (adversarial-robustness-toolbox 1.14.0 in the official
    requirements; 1.20's elastic_net.py is the same code) with the official IGD_L1 / IGD_L2 settings
    (confidence 0.5, beta 1 for the L1 rule and 0 for the L2 rule, learning rate 1e-3 -- the official
    IterativeSearch does not pass its eps_iter on, so IGD's default stands --, 60 iterations, 9 binary-search
    steps, initial constant 1e-3), on a PyTorch classifier whose outputs are softmax probabilities, as the
    official Keras model's are;
  * the Stability measure of `consistency/attack_utils.py: gaussian_volume` and its input gradient, for a fixed
    noise matrix;
  * the T-Rex loop of `batch_trex_search` (p = 2 steps along the unit gradient, projection onto the ball of
    radius `sns_eps` around the base counterfactual, clamping, keeping the last iterate still classified as the
    counterfactual class, stopping once the Stability computed before a step reaches tau), ported line by line
    to PyTorch with the noise of each step recorded (noise.safetensors: `stability` [K, 6] and
    `run<i>` [steps, K, 6]) so that optlab can replay it.

    pip install torch adversarial-robustness-toolbox
    python3 tools/reference/trex_fixtures.py

The classifier is an MLP 6-16-16-2 (ReLU) in float32 with fixed random weights; the points are uniform in [0, 1]^6
and classified 0. Writes crates/optlab/tests/fixtures/explain/trex.json and the model as mlp.safetensors.
"""

import json
import os

import common


def main():
    import numpy as np
    import torch
    from art.attacks.evasion import ElasticNet
    from art.estimators.classification import PyTorchClassifier
    from safetensors.torch import save_file

    common.deterministic_torch()
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 2))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(2.0)
    probs = torch.nn.Sequential(net, torch.nn.Softmax(dim=1))
    rng = np.random.default_rng(3)
    pool = rng.uniform(0.0, 1.0, size=(400, 6)).astype(np.float32)
    with torch.no_grad():
        p = probs(torch.from_numpy(pool)).numpy()
    x = pool[p.argmax(1) == 0][:5]
    assert len(x) == 5, "too few points of class 0"
    clf = PyTorchClassifier(model=probs, loss=torch.nn.CrossEntropyLoss(), input_shape=(6,), nb_classes=2,
                            clip_values=(0.0, 1.0))
    y0 = np.eye(2, dtype=np.float32)[np.zeros(len(x), dtype=int)]
    base = {}
    for rule, beta in [("L1", 1.0), ("L2", 0.0)]:
        attack = ElasticNet(classifier=clf, confidence=0.5, learning_rate=1e-3, beta=beta, max_iter=60,
                            binary_search_steps=9, initial_const=1e-3, batch_size=len(x), decision_rule=rule,
                            verbose=False)
        base[rule] = attack.generate(x, y=y0)

    def m1(z):
        return probs(z)[:, 1]

    # Stability and its gradient at the first L2 counterfactual, K = 64, sigma = 0.05.
    g = torch.Generator().manual_seed(5)
    k, sigma = 64, 0.05
    noise = torch.randn(k, 6, generator=g) * sigma
    xc = torch.tensor(base["L2"][:1], requires_grad=True)
    x_in1 = xc.repeat(k, 1)
    r = m1(x_in1 + noise).mean() - (m1(x_in1 + noise) - m1(x_in1)).abs().mean()
    (grad,) = torch.autograd.grad(r, xc)

    # T-Rex from each L2 counterfactual (batch 1, as the official main.py runs it).
    # tau below the official 0.75 so that some runs stop early (both exits of the loop are covered).
    tau, steps, step_size, radius = 0.52, 20, 0.01, 1.0
    lo, hi = 0.0, 1.0
    trex, noises = [], {"stability": noise}
    for i in range(len(x)):
        start = torch.tensor(base["L2"][i:i + 1])
        with torch.no_grad():
            y = int(probs(start).argmax(1))
        delta = start.clone()
        best = start.clone()
        objective, step, record = 0.0, 0, []
        while objective < tau and step < steps:
            nz = torch.randn(k, 6, generator=g) * sigma
            d = delta.clone().requires_grad_(True)
            rep = d.repeat(k, 1)
            out = m1(rep + nz)
            obj = out.mean() - (out - m1(rep)).abs().mean()
            (gr,) = torch.autograd.grad(obj, d)
            with torch.no_grad():
                unit = gr / (gr.pow(2).sum(-1, keepdim=True).sqrt() + 1e-7)
                delta = delta + step_size * unit - start
                norm = delta.pow(2).sum(-1, keepdim=True).sqrt() + 1e-7
                delta = start + delta * (radius / norm).clamp(0.0, 1.0)
                delta = delta.clamp(lo, hi)
                if int(probs(delta).argmax(1)) == y:
                    best = delta.clone()
            record.append((nz, float(obj.detach())))
            objective = float(obj)
            step += 1
        noises[f"run{i}"] = torch.stack([nz for nz, _ in record])
        trex.append({"start": start.reshape(-1).tolist(), "class": y, "stability": [v for _, v in record],
                     "counterfactual": best.reshape(-1).tolist()})

    out_dir = common.fixtures_dir("explain")
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(out_dir, "mlp.safetensors"))
    save_file({k: v.contiguous() for k, v in noises.items()}, os.path.join(out_dir, "noise.safetensors"))
    fx = {
        "x": x.reshape(-1).tolist(),
        "ead": {"L1": base["L1"].reshape(-1).tolist(), "L2": base["L2"].reshape(-1).tolist()},
        "stability": {"x": xc.detach().reshape(-1).tolist(), "k": k,
                      "value": float(r), "grad": grad.reshape(-1).tolist()},
        "trex": {"tau": tau, "steps": steps, "step_size": step_size, "radius": radius, "k": k, "sigma": sigma,
                 "runs": trex},
        "torch": torch.__version__,
    }
    path = os.path.join(out_dir, "trex.json")
    with open(path, "w") as f:
        json.dump(fx, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
