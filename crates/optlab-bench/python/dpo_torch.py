# The PyTorch side of `optlab-bench align`: one f-DPO step (reverse KL) of the same transformer as torch_train.py's
# language model, as the official code takes it: chosen and rejected sequences in one concatenated forward,
# log-probabilities of the completion tokens, -logsigmoid(beta * logits), backward, Adam (fused where available).
# Timed twice: on the 40 tokens of each sequence (the shapes optlab runs) and padded to the full context of 64.
# Prints one JSON object: {"padded": ms_per_step, "trimmed": ms_per_step}.
import json, sys
import torch
import torch.nn.functional as F
from torch_train import Lm, best_ms

torch.set_num_threads(int(sys.argv[1]))
cfg = json.loads(sys.argv[2])
steps = int(sys.argv[3])
vocab, ctx, c, heads, nl = cfg["dims"]
pairs, plen, clen, beta = cfg["pairs"], cfg["prompt_len"], cfg["completion_len"], cfg["beta"]
torch.manual_seed(0)
model = Lm(vocab, ctx, c, heads, nl)
try:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
except Exception:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
n = plen + clen
seq = torch.randint(0, vocab, (2 * pairs, n))
ref = -40.0 * torch.rand(2 * pairs)


def make_step(length):
    ids = torch.zeros(2 * pairs, length, dtype=torch.long)
    ids[:, :n] = seq
    labels = ids[:, 1:]
    mask = torch.zeros(2 * pairs, length - 1)
    mask[:, plen - 1:n - 1] = 1.0

    def step():
        opt.zero_grad(set_to_none=True)
        logp = model(ids)[:, :-1].log_softmax(-1)
        lp = (torch.gather(logp, 2, labels.unsqueeze(2)).squeeze(2) * mask).sum(-1)
        pc, pr = lp[:pairs], lp[pairs:]
        logits = (pc - ref[:pairs]) - (pr - ref[pairs:])
        loss = -F.logsigmoid(beta * logits).mean()
        loss.backward()
        opt.step()
    return step


out = {}
for name, length in [("padded", ctx), ("trimmed", n)]:
    out[name] = best_ms(make_step(length), steps)
print(json.dumps(out))
