# The PyTorch side of `optlab-bench curvature`: gradient and exact Hessian-vector product (double backward) of
# the mean cross-entropy of MLP 784-1024-1024-10 on a batch of 256, and of the MNIST-size CNN (Conv 3x3 pad 1,
# ReLU, MaxPool 2 per stage, channels 32-64, Linear; batch 128). Prints {"grad_ms", "hvp_ms", "cnn_grad_ms",
# "cnn_hvp_ms"}.
import json, sys, time
import torch

torch.set_num_threads(int(sys.argv[1]))
reps = int(sys.argv[2])
torch.manual_seed(0)
nn = torch.nn


def case(model, x, y):
    params = list(model.parameters())
    v = [torch.ones_like(p) for p in params]

    def grad():
        loss = nn.functional.cross_entropy(model(x), y)
        return torch.autograd.grad(loss, params)

    def hvp():
        loss = nn.functional.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=v)

    return grad, hvp


mlp = case(
    nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)),
    torch.randn(256, 784),
    torch.arange(256) % 10,
)
cnn = case(
    nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
    ),
    torch.randn(128, 1, 28, 28),
    torch.arange(128) % 10,
)


def best(f):
    f()
    b = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b * 1e3


print(json.dumps({"grad_ms": best(mlp[0]), "hvp_ms": best(mlp[1]), "cnn_grad_ms": best(cnn[0]), "cnn_hvp_ms": best(cnn[1])}))
