# Golden fixture for optlab's `transformer:` language model (P12 setting): a PyTorch module of the same structure
# and state-dict names, with LayerNorm, the naive BatchNorm over all B*T positions, and the official PowerNorm
# (MaskPowerNorm of sIncerass/powernorm @ 9ea6226, pasted verbatim in norm_fixtures.py and imported from there),
# and in muP form (P42) with microsoft/mup itself (PyPI mup 1.0.0): its MuReadout head, mup.set_base_shapes from
# the model at the base width and twice it (which also rescales the biases), the example Transformer's
# attention scale sqrt(d_head,base)/d_head, and the lr / weight decay MuAdam gives every tensor.
#
#   Sequential(Embed(tok: Embedding(V, C), pos: Embedding(T, C)),
#              Block(norm1, attn(qkv: Linear(C, 3C), proj: Linear(C, C)), norm2, mlp(fc: Linear(C, rC), proj: Linear(rC, C)))
#              x layers, final norm, head Linear(C, V))
#   Block: h = x + attn(norm1(x)); out = h + mlp(norm2(h)); mlp = proj(gelu(fc(.))) with the exact (erf) GELU.
#   attn: q, k, v = qkv(x) split in that order, heads of C/H; softmax(q k^T * scale + causal mask) v; proj.
#   PowerNorm: MaskPowerNorm(C, group_num=H, warmup_iters=pn_warmup) on (T, B, C) (the official layout) with no
#   padding; BatchNorm: nn.BatchNorm1d(C) on the (B*T, C) rows.
#
# Each case: random weights (and perturbed norm affines), random token windows (for the `_pad` cases right-padded
# to random lengths: input id V, target ignored, padding left out of the BatchNorm/PowerNorm statistics); two
# training steps
# (train-mode forward, mean cross-entropy over all B*T positions, backward, plain SGD p -= lr * grad), recording
# the loss, every gradient and the buffers after each step; then an eval-mode forward. Also each layer alone on
# the first batch (`layers`): the input the model gives it, its output and the gradients of a random projection.
# Run: python3 tools/reference/transformer_fixture.py   (needs torch, numpy, safetensors, mup==1.0.0)
# Writes crates/optlab/tests/fixtures/transformer/<case>.safetensors (initial state dict) and <case>.json.
import copy
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import mup
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from norm_fixtures import MaskPowerNorm  # noqa: E402  (the official class, verbatim)

OUT = os.path.join(os.path.dirname(__file__), "../../crates/optlab/tests/fixtures/transformer")


# The padding of the batch being run, (B, T) bool with True at padding (the official mask convention), or None.
PAD = {"mask": None}


class SeqBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the B*T rows; with padding, the statistics of the non-padded rows only."""

    def forward(self, x):
        b, t, c = x.shape
        rows = x.reshape(b * t, c)
        if PAD["mask"] is None:
            return super().forward(rows).reshape(b, t, c)
        if self.training:
            kept = rows[~PAD["mask"].reshape(-1)]
            n = kept.shape[0]
            mean, var = kept.mean(0), kept.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        y = (rows - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        return y.reshape(b, t, c)


class SeqPowerNorm(MaskPowerNorm):
    def forward(self, x):
        return super().forward(x.transpose(0, 1), pad_mask=PAD["mask"]).transpose(0, 1)


def make_norm(kind, c, heads, pn_warmup):
    if kind == "ln":
        return nn.LayerNorm(c)
    if kind == "bn":
        return SeqBatchNorm(c)
    return SeqPowerNorm(c, group_num=heads, warmup_iters=pn_warmup)


class Embed(nn.Module):
    def __init__(self, vocab, ctx, c):
        super().__init__()
        self.tok = nn.Embedding(vocab, c)
        self.pos = nn.Embedding(ctx, c)

    def forward(self, ids):
        # The id V is padding: no token embedding.
        v = self.tok.num_embeddings
        tok = self.tok(ids.clamp(max=v - 1)) * (ids < v).unsqueeze(-1)
        return tok + self.pos.weight[: ids.shape[1]]


class Attn(nn.Module):
    def __init__(self, c, heads, scale):
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.heads, self.scale = heads, scale

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-1, -2) * self.scale
        att = att.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
        y = att.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Mlp(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc = nn.Linear(c, r * c)
        self.proj = nn.Linear(r * c, c)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, c, heads, r, kind, pn_warmup, scale):
        super().__init__()
        self.norm1 = make_norm(kind, c, heads, pn_warmup)
        self.attn = Attn(c, heads, scale)
        self.norm2 = make_norm(kind, c, heads, pn_warmup)
        self.mlp = Mlp(c, r)

    def forward(self, x):
        h = x + self.attn(self.norm1(x))
        return h + self.mlp(self.norm2(h))


def model(vocab, ctx, c, heads, r, layers, kind, pn_warmup, base=None):
    hd = c // heads
    scale = 1 / math.sqrt(hd) if base is None else math.sqrt(base // heads) / hd
    head = nn.Linear(c, vocab) if base is None else mup.MuReadout(c, vocab)
    return nn.Sequential(Embed(vocab, ctx, c), *[Block(c, heads, r, kind, pn_warmup, scale) for _ in range(layers)],
                         make_norm(kind, c, heads, pn_warmup), head)


def flat(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().double().flatten()]}


def per_layer(m, ids):
    """Each layer alone, in training mode from the initial state, on the input the model gives it (the padding
    in PAD): its output, the gradients of sum(output * r) for a fixed random r (own generator, so the batches
    stay as they were), and its buffers after that one forward."""
    g = torch.Generator().manual_seed(11)
    out, h = [], ids
    for i, layer in enumerate(m):
        lay = copy.deepcopy(layer).train()
        for src, dst in zip(layer.parameters(), lay.parameters()):
            if hasattr(src, "infshape"):  # muP's base shapes do not survive deepcopy
                dst.infshape = src.infshape
        x = h.detach().clone()
        if x.is_floating_point():
            x.requires_grad_()
        y = lay(x)
        r = torch.randn(y.shape, generator=g)
        (y * r).sum().backward()
        out.append({"x": flat(x), "y": flat(y), "r": flat(r),
                    "x_grad": None if x.grad is None else flat(x.grad),
                    "grads": {f"{i}.{n}": flat(p.grad) for n, p in lay.named_parameters()},
                    "buffers": {f"{i}.{n}": flat(b) for n, b in lay.named_buffers()}})
        h = y.detach()
    return out


CASES = [
    # name, norm, muP base (None = standard parametrization), right-padded sequences of random lengths
    ("ln", "ln", None, False),
    ("bn", "bn", None, False),
    ("pn", "pn", None, False),
    ("pn_mup", "pn", 8, False),
    ("ln_mup", "ln", 8, False),
    ("bn_pad", "bn", None, True),
    ("pn_pad", "pn", None, True),
]


def batch(padded):
    """Token ids and targets (B, CTX); with padding, id V and target -100 after a random length per row."""
    ids, tg = torch.randint(0, V, (B, CTX)), torch.randint(0, V, (B, CTX))
    pad = None
    if padded:
        lengths = torch.randint(1, CTX + 1, (B,))
        pad = torch.arange(CTX).unsqueeze(0) >= lengths.unsqueeze(1)
        ids[pad], tg[pad] = V, -100
    return ids, tg, pad
V, CTX, C, H, R, L, B, LR, PN_WARMUP = 11, 6, 16, 2, 2, 2, 3, 0.5, 1


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, kind, base, padded in CASES:
        torch.manual_seed(7)
        m = model(V, CTX, C, H, R, L, kind, PN_WARMUP, base)
        mup_groups = None
        if base is not None:
            mup.set_base_shapes(m, model(V, CTX, base, H, R, L, kind, PN_WARMUP, base),
                                delta=model(V, CTX, 2 * base, H, R, L, kind, PN_WARMUP, base))
            names = {id(p): n for n, p in m.named_parameters()}
            opt = mup.MuAdam(m.parameters(), lr=0.01, weight_decay=0.1)
            mup_groups = {names[id(p)]: {"lr": g["lr"], "weight_decay": g["weight_decay"],
                                         "ninf": p.infshape.ninf(), "width_mult": p.infshape.width_mult()}
                          for g in opt.param_groups for p in g["params"]}
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n.endswith(("norm1.weight", "norm2.weight")) or n == f"{L + 1}.weight":
                    p.uniform_(0.5, 1.5)
                elif n.endswith(("norm1.bias", "norm2.bias")) or n == f"{L + 1}.bias":
                    p.uniform_(-0.3, 0.3)
                elif base is not None and n.startswith(f"{L + 2}."):
                    p.uniform_(-0.2, 0.2)  # a nonzero readout, so every gradient is nontrivial
        sd = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
        save_file(sd, f"{OUT}/{name}.safetensors")
        batches = [batch(padded) for _ in range(2)]
        PAD["mask"] = batches[0][2]
        layers = per_layer(m, batches[0][0])
        steps = []
        m.train()
        for s, (ids_s, tg_s, pad_s) in enumerate(batches):
            PAD["mask"] = pad_s
            m.zero_grad()
            logits = m(ids_s)
            loss = F.cross_entropy(logits.reshape(-1, V), tg_s.reshape(-1), ignore_index=-100)
            loss.backward()
            steps.append({
                "ids": flat(ids_s), "targets": flat(tg_s), "logits": flat(logits), "loss": loss.item(),
                "grads": {n: flat(p.grad) for n, p in m.named_parameters()},
                "buffers": {n: flat(b) for n, b in m.named_buffers()},
            })
            with torch.no_grad():
                for p in m.parameters():
                    p -= LR * p.grad
        m.eval()
        x_eval, _, PAD["mask"] = batch(padded)
        spec = (f"transformer:layers={L},dim={C},heads={H},mlp={R},norm={kind}"
                + (f",pn_warmup={PN_WARMUP}" if kind == "pn" else "")
                + (f",param=mup,base={base}" if base is not None else ""))
        json.dump({"spec": spec, "vocab": V, "context": CTX, "lr": LR, "keys": list(sd.keys()), "steps": steps,
                   "mup_adam_groups": mup_groups, "layers": layers,
                   "eval": {"ids": flat(x_eval), "logits": flat(m(x_eval))}, "torch": torch.__version__},
                  open(f"{OUT}/{name}.json", "w"))
        print(name, spec, "loss", [round(s["loss"], 6) for s in steps], "keys", len(sd))


if __name__ == "__main__":
    main()
