# The PyTorch side of `optlab-bench pde`: one Deep Ritz step of P22 in float64 with the same two-layer tanh
# network, problem and sampling as optlab's `pde ritz` defaults: -Δu + u³ = f on [0, 1]^d, u* = Σ sin(2πx_i)/√d,
# N fresh interior points and N/4 boundary points per step, the energy mean(½|∇u|² + ¼u⁴ - f u) plus
# β·2d·mean((u - g_β)²) with the Robin data g_β = u* + ∂_n u*/(2β), ∇u by autograd with create_graph, backward, Adam.
# Prints one JSON object: {"cases": [{"d": d, "width": m, "points": n, "ms": ms_per_step}, ...]}.
import json, math, sys
import torch
from torch_train import best_ms

torch.set_num_threads(int(sys.argv[1]))
cases = json.loads(sys.argv[2])
steps = int(sys.argv[3])
torch.manual_seed(0)
beta = 10.0
out = []
for case in cases:
    d, m, n = case["d"], case["width"], case["points"]
    net = torch.nn.Sequential(torch.nn.Linear(d, m), torch.nn.Tanh(), torch.nn.Linear(m, 1)).double()
    try:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    except Exception:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, foreach=True)
    w, scale = 2 * math.pi, 1 / math.sqrt(d)

    def exact(x):
        return scale * torch.sin(w * x).sum(1), scale * w * torch.cos(w * x)

    def step():
        opt.zero_grad(set_to_none=True)
        x = torch.rand(n, d, dtype=torch.float64, requires_grad=True)
        u = net(x)[:, 0]
        (gu,) = torch.autograd.grad(u.sum(), x, create_graph=True)
        us, _ = exact(x.detach())
        f = w * w * us + us**3
        energy = (0.5 * (gu * gu).sum(1) + 0.25 * u**4 - f * u).mean()
        nb = max(n // 4, 1)
        y = torch.rand(nb, d, dtype=torch.float64)
        face = torch.randint(0, 2 * d, (nb,))
        axis, side = face // 2, (face % 2).double()
        y[torch.arange(nb), axis] = side
        ub, gb = exact(y)
        g = ub + (2 * side - 1) * gb[torch.arange(nb), axis] / (2 * beta)
        energy = energy + beta * 2 * d * ((net(y)[:, 0] - g) ** 2).mean()
        energy.backward()
        opt.step()

    out.append({"d": d, "width": m, "points": n, "ms": best_ms(step, steps)})
print(json.dumps({"cases": out}))
