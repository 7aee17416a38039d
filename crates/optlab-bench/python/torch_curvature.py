# The PyTorch side of `optlab-bench curvature`: gradient and exact Hessian-vector product (double backward) of
# the mean cross-entropy of MLP 784-1024-1024-10 on a batch of 256, and of the MNIST-size CNN (Conv 3x3 pad 1,
# ReLU, MaxPool 2 per stage, channels 32-64, Linear; batch 128), and of the char-LM transformer of
# `optlab-bench train` (torch_train.Lm: 2 layers, dim 64, 4 heads; 32 windows of 64 tokens over 62 characters; its
# attention by SDPA's math backend, the one with a double backward on the CPU). Prints {"grad_ms", "hvp_ms",
# "cnn_grad_ms", "cnn_hvp_ms", "lm_grad_ms", "lm_hvp_ms"}.
import contextlib, json, sys, time
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch_train import Lm

torch.set_num_threads(int(sys.argv[1]))
reps = int(sys.argv[2])
torch.manual_seed(0)
nn = torch.nn


def case(model, x, y, second_order=contextlib.nullcontext):
    params = list(model.parameters())
    v = [torch.ones_like(p) for p in params]

    def loss():
        out = model(x)
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y)

    def grad():
        return torch.autograd.grad(loss(), params)

    def hvp():
        with second_order():
            g = torch.autograd.grad(loss(), params, create_graph=True)
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
torch.manual_seed(0)
lm = case(
    Lm(62, 64, 64, 4, 2),
    torch.randint(0, 62, (32, 64)),
    torch.randint(0, 62, (32 * 64,)),
    lambda: sdpa_kernel(SDPBackend.MATH),
)


def best(*fs):
    """The best time (ms) of each function over `reps` rounds that run each once in turn (after a warm-up round),
    as optlab's side does, so that a drift of the machine's speed moves both alike."""
    for f in fs:
        f()
    b = [float("inf")] * len(fs)
    for _ in range(reps):
        for i, f in enumerate(fs):
            t = time.perf_counter()
            f()
            b[i] = min(b[i], time.perf_counter() - t)
    return [x * 1e3 for x in b]


(grad_ms, hvp_ms), (cnn_grad_ms, cnn_hvp_ms), (lm_grad_ms, lm_hvp_ms) = best(*mlp), best(*cnn), best(*lm)
print(json.dumps({"grad_ms": grad_ms, "hvp_ms": hvp_ms, "cnn_grad_ms": cnn_grad_ms, "cnn_hvp_ms": cnn_hvp_ms,
                  "lm_grad_ms": lm_grad_ms, "lm_hvp_ms": lm_hvp_ms}))
