# The PyTorch side of `optlab bench train`: the same MLP training step (forward, cross-entropy, backward,
# AdamW fused where available) on random data, 2 threads. Prints one JSON object: {"shape": ms_per_step}.
import json, sys, time
import torch

torch.set_num_threads(int(sys.argv[1]))
cases = json.loads(sys.argv[2])
steps = int(sys.argv[3])
out = {}
for case in cases:
    dims, batch = case["dims"], case["batch"]
    torch.manual_seed(0)
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    except Exception:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    x = torch.randn(batch, dims[0])
    y = torch.randint(0, dims[-1], (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t) / steps)
    out[case["name"]] = best * 1e3
print(json.dumps(out))
