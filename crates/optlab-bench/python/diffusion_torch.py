# The PyTorch side of `optlab-bench diffusion`: the same score network (an MLP of the 2-D point and 8 sinusoidal
# time features, hidden 128-128-128, exact GELU) and VP process. (1) One denoising-score-matching step: a batch of
# 256 training rows, t ~ U(1e-3, 1), eps ~ N(0, I), x_t = alpha x0 + sigma eps, |net(x_t, t) - eps|^2, backward,
# Adam (fused where available). (2) Euler-Maruyama on the reverse SDE: 2000 samples, 1000 steps, no grad.
# Prints one JSON object: {"dsm_ms": ms_per_step, "em_samples_per_s": samples_per_second}.
import json, math, sys, time
import torch
from torch_train import best_ms

torch.set_num_threads(int(sys.argv[1]))
cfg = json.loads(sys.argv[2])
steps, n, em_steps, batch = int(sys.argv[3]), cfg["n"], cfg["em_steps"], cfg["batch"]
beta_min, beta_max, t_min = 0.1, 20.0, 1e-3
torch.manual_seed(0)
layers, width = [], 2 + 8
for h in cfg["hidden"]:
    layers += [torch.nn.Linear(width, h), torch.nn.GELU()]
    width = h
net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2))
try:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
except Exception:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
data = torch.randn(2000, 2) * 4.0
k = torch.arange(1, 5, dtype=torch.float32) * math.pi


def integral(t):
    return beta_min * t + 0.5 * (beta_max - beta_min) * t * t


def features(x, t):
    a = t[:, None] * k[None, :]
    return torch.cat([x, torch.stack([a.sin(), a.cos()], dim=2).reshape(len(t), 8)], dim=1)


def dsm_step():
    opt.zero_grad(set_to_none=True)
    x0 = data[torch.randint(0, len(data), (batch,))]
    t = t_min + (1 - t_min) * torch.rand(batch)
    alpha = torch.exp(-0.5 * integral(t))[:, None]
    sigma = torch.sqrt(-torch.expm1(-integral(t)))[:, None]
    eps = torch.randn(batch, 2)
    loss = ((net(features(alpha * x0 + sigma * eps, t)) - eps) ** 2).sum() / batch
    loss.backward()
    opt.step()


@torch.no_grad()
def em():
    x = torch.randn(n, 2)
    h = (1 - t_min) / em_steps
    for i in range(em_steps):
        t = 1.0 - i * h
        beta = beta_min + t * (beta_max - beta_min)
        sigma = math.sqrt(-math.expm1(-integral(t)))
        score = -net(features(x, torch.full((n,), t))) / sigma
        x = x - (-0.5 * beta * x - beta * score) * h
        if i + 1 < em_steps:
            x = x + math.sqrt(beta * h) * torch.randn(n, 2)
    return x


dsm = best_ms(dsm_step, steps)
start = time.perf_counter()
em()
print(json.dumps({"dsm_ms": dsm, "em_samples_per_s": n / (time.perf_counter() - start)}))
