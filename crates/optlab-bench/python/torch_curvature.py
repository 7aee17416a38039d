# The PyTorch side of `optlab-bench curvature`: gradient and exact Hessian-vector product (double backward) of
# the mean cross-entropy of MLP 784-1024-1024-10 on a batch of 256. Prints {"grad_ms", "hvp_ms"}.
import json, sys, time
import torch

torch.set_num_threads(int(sys.argv[1]))
reps = int(sys.argv[2])
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
params = list(model.parameters())
x, y = torch.randn(256, 784), torch.arange(256) % 10
v = [torch.ones_like(p) for p in params]


def grad():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, params)


def hvp():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, params, create_graph=True)
    return torch.autograd.grad(g, params, grad_outputs=v)


def best(f):
    f()
    b = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b * 1e3


print(json.dumps({"grad_ms": best(grad), "hvp_ms": best(hvp)}))
