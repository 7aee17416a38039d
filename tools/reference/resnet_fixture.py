# Golden fixture for optlab's `resnet:` models (P01 normalizations inside basic residual blocks): a PyTorch module
# with the same structure and state-dict names, random weights and non-trivial BatchNorm/GroupNorm state, its
# outputs in eval and train mode and the running statistics after one train-mode forward.
#   resnet:channels=4-8,norm=bn+ws on [1, 8, 8] inputs, 10 outputs =
#   Sequential(Block(1->4), MaxPool2d(2), Block(4->8), MaxPool2d(2), Flatten, Linear(32, 10))
#   Block: h = relu(n1(conv1(x))); h = n2(conv2(h)); out = relu(h + shortcut(x)) (shortcut: 1x1 conv when the
#   channels change, else identity); convolutions weight-standardized as in P01's models
#   (joe-siyuan-qiao/Batch-Channel-Normalization@0244c3e imagenet/models/layers.py: (w - mean) / sqrt(var_unbiased
#   + 1e-5)); a 1x1 convolution from one channel (fan-in 1) is left plain.
# Run: python3 tools/reference/resnet_fixture.py   (needs torch, safetensors)
# Writes crates/optlab/tests/fixtures/resnet/{bn_ws,gn_ws}.safetensors and .json.
import json, os
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "../../crates/optlab/tests/fixtures/resnet")


class WSConv2d(nn.Conv2d):
    def forward(self, x):
        w = self.weight
        if w[0].numel() > 1:
            flat = w.view(w.size(0), -1)
            wc = flat - flat.mean(dim=1, keepdim=True)
            w = (wc / torch.sqrt(wc.var(dim=1, keepdim=True) + 1e-5)).view_as(w)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def norm(kind, c):
    return nn.BatchNorm2d(c) if kind == "bn" else nn.GroupNorm(2, c)


class Block(nn.Module):
    def __init__(self, ci, co, kind):
        super().__init__()
        self.conv1 = WSConv2d(ci, co, 3, padding=1)
        self.n1 = norm(kind, co)
        self.conv2 = WSConv2d(co, co, 3, padding=1)
        self.n2 = norm(kind, co)
        self.shortcut = WSConv2d(ci, co, 1) if ci != co else None

    def forward(self, x):
        h = F.relu(self.n1(self.conv1(x)))
        h = self.n2(self.conv2(h))
        s = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(h + s)


def flat(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().double().flatten()]}


for kind in ["bn", "gn"]:
    torch.manual_seed(11)
    m = nn.Sequential(Block(1, 4, kind), nn.MaxPool2d(2), Block(4, 8, kind), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(32, 10))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("n1.weight", "n2.weight")):
                p.uniform_(0.5, 1.5)
            elif name.endswith(("n1.bias", "n2.bias")):
                p.uniform_(-0.3, 0.3)
        for name, b in m.named_buffers():
            if name.endswith("running_mean"):
                b.uniform_(-0.2, 0.2)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("num_batches_tracked"):
                b.fill_(3)
    x = torch.randn(3, 1, 8, 8)
    sd = {k: v.clone().contiguous() for k, v in m.state_dict().items()}
    save_file(sd, f"{OUT}/{kind}_ws.safetensors")
    m.eval()
    y_eval = m(x)
    m.train()
    y_train = m(x)
    after = {k: flat(v) for k, v in m.state_dict().items() if "running" in k}
    json.dump({"spec": f"resnet:channels=4-8,norm={kind}+ws" + (",groups=2" if kind == "gn" else ""),
               "x": flat(x), "y_eval": flat(y_eval), "y_train": flat(y_train), "running_after_train": after,
               "keys": list(sd.keys()), "torch": torch.__version__},
              open(f"{OUT}/{kind}_ws.json", "w"))
    print(kind, "keys", len(sd), "y_eval[0,:3]", y_eval[0, :3].tolist())
