# The PyTorch side of `optlab-bench optim`: one optimizer step on a single f32 tensor of N parameters with a
# fixed gradient, fused (or foreach) implementations, given threads. Prints {"spec": ms_per_step}.
import json, sys, time
import torch

torch.set_num_threads(int(sys.argv[1]))
cases = json.loads(sys.argv[2])
n, steps = int(sys.argv[3]), int(sys.argv[4])
out = {}
for case in cases:
    p = [torch.nn.Parameter(torch.randn(n))]
    p[0].grad = torch.randn(n) * 1e-3
    try:
        opt = eval(case["ctor"])
    except Exception:
        continue  # this torch build lacks the fused/foreach variant
    for _ in range(3):
        opt.step()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            opt.step()
        best = min(best, (time.perf_counter() - t) / steps)
    out[case["name"]] = best * 1e3
print(json.dumps(out))
