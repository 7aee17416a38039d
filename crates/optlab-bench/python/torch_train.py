# The PyTorch side of `optlab-bench train`: the same training step (forward, cross-entropy, backward, AdamW
# fused where available) on the same shapes, 2 threads: MLPs and CNNs (Conv 3x3 pad 1, ReLU, MaxPool 2 per stage,
# Linear) on random data, and the pre-norm transformer of
# optlab's `transformer:` model (LayerNorm, causal attention by F.scaled_dot_product_attention, exact GELU).
# Prints one JSON object: {"case": ms_per_step}; with a fourth argument `memory` and the cases [warm-up, case],
# {"case": peak MiB} instead (one case per process).
import ctypes, gc, json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.fc, self.out = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.heads = heads

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, c // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.norm2(x))))


class Lm(nn.Module):
    def __init__(self, vocab, ctx, c, heads, layers):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, c), nn.Embedding(ctx, c)
        self.blocks = nn.Sequential(*[Block(c, heads) for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(c), nn.Linear(c, vocab)

    def forward(self, ids):
        h = self.tok(ids) + self.pos.weight[: ids.shape[1]]
        return self.head(self.norm(self.blocks(h)))

def best_ms(step, steps):
    """Milliseconds per call of `step`: five warm-up calls, then the best of 3 repetitions of `steps` calls."""
    for _ in range(5):
        step()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t) / steps)
    return best * 1e3


def build(case):
    """The model, batch and AdamW step of one case (seeded)."""
    dims, batch = case["dims"], case["batch"]
    torch.manual_seed(0)
    if case["kind"] == "lm":
        vocab, ctx, c, heads, nl = dims
        model = Lm(vocab, ctx, c, heads, nl)
        x = torch.randint(0, vocab, (batch, ctx))
        y = torch.randint(0, vocab, (batch * ctx,))
    elif case["kind"] == "cnn":
        (c, h, w), stages, classes = dims[:3], dims[3:-1], dims[-1]
        x = torch.randn(batch, c, h, w)
        layers = []
        for co in stages:
            layers += [nn.Conv2d(c, co, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = co, h // 2, w // 2
        model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, classes))
        y = torch.randint(0, classes, (batch,))
    else:
        layers = []
        for i in range(len(dims) - 1):
            layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        x = torch.randn(batch, dims[0])
        y = torch.randint(0, dims[-1], (batch,))
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    except Exception:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y)
        loss.backward()
        opt.step()

    return step


def status_kib(field):
    """A field of /proc/self/status in KiB (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def release_free_memory():
    """Hands glibc's free heap memory back to the OS (optlab's side releases its allocators' caches), so that a
    case's peak counts the memory it needs, not what importing torch and the warm-up left free in the heap."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_added_mib(run):
    """Peak resident memory that `run` adds to this process, in MiB: the high-water mark while it runs (reset
    first through /proc/self/clear_refs) less the resident size before. The same definition as optlab's side."""
    before = status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    run()
    peak = status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024.0


def main():
    torch.set_num_threads(int(sys.argv[1]))
    cases = json.loads(sys.argv[2])
    steps = int(sys.argv[3])
    memory = len(sys.argv) > 4 and sys.argv[4] == "memory"
    out = {}
    if memory:
        # [warm-up, case], in a process of their own: two steps of the tiny warm-up case load the libraries'
        # kernels first; then the peak of building the case and taking `steps` steps.
        warm, case = cases
        step = build(warm)
        step()
        step()
        del step
        gc.collect()
        release_free_memory()

        def run():
            step = build(case)
            for _ in range(steps):
                step()

        out[case["name"]] = peak_added_mib(run)
    for case in [] if memory else cases:
        out[case["name"]] = best_ms(build(case), steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
