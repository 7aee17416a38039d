# One DP-SGD step with opacus (GradSampleModule + DPOptimizer: per-sample gradients, flat clipping at 1, noise
# multiplier 1, plain SGD) against one plain SGD step, on MLPs with ReLU, float32; the same cases as
# `optlab-bench dp`. Prints one JSON line {case: {"plain_ms": .., "private_ms": ..}}; exit 3 without opacus.
#   python dp_step_opacus.py THREADS CASES_JSON STEPS
import json, sys, time, warnings

threads, cases, steps = int(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
try:
    import torch
    import torch.nn as nn
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
except Exception as e:  # noqa: BLE001
    print(json.dumps({"error": f"{e}"}))
    sys.exit(3)
warnings.simplefilter("ignore")
torch.set_num_threads(threads)


def mlp(dims):
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def best_ms(step):
    for _ in range(5):
        step()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t) / steps)
    return best * 1e3


out = {}
for c in cases:
    dims, b = c["dims"], c["batch"]
    torch.manual_seed(0)
    x = torch.randn(b, dims[0])
    y = torch.arange(b) % dims[-1]
    loss_fn = nn.CrossEntropyLoss()
    model = mlp(dims)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def plain():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    gsm = GradSampleModule(mlp(dims))
    dpo = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.01), noise_multiplier=1.0, max_grad_norm=1.0,
                      expected_batch_size=b)

    def private():
        dpo.zero_grad(set_to_none=True)
        loss_fn(gsm(x), y).backward()
        dpo.step()

    out[c["name"]] = {"plain_ms": best_ms(plain), "private_ms": best_ms(private)}
print(json.dumps(out))
