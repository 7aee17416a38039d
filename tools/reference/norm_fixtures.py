#!/usr/bin/env python3
"""Golden fixtures for the normalization layers of P01 (Weight Standardization +
Batch-Channel Normalization) and P12 (PowerNorm), from the official code.

Writes crates/optlab/tests/fixtures/norm/golden.json (float32 computations).

Provenance (the official code is pasted VERBATIM below, between the
"BEGIN/END VERBATIM" markers, because none of it is an importable package:
the BCN/WS layers exist only as README snippets or inside training scripts,
and mask_powernorm.py lives inside a fairseq fork):

  * WS, variant "var_eps" (the one P01's BCN ImageNet models use):
      joe-siyuan-qiao/Batch-Channel-Normalization @ 0244c3e99417a511b60171fd86783c904d0132c0
      imagenet/models/layers.py  class Conv2d            -> WSConv2dVarEps below
  * WS, variant "std_eps" (the WS paper's own layer):
      joe-siyuan-qiao/WeightStandardization @ d81e50d05ad449fe4b4b0a70d964a28050961dbb
      README.md "Implementing WS as a layer / PyTorch" class Conv2d -> WSConv2dStdEps below
      (identical code: joe-siyuan-qiao/pytorch-classification @ e6355f829e85ac05a71b8889f4fff77b9ab95d0b
       models/layers.py, and Batch-Channel-Normalization DeepLabV3/deeplab.py)
  * BCN: Batch-Channel-Normalization @ 0244c3e README.md classes BCNorm, EstBN
      (imagenet/models/layers.py class GN is the same computation as
       BCNorm(estimate=False, eps=1e-5) with num_groups=32 and the BN named `pbn`;
       this script checks that GN and BCNorm agree bit for bit)
  * PowerNorm: sIncerass/powernorm @ 9ea6226a3203d5d6fcee07a5c6dec38ec6bc5e9f
      fairseq/modules/norms/mask_powernorm.py (whole file: GroupScaling1D,
      PowerFunction, MaskPowerNorm; torch-only, pasted unmodified, the
      stray tab before `var = x2.reshape(...)` included)
  * BatchNorm2d / GroupNorm: torch.nn (the installed torch).

The pasted code can be checked against the upstream files with
    python3 tools/reference/norm_fixtures.py --check-sources MIRROR_ROOT
where MIRROR_ROOT holds bare/normal git clones named like
`joe-siyuan-qiao+Batch-Channel-Normalization/repo` (each class's source text,
from inspect.getsource, must occur verbatim in `git show COMMIT:PATH`).

Run (from the repository root):
    python3 tools/reference/norm_fixtures.py            # writes the fixture
    python3 tools/reference/norm_fixtures.py --out /tmp/golden.json

Deps: torch (made with 2.15.0+cu132 on CPU), numpy. CPU only, single thread,
deterministic algorithms. Run by hand only; CI never runs it.

Fixture format: every tensor is {"shape": [...], "data": [flat row-major
float32 values]} (the values are the shortest decimal strings that round-trip
to the float32). Every loss is sum(output * R) with the recorded R, so every
"grad_*" is the VJP of the output with cotangent R. Grads are fresh for every
call (zeroed before each backward). See the module docstring of each section
below and the "doc" fields inside the JSON.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parameter import Parameter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BCN_REPO = ("joe-siyuan-qiao/Batch-Channel-Normalization", "0244c3e99417a511b60171fd86783c904d0132c0")
WS_REPO = ("joe-siyuan-qiao/WeightStandardization", "d81e50d05ad449fe4b4b0a70d964a28050961dbb")
PN_REPO = ("sIncerass/powernorm", "9ea6226a3203d5d6fcee07a5c6dec38ec6bc5e9f")


# =============================================================================
# BEGIN VERBATIM joe-siyuan-qiao/Batch-Channel-Normalization @ 0244c3e
#   imagenet/models/layers.py  (class Conv2d renamed WSConv2dVarEps on the
#   assignment below; the class body is unmodified)
# =============================================================================
class Conv2d(nn.Conv2d):

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, dilation=1, groups=1, bias=True):
        super(Conv2d, self).__init__(in_channels, out_channels, kernel_size, stride,
                 padding, dilation, groups, bias)

    def forward(self, x):
        weight = self.weight
        weight_mean = weight.mean(dim=1, keepdim=True).mean(dim=2,
                                  keepdim=True).mean(dim=3, keepdim=True)
        weight = weight - weight_mean
        std = torch.pow(weight.view(weight.size(0), -1).var(dim=1) + 1e-5, 0.5).view(-1, 1, 1, 1)
        weight = weight / std.expand_as(weight)
        return F.conv2d(x, weight, self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class GN(nn.Module):

    def __init__(self, num_channels, num_groups):
        super(GN, self).__init__()
        self.num_channels = num_channels
        self.num_groups = num_groups
        self.weight = Parameter(torch.ones(1, num_groups, 1))
        self.bias = Parameter(torch.zeros(1, num_groups, 1))
        self.pbn = nn.BatchNorm2d(num_channels)

    def forward(self, inp):
        out = self.pbn(inp)
        out = out.view(1, inp.size(0) * self.num_groups, -1)
        out = torch.batch_norm(out, None, None, None, None, True, 0, 1e-5, True)
        out = out.view(inp.size(0), self.num_groups, -1)
        out = self.weight * out + self.bias
        out = out.view_as(inp)
        return out
# END VERBATIM
WSConv2dVarEps = Conv2d


# =============================================================================
# BEGIN VERBATIM joe-siyuan-qiao/WeightStandardization @ d81e50d  README.md
#   (class Conv2d renamed WSConv2dStdEps on the assignment below; body unmodified)
# =============================================================================
class Conv2d(nn.Conv2d):

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, dilation=1, groups=1, bias=True):
        super(Conv2d, self).__init__(in_channels, out_channels, kernel_size, stride,
                 padding, dilation, groups, bias)

    def forward(self, x):
        weight = self.weight
        weight_mean = weight.mean(dim=1, keepdim=True).mean(dim=2,
                                  keepdim=True).mean(dim=3, keepdim=True)
        weight = weight - weight_mean
        std = weight.view(weight.size(0), -1).std(dim=1).view(-1, 1, 1, 1) + 1e-5
        weight = weight / std.expand_as(weight)
        return F.conv2d(x, weight, self.bias, self.stride,
                        self.padding, self.dilation, self.groups)
# END VERBATIM
WSConv2dStdEps = Conv2d
del Conv2d


# =============================================================================
# BEGIN VERBATIM joe-siyuan-qiao/Batch-Channel-Normalization @ 0244c3e  README.md
# =============================================================================
class BCNorm(nn.Module):

    def __init__(self, num_channels, num_groups, eps, estimate=False):
        super(BCNorm, self).__init__()
        self.num_channels = num_channels
        self.num_groups = num_groups
        self.eps = eps
        self.weight = Parameter(torch.ones(1, num_groups, 1))
        self.bias = Parameter(torch.zeros(1, num_groups, 1))
        if estimate:
            self.bn = EstBN(num_channels)
        else:
            self.bn = nn.BatchNorm2d(num_channels)

    def forward(self, inp):
        out = self.bn(inp)
        out = out.view(1, inp.size(0) * self.num_groups, -1)
        out = torch.batch_norm(out, None, None, None, None, True, 0, self.eps, True)
        out = out.view(inp.size(0), self.num_groups, -1)
        out = self.weight * out + self.bias
        out = out.view_as(inp)
        return out


class EstBN(nn.Module):

    def __init__(self, num_features):
        super(EstBN, self).__init__()
        self.num_features = num_features
        self.weight = Parameter(torch.ones(num_features))
        self.bias = Parameter(torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))
        self.register_buffer('num_batches_tracked', torch.tensor(0, dtype=torch.long))
        self.register_buffer('estbn_moving_speed', torch.zeros(1))

    def forward(self, inp):
        ms = self.estbn_moving_speed.item()
        if self.training:
            with torch.no_grad():
                inp_t = inp.transpose(0, 1).contiguous().view(self.num_features, -1)
                running_mean = inp_t.mean(dim=1)
                inp_t = inp_t - self.running_mean.view(-1, 1)
                running_var = torch.mean(inp_t * inp_t, dim=1)
                self.running_mean.data.mul_(1 - ms).add_(ms * running_mean.data)
                self.running_var.data.mul_(1 - ms).add_(ms * running_var.data)
        out = inp - self.running_mean.view(1, -1, 1, 1)
        out = out / torch.sqrt(self.running_var + 1e-5).view(1, -1, 1, 1)
        weight = self.weight.view(1, -1, 1, 1)
        bias = self.bias.view(1, -1, 1, 1)
        out = weight * out + bias
        return out
# END VERBATIM


# =============================================================================
# BEGIN VERBATIM sIncerass/powernorm @ 9ea6226  fairseq/modules/norms/mask_powernorm.py
#   (whole file below its imports; the imports are this script's own)
# =============================================================================
def _sum_ft(tensor):
    """sum over the first and last dimention"""
    return tensor.sum(dim=0).sum(dim=-1)

class GroupScaling1D(nn.Module):
    r"""Scales inputs by the second moment for the entire layer.
    """
    def __init__(self, eps=1e-5, group_num=4):
        super(GroupScaling1D, self).__init__()
        self.eps = eps
        self.group_num = group_num

    def extra_repr(self):
        return f'eps={self.eps}, group={self.group_num}'

    def forward(self, input):
        # calculate second moment
        # different group use different mean
        T, B, C = input.shape[0], input.shape[1], input.shape[2]
        Cg = C // self.group_num
        gn_input = input.contiguous().reshape(T, B, self.group_num, Cg)
        moment2 = torch.repeat_interleave( torch.mean(gn_input * gn_input, dim=3, keepdim=True), \
            repeats=Cg, dim=-1).contiguous().reshape(T, B, C)
        # divide out second moment
        return input / torch.sqrt(moment2 + self.eps)

def _unsqueeze_ft(tensor):
    """add new dimensions at the front and the tail"""
    return tensor.unsqueeze(0).unsqueeze(-1)

class PowerFunction(torch.autograd.Function):
    @staticmethod

    def forward(ctx, x, weight, bias, running_phi, eps, afwd, abkw, ema_gz, \
                debug, warmup_iters, current_iter, mask_x):
        ctx.eps = eps
        ctx.debug = debug
        current_iter = current_iter.item()
        ctx.current_iter = current_iter
        ctx.warmup_iters = warmup_iters
        ctx.abkw = abkw
        rmax = 1
        N, C, H, W = x.size()
        x2 = (mask_x * mask_x).mean(dim=0)

       	var = x2.reshape(1, C, 1, 1)
        if current_iter <= warmup_iters:
            z = x /(var + eps).sqrt()
        else:
            z = x /(running_phi + eps).sqrt()
            
        y = z
        ctx.save_for_backward(z, var, weight, ema_gz)

        if current_iter < warmup_iters:
            running_phi.copy_(running_phi * (current_iter-1)/current_iter + var.mean(dim=0, keepdim=True)/current_iter)
        running_phi.copy_(afwd*running_phi + (1-afwd)*var.mean(dim=0, keepdim=True))
        y = weight.reshape(1,C,1,1) * y + bias.reshape(1,C,1,1)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        eps = ctx.eps
        debug = ctx.debug
        current_iter = ctx.current_iter
        warmup_iters = ctx.warmup_iters
        abkw = ctx.abkw

        N, C, H, W = grad_output.size()
        z, var, weight, ema_gz = ctx.saved_variables

        y = z
        g = grad_output * weight.reshape(1, C, 1, 1)
        g = g * 1

        gz = (g * z).mean(dim=3).mean(dim=2).mean(dim=0)
        
        approx_grad_g = (g - (1 - abkw) * ema_gz * z)
        ema_gz.add_((approx_grad_g * z).mean(dim=3, keepdim=True).mean(dim=2, keepdim=True).mean(dim=0, keepdim=True))

        gx = 1. / torch.sqrt(var + eps) * approx_grad_g 
        return gx, (grad_output * y).sum(dim=3).sum(dim=2).sum(dim=0), grad_output.sum(dim=3).sum(dim=2).sum(dim=0), \
         None, None, None, None, None, None, None, None, None, None

class MaskPowerNorm(nn.Module):
    """
    An implementation of masked batch normalization, used for testing the numerical
    stability.
    """

    def __init__(self, num_features, eps=1e-5, alpha_fwd=0.9, alpha_bkw=0.9, \
                affine=True, warmup_iters=10000, group_num=1):
        super().__init__()

        self.num_features = num_features
        self.eps = eps
        self.affine = affine

        self.register_parameter('weight', nn.Parameter(torch.ones(num_features)))
        self.register_parameter('bias', nn.Parameter(torch.zeros(num_features)))
        self.register_buffer('running_phi', torch.ones(1,num_features,1,1))
        self.register_buffer('ema_gz', torch.zeros(1,num_features,1,1))
        self.register_buffer('iters', torch.zeros(1).type(torch.LongTensor))

        self.afwd = alpha_fwd
        self.abkw = alpha_bkw

        self.eps = eps
        self.debug = False
        self.warmup_iters = warmup_iters
        self.gp = GroupScaling1D(group_num=group_num)
        self.group_num = group_num

    def extra_repr(self):
        return '{num_features}, eps={eps}, alpha_fwd={afwd}, alpha_bkw={abkw}, ' \
               'affine={affine}, warmup={warmup_iters}, group_num={group_num}'.format(**self.__dict__)

    def forward(self, input, pad_mask=None, is_encoder=False):
        """
        input:  T x B x C -> B x C x T
             :  B x C x T -> T x B x C
        pad_mask: B x T (padding is True)
        """
        shaped_input = (len(input.shape) == 2)
        if shaped_input:
            input = input.unsqueeze(0)
        T, B, C = input.shape
        input = self.gp(input)

        # construct the mask_input, size to be (BxL) x C: L is the real length here
        if pad_mask is None:
            mask_input = input.clone()
        else:
            # Transpose the bn_mask (B x T -> T x B)
            bn_mask = ~pad_mask
            bn_mask = bn_mask.transpose(0, 1)

        if pad_mask is not None:
            pad_size = (~bn_mask).sum()
            mask_input = input[bn_mask, :]
        else:
            mask_input = input.clone()

        mask_input = mask_input.reshape(-1, self.num_features)

        input = input.permute(1, 2, 0).contiguous()
        input_shape = input.size()
        input = input.reshape(input.size(0), self.num_features, -1)
        input = input.unsqueeze(-1)

        if self.training:
            self.iters.copy_(self.iters + 1)
            output = PowerFunction.apply(input, self.weight, self.bias, self.running_phi, self.eps, \
                        self.afwd, self.abkw, self.ema_gz, self.debug, self.warmup_iters, self.iters, mask_input)
            
        else:
            N, C, H, W = input.size()
            var = self.running_phi
            output = input / (var + self.eps).sqrt()
            output = self.weight.reshape(1,C,1,1) * output + self.bias.reshape(1,C,1,1)

        output = output.reshape(input_shape)
        output = output.permute(2, 0, 1).contiguous()
        # Reshape it.
        if shaped_input:
            output = output.squeeze(0)

        return output
# END VERBATIM


# The VERBATIM blocks above, in order: (repo, commit), upstream path
PASTED_BLOCKS = [
    (BCN_REPO, "imagenet/models/layers.py"),
    (WS_REPO, "README.md"),
    (BCN_REPO, "README.md"),
    (PN_REPO, "fairseq/modules/norms/mask_powernorm.py"),
]


def verbatim_chunks():
    """Per VERBATIM block of this file: its top-level def/class chunks (source text)."""
    lines = open(os.path.abspath(__file__)).read().split("\n")
    blocks, cur = [], None
    for ln in lines:
        if ln.startswith("# BEGIN VERBATIM"):
            cur = []
        elif ln.startswith("# END VERBATIM"):
            blocks.append(cur)
            cur = None
        elif cur is not None and not ln.startswith("# ====") and not (cur == [] and ln.startswith("#")):
            cur.append(ln)
    out = []
    for b in blocks:
        chunks, c = [], None
        for ln in b:
            if ln.startswith(("class ", "def ")):
                if c:
                    chunks.append(c)
                c = [ln]
            elif c is not None:
                c.append(ln)
        if c:
            chunks.append(c)
        out.append(["\n".join(c).rstrip() for c in chunks])
    return out


def check_sources(root):
    ok = True
    blocks = verbatim_chunks()
    assert len(blocks) == len(PASTED_BLOCKS)
    for chunks, ((repo, commit), path) in zip(blocks, PASTED_BLOCKS):
        d = os.path.join(root, repo.replace("/", "+"), "repo")
        gitdir = os.path.join(d, ".git") if os.path.isdir(os.path.join(d, ".git")) else d
        text = subprocess.run(["git", "--git-dir", gitdir, "show", f"{commit}:{path}"],
                              check=True, capture_output=True, text=True).stdout
        for c in chunks:
            found = c in text
            ok &= found
            print(f"{'OK  ' if found else 'DIFF'} {c.split(chr(10))[0][:48]:48s} {repo}@{commit[:7]}:{path}")
    return ok


# =============================================================================
# Fixture helpers
# =============================================================================

def T(t):
    """Tensor -> {"shape", "data"} with float32 values as shortest round-trip decimals."""
    a = t.detach().cpu()
    if a.dtype in (torch.int64, torch.int32, torch.bool):
        return {"shape": list(a.shape), "data": [int(v) for v in a.reshape(-1).tolist()]}
    a = a.to(torch.float32).numpy().reshape(-1)
    assert np.isfinite(a).all()
    return {"shape": list(t.shape), "data": [float(str(v)) for v in a]}


def randn(g, *shape, scale=1.0, shift=0.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale + shift


@contextlib.contextmanager
def capture_conv_weight(store):
    """Record the weight F.conv2d actually receives (the standardized weight)."""
    orig = F.conv2d

    def wrapped(x, w, *a, **k):
        store.append(w.detach().clone())
        return orig(x, w, *a, **k)

    F.conv2d = wrapped
    try:
        yield
    finally:
        F.conv2d = orig


def zero_grads(m):
    for p in m.parameters():
        p.grad = None


def step(module, x, R, **kw):
    """One forward + backward of sum(module(x) * R); returns (y, dx)."""
    x = x.clone().requires_grad_(True)
    zero_grads(module)
    y = module(x, **kw)
    (y * R).sum().backward()
    return y.detach().clone(), x.grad.detach().clone()


def grads(module, names):
    return {f"grad_{n}": T(dict(module.named_parameters())[n].grad) for n in names}


# =============================================================================
# a) Weight Standardization
# =============================================================================

def ws_case(cls, variant, seed):
    g = torch.Generator().manual_seed(seed)
    # Both pasted classes are named Conv2d and their __init__ calls
    # super(Conv2d, self), looked up in this module's globals at call time.
    globals()["Conv2d"] = cls
    m = cls(4, 8, 3, padding=1, bias=True)
    del globals()["Conv2d"]
    with torch.no_grad():
        m.weight.copy_(randn(g, 8, 4, 3, 3, scale=0.3, shift=0.05))
        m.bias.copy_(randn(g, 8, scale=0.5))
    x = randn(g, 2, 4, 5, 5)
    R = randn(g, 2, 8, 5, 5)
    store = []
    with capture_conv_weight(store):
        y, dx = step(m, x, R)
    assert len(store) == 1
    return {
        "variant": variant,
        "formula": {
            "var_eps": "w_hat = (w - mean) / sqrt(var_unbiased(w - mean) + 1e-5)",
            "std_eps": "w_hat = (w - mean) / (std_unbiased(w - mean) + 1e-5)",
        }[variant],
        "seed": seed, "conv": {"stride": 1, "padding": 1, "dilation": 1, "groups": 1},
        "weight": T(m.weight), "bias": T(m.bias), "standardized_weight": T(store[0]),
        "x": T(x), "R": T(R), "y": T(y), "grad_x": T(dx),
        "grad_weight": T(m.weight.grad), "grad_bias": T(m.bias.grad),
    }


# =============================================================================
# b) BatchNorm2d, c) GroupNorm (torch.nn)
# =============================================================================

def batchnorm_case(seed):
    g = torch.Generator().manual_seed(seed)
    m = nn.BatchNorm2d(8, eps=1e-5, momentum=0.1, affine=True)
    with torch.no_grad():
        m.weight.copy_(randn(g, 8, scale=0.5, shift=1.0))
        m.bias.copy_(randn(g, 8, scale=0.5))
    x = randn(g, 4, 8, 3, 3, scale=1.5, shift=0.3)
    R = randn(g, 4, 8, 3, 3)
    m.train()
    y, dx = step(m, x, R)
    out = {"seed": seed, "hparams": {"eps": 1e-5, "momentum": 0.1, "affine": True,
                                     "init_running_mean": 0.0, "init_running_var": 1.0},
           "weight": T(m.weight), "bias": T(m.bias), "x": T(x), "R": T(R),
           "train": {"y": T(y), "grad_x": T(dx), **grads(m, ["weight", "bias"]),
                     "running_mean": T(m.running_mean), "running_var": T(m.running_var),
                     "num_batches_tracked": int(m.num_batches_tracked)}}
    rm = randn(g, 8, scale=0.3)
    rv = randn(g, 8).abs() + 0.5
    with torch.no_grad():
        m.running_mean.copy_(rm)
        m.running_var.copy_(rv)
    m.eval()
    y, dx = step(m, x, R)
    out["eval"] = {"running_mean": T(rm), "running_var": T(rv), "x": "same as x", "R": "same as R",
                   "y": T(y), "grad_x": T(dx), **grads(m, ["weight", "bias"])}
    return out


def groupnorm_case(seed):
    g = torch.Generator().manual_seed(seed)
    m = nn.GroupNorm(4, 8, eps=1e-5, affine=True)
    with torch.no_grad():
        m.weight.copy_(randn(g, 8, scale=0.5, shift=1.0))
        m.bias.copy_(randn(g, 8, scale=0.5))
    x = randn(g, 4, 8, 3, 3, scale=1.5, shift=0.3)
    R = randn(g, 4, 8, 3, 3)
    m.train()
    y, dx = step(m, x, R)
    out = {"seed": seed, "hparams": {"num_groups": 4, "num_channels": 8, "eps": 1e-5, "affine": True},
           "weight": T(m.weight), "bias": T(m.bias), "x": T(x), "R": T(R),
           "train": {"y": T(y), "grad_x": T(dx), **grads(m, ["weight", "bias"])}}
    m.eval()
    y_eval, _ = step(m, x, R)
    assert torch.equal(y_eval, y)
    out["eval"] = {"note": "GroupNorm has no running state: eval output == train output", "y": T(y_eval)}
    return out


# =============================================================================
# d) BCN (BCNorm, and BCNorm(estimate=True) with EstBN)
# =============================================================================

BCN_PARAMS = ["bn.weight", "bn.bias", "weight", "bias"]


def bcn_init(m, g):
    with torch.no_grad():
        m.bn.weight.copy_(randn(g, 8, scale=0.5, shift=1.0))
        m.bn.bias.copy_(randn(g, 8, scale=0.5))
        m.weight.copy_(randn(g, 1, 4, 1, scale=0.5, shift=1.0))
        m.bias.copy_(randn(g, 1, 4, 1, scale=0.5))


def bcn_params(m):
    return {n: T(p) for n, p in m.named_parameters()}


def bn_out_hook(m, store):
    return m.bn.register_forward_hook(lambda _m, _i, o: store.append(o.detach().clone()))


def bcn_case(seed):
    g = torch.Generator().manual_seed(seed)
    m = BCNorm(num_channels=8, num_groups=4, eps=1e-5, estimate=False)
    bcn_init(m, g)
    x = randn(g, 4, 8, 3, 3, scale=1.5, shift=0.3)
    R = randn(g, 4, 8, 3, 3)

    # layers.GN is the same computation (num_groups given explicitly; BN named pbn)
    gn = GN(8, 4)
    gn.load_state_dict({k.replace("bn.", "pbn."): v for k, v in m.state_dict().items()})
    gn_y, gn_dx = step(gn, x, R)

    m.train()
    inner = []
    h = bn_out_hook(m, inner)
    y, dx = step(m, x, R)
    h.remove()
    assert torch.equal(y, gn_y) and torch.equal(dx, gn_dx), "layers.GN != README BCNorm"
    assert torch.equal(gn.pbn.running_var, m.bn.running_var)
    out = {"seed": seed,
           "hparams": {"num_channels": 8, "num_groups": 4, "eps": 1e-5, "estimate": False,
                       "bn": "nn.BatchNorm2d(8): eps 1e-5, momentum 0.1, affine, running 0/1",
                       "group_step_eps": 1e-5},
           "params": bcn_params(m), "x": T(x), "R": T(R),
           "train": {"y": T(y), "bn_out": T(inner[0]), "grad_x": T(dx), **grads(m, BCN_PARAMS),
                     "bn.running_mean": T(m.bn.running_mean), "bn.running_var": T(m.bn.running_var),
                     "bn.num_batches_tracked": int(m.bn.num_batches_tracked)}}
    rm = randn(g, 8, scale=0.3)
    rv = randn(g, 8).abs() + 0.5
    with torch.no_grad():
        m.bn.running_mean.copy_(rm)
        m.bn.running_var.copy_(rv)
    m.eval()
    inner = []
    h = bn_out_hook(m, inner)
    y, dx = step(m, x, R)
    h.remove()
    out["eval"] = {"bn.running_mean": T(rm), "bn.running_var": T(rv), "x": "same as x", "R": "same as R",
                   "y": T(y), "bn_out": T(inner[0]), "grad_x": T(dx), **grads(m, BCN_PARAMS)}
    return out


def bcn_est_case(seed, moving_speed, steps=3):
    g = torch.Generator().manual_seed(seed)
    m = BCNorm(num_channels=8, num_groups=4, eps=1e-5, estimate=True)
    bcn_init(m, g)
    with torch.no_grad():
        m.bn.estbn_moving_speed.fill_(moving_speed)
    out = {"seed": seed,
           "hparams": {"num_channels": 8, "num_groups": 4, "eps": 1e-5, "estimate": True,
                       "estbn_moving_speed": moving_speed, "estbn_eps": 1e-5,
                       "init_running_mean": 0.0, "init_running_var": 1.0,
                       "note": "estbn_moving_speed buffer defaults to 0 (no update); set here explicitly"},
           "params": bcn_params(m), "steps": []}
    m.train()
    for s in range(steps):
        x = randn(g, 4, 8, 3, 3, scale=1.5, shift=0.3 + 0.2 * s)
        R = randn(g, 4, 8, 3, 3)
        inner = []
        h = bn_out_hook(m, inner)
        y, dx = step(m, x, R)
        h.remove()
        out["steps"].append({"x": T(x), "R": T(R), "y": T(y), "bn_out": T(inner[0]), "grad_x": T(dx),
                             **grads(m, BCN_PARAMS),
                             "bn.running_mean": T(m.bn.running_mean), "bn.running_var": T(m.bn.running_var),
                             "bn.num_batches_tracked": int(m.bn.num_batches_tracked)})
    m.eval()
    x = randn(g, 4, 8, 3, 3, scale=1.5, shift=0.3)
    R = randn(g, 4, 8, 3, 3)
    rm0, rv0 = m.bn.running_mean.clone(), m.bn.running_var.clone()
    y, dx = step(m, x, R)
    assert torch.equal(rm0, m.bn.running_mean) and torch.equal(rv0, m.bn.running_var)
    out["eval"] = {"note": "running stats = those after the last train step; unchanged by eval",
                   "x": T(x), "R": T(R), "y": T(y), "grad_x": T(dx), **grads(m, BCN_PARAMS)}
    return out


# =============================================================================
# e) PowerNorm (MaskPowerNorm)
# =============================================================================

def powernorm_case(seed, T_, B, C, group_num, warmup_iters, calls, pad_lengths=None):
    g = torch.Generator().manual_seed(seed)
    hp = {"num_features": C, "eps": 1e-5, "alpha_fwd": 0.9, "alpha_bkw": 0.9, "affine": True,
          "warmup_iters": warmup_iters, "group_num": group_num, "group_scaling_eps": 1e-5}
    m = MaskPowerNorm(C, eps=hp["eps"], alpha_fwd=hp["alpha_fwd"], alpha_bkw=hp["alpha_bkw"],
                      affine=True, warmup_iters=warmup_iters, group_num=group_num)
    with torch.no_grad():
        m.weight.copy_(randn(g, C, scale=0.5, shift=1.0))
        m.bias.copy_(randn(g, C, scale=0.5))
    pad_mask = None
    if pad_lengths is not None:  # valid length per batch row; pad_mask B x T, True = padding
        pad_mask = torch.arange(T_)[None, :] >= torch.tensor(pad_lengths)[:, None]
    out = {"seed": seed, "layout": "input/output (T, B, C); pad_mask (B, T), true = padding",
           "T": T_, "B": B, "C": C, "hparams": hp,
           "weight": T(m.weight), "bias": T(m.bias),
           "pad_mask": T(pad_mask) if pad_mask is not None else None,
           "init": {"running_phi": T(m.running_phi), "ema_gz": T(m.ema_gz), "iters": 0},
           "calls": []}
    m.train()
    for k in range(calls):
        x = randn(g, T_, B, C, scale=1.0 + 0.3 * k, shift=0.2 * (k - 1))
        R = randn(g, T_, B, C)
        gp_out = []
        h = m.gp.register_forward_hook(lambda _m, _i, o: gp_out.append(o.detach().clone()))
        phi_before = m.running_phi.clone()
        y, dx = step(m, x, R, pad_mask=pad_mask)
        h.remove()
        it = int(m.iters.item())
        out["calls"].append({
            "iter": it,
            "branch": ("forward uses batch psi2; running_phi: cumulative average then EMA"
                       if it < warmup_iters else
                       "forward uses batch psi2; running_phi: EMA" if it == warmup_iters else
                       "forward uses running_phi from before this call; running_phi: EMA"),
            "x": T(x), "R": T(R), "group_scaled_x": T(gp_out[0]),
            "running_phi_before": T(phi_before),
            "y": T(y), "grad_x": T(dx), **grads(m, ["weight", "bias"]),
            "running_phi": T(m.running_phi), "ema_gz": T(m.ema_gz)})
    m.eval()
    x = randn(g, T_, B, C)
    R = randn(g, T_, B, C)
    it0 = int(m.iters.item())
    y, dx = step(m, x, R, pad_mask=pad_mask)
    assert int(m.iters.item()) == it0
    out["eval"] = {"note": "state = after the last train call; eval changes nothing (iters not incremented)",
                   "x": T(x), "R": T(R), "y": T(y), "grad_x": T(dx), **grads(m, ["weight", "bias"])}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=common.fixtures_dir("norm", "golden.json"))
    ap.add_argument("--check-sources", metavar="MIRROR_ROOT",
                    help="only compare the pasted code with the upstream files and exit")
    args = ap.parse_args()
    if args.check_sources:
        sys.exit(0 if check_sources(args.check_sources) else 1)

    common.deterministic_torch()
    torch.manual_seed(0)
    fx = {
        "meta": {
            "generator": "tools/reference/norm_fixtures.py",
            "torch_version": torch.__version__, "numpy_version": np.__version__, "dtype": "float32",
            "sources": {
                "ws_var_eps": f"{BCN_REPO[0]}@{BCN_REPO[1]}:imagenet/models/layers.py Conv2d",
                "ws_std_eps": f"{WS_REPO[0]}@{WS_REPO[1]}:README.md Conv2d",
                "bcn": f"{BCN_REPO[0]}@{BCN_REPO[1]}:README.md BCNorm/EstBN (== imagenet/models/layers.py GN)",
                "powernorm": f"{PN_REPO[0]}@{PN_REPO[1]}:fairseq/modules/norms/mask_powernorm.py MaskPowerNorm",
                "batchnorm2d/groupnorm": f"torch.nn {torch.__version__}",
            },
            "tensor_format": "{shape, data}: data flat, row-major",
            "loss": "sum(output * R); grad_* = gradient of that loss (fresh per call)",
        },
        "ws": {"var_eps": ws_case(WSConv2dVarEps, "var_eps", 101),
               "std_eps": ws_case(WSConv2dStdEps, "std_eps", 101)},
        "batchnorm2d": batchnorm_case(202),
        "groupnorm": groupnorm_case(303),
        "bcn": bcn_case(404),
        "bcn_estimated": bcn_est_case(505, moving_speed=0.1, steps=3),
        "powernorm": {
            "g1_nomask": powernorm_case(606, 5, 3, 8, group_num=1, warmup_iters=2, calls=4),
            "g2_mask": powernorm_case(707, 5, 3, 8, group_num=2, warmup_iters=2, calls=4,
                                      pad_lengths=[5, 3, 4]),
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
