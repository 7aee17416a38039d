#!/usr/bin/env python3
"""Replays crates/optlab/tests/fixtures/norm/golden.json in float64 NumPy, forward
AND hand-written backward, from the written specification of each op (no torch).

It is an executable statement of the rules that norm_fixtures.py recorded from
the official code: WS (both variants), BatchNorm2d, GroupNorm, BCN, BCN with
EstBN, and MaskPowerNorm (GroupScaling1D + PowerFunction's approximate
backward).  Exits 1 on any mismatch (tolerance: |a-b| <= 2e-4 * (1 + |b|),
float32 fixture vs float64 replay).

Usage: python3 tools/reference/verify_norm_fixtures.py [path/to/golden.json]
Deps: numpy.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FAIL = []
TOL = 2e-4


def A(t):
    return np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])


def check(name, got, want):
    want = A(want) if isinstance(want, dict) else np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    err = np.abs(got - want) / (1.0 + np.abs(want))
    ok = err.max() <= TOL
    if not ok:
        FAIL.append(name)
    print(f"{'ok  ' if ok else 'FAIL'} {name:55s} max rel err {err.max():.2e}")


# ---------------------------------------------------------------- conv2d (stride 1)
def conv2d(x, w, b, pad):
    N, Ci, H, W = x.shape
    Co, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
    cols = np.stack([xp[:, :, i:i + Ho, j:j + Wo] for i in range(kh) for j in range(kw)], axis=2)
    # cols: N, Ci, kh*kw, Ho, Wo
    y = np.einsum("nckhw,ock->nohw", cols, w.reshape(Co, Ci, kh * kw)) + b[None, :, None, None]
    return y, cols


def conv2d_backward(gy, x, w, cols, pad):
    N, Ci, H, W = x.shape
    Co, _, kh, kw = w.shape
    Ho, Wo = gy.shape[2:]
    dw = np.einsum("nohw,nckhw->ock", gy, cols).reshape(w.shape)
    db = gy.sum(axis=(0, 2, 3))
    dcols = np.einsum("nohw,ock->nckhw", gy, w.reshape(Co, Ci, kh * kw))
    dxp = np.zeros((N, Ci, H + 2 * pad, W + 2 * pad))
    for k, (i, j) in enumerate([(i, j) for i in range(kh) for j in range(kw)]):
        dxp[:, :, i:i + Ho, j:j + Wo] += dcols[:, :, k]
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, db


def verify_ws(c, variant):
    w, b, x, R = A(c["weight"]), A(c["bias"]), A(c["x"]), A(c["R"])
    Co = w.shape[0]
    wf = w.reshape(Co, -1)
    n = wf.shape[1]
    wc = wf - wf.mean(1, keepdims=True)
    var_u = (wc ** 2).sum(1, keepdims=True) / (n - 1)           # unbiased
    if variant == "var_eps":
        s = np.sqrt(var_u + 1e-5)
        ds_dvar = 0.5 / s
    else:
        s = np.sqrt(var_u) + 1e-5
        ds_dvar = 0.5 / np.sqrt(var_u)
    wh = (wc / s).reshape(w.shape)
    check(f"ws/{variant}/standardized_weight", wh, c["standardized_weight"])
    y, cols = conv2d(x, wh, b, 1)
    check(f"ws/{variant}/y", y, c["y"])
    dx, dwh, db = conv2d_backward(R, x, wh, cols, 1)
    G = dwh.reshape(Co, -1)
    # wh = wc / s(var_u(wc)); dvar_u/dwc = 2 wc / (n-1); then subtract the mean (centering)
    dwc = G / s - wc * (G * wc).sum(1, keepdims=True) / s ** 2 * ds_dvar * 2 / (n - 1)
    dw = dwc - dwc.mean(1, keepdims=True)
    check(f"ws/{variant}/grad_x", dx, c["grad_x"])
    check(f"ws/{variant}/grad_weight", dw.reshape(w.shape), c["grad_weight"])
    check(f"ws/{variant}/grad_bias", db, c["grad_bias"])


# ---------------------------------------------------------------- normalize over axes
def norm_fwd(x, axes, eps):
    mu = x.mean(axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axes, keepdims=True)              # biased
    r = 1.0 / np.sqrt(var + eps)
    return (x - mu) * r, mu, var, r


def norm_bwd(gxh, xh, r, axes):
    """Exact backward of xh = (x - mean) / sqrt(var_biased + eps) over `axes`."""
    return r * (gxh - gxh.mean(axes, keepdims=True) - xh * (gxh * xh).mean(axes, keepdims=True))


def ch(v):
    return v.reshape(1, -1, 1, 1)


def verify_bn(c):
    x, R, w, b = A(c["x"]), A(c["R"]), A(c["weight"]), A(c["bias"])
    t = c["train"]
    xh, mu, var, r = norm_fwd(x, (0, 2, 3), 1e-5)
    y = ch(w) * xh + ch(b)
    check("batchnorm2d/train/y", y, t["y"])
    check("batchnorm2d/train/grad_x", norm_bwd(R * ch(w), xh, r, (0, 2, 3)), t["grad_x"])
    check("batchnorm2d/train/grad_weight", (R * xh).sum((0, 2, 3)), t["grad_weight"])
    check("batchnorm2d/train/grad_bias", R.sum((0, 2, 3)), t["grad_bias"])
    n = x.size // x.shape[1]
    check("batchnorm2d/train/running_mean", 0.9 * 0 + 0.1 * mu.ravel(), t["running_mean"])
    check("batchnorm2d/train/running_var", 0.9 * 1 + 0.1 * var.ravel() * n / (n - 1), t["running_var"])
    e = c["eval"]
    rm, rv = A(e["running_mean"]), A(e["running_var"])
    r = 1 / np.sqrt(ch(rv) + 1e-5)
    check("batchnorm2d/eval/y", ch(w) * (x - ch(rm)) * r + ch(b), e["y"])
    check("batchnorm2d/eval/grad_x", R * ch(w) * r, e["grad_x"])
    check("batchnorm2d/eval/grad_weight", (R * (x - ch(rm)) * r).sum((0, 2, 3)), e["grad_weight"])


def verify_gn(c):
    x, R, w, b = A(c["x"]), A(c["R"]), A(c["weight"]), A(c["bias"])
    G = c["hparams"]["num_groups"]
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    xh, _, _, r = norm_fwd(xg, (2,), 1e-5)
    y = ch(w) * xh.reshape(x.shape) + ch(b)
    t = c["train"]
    check("groupnorm/train/y", y, t["y"])
    gxh = (R * ch(w)).reshape(N, G, -1)
    check("groupnorm/train/grad_x", norm_bwd(gxh, xh, r, (2,)).reshape(x.shape), t["grad_x"])
    check("groupnorm/train/grad_weight", (R * xh.reshape(x.shape)).sum((0, 2, 3)), t["grad_weight"])
    check("groupnorm/train/grad_bias", R.sum((0, 2, 3)), t["grad_bias"])


def bcn_tail(h, R, gw, gb, G):
    """Group step + group affine on the BN output h; returns y and backward pieces."""
    N = h.shape[0]
    hg = h.reshape(N, G, -1)
    hh, _, _, r = norm_fwd(hg, (2,), 1e-5)
    y = (gw.reshape(1, G, 1) * hh + gb.reshape(1, G, 1)).reshape(h.shape)
    Rg = R.reshape(N, G, -1)
    d_gw = (Rg * hh).sum((0, 2)).reshape(1, G, 1)
    d_gb = Rg.sum((0, 2)).reshape(1, G, 1)
    dh = norm_bwd(Rg * gw.reshape(1, G, 1), hh, r, (2,)).reshape(h.shape)
    return y, dh, d_gw, d_gb


def verify_bcn(c):
    p = {k: A(v) for k, v in c["params"].items()}
    x, R = A(c["x"]), A(c["R"])
    G = c["hparams"]["num_groups"]
    # train: BN with batch stats
    xh, mu, var, r = norm_fwd(x, (0, 2, 3), 1e-5)
    h = ch(p["bn.weight"]) * xh + ch(p["bn.bias"])
    y, dh, d_gw, d_gb = bcn_tail(h, R, p["weight"], p["bias"], G)
    t = c["train"]
    check("bcn/train/bn_out", h, t["bn_out"])
    check("bcn/train/y", y, t["y"])
    check("bcn/train/grad_weight", d_gw, t["grad_weight"])
    check("bcn/train/grad_bias", d_gb, t["grad_bias"])
    check("bcn/train/grad_bn.weight", (dh * xh).sum((0, 2, 3)), t["grad_bn.weight"])
    check("bcn/train/grad_bn.bias", dh.sum((0, 2, 3)), t["grad_bn.bias"])
    check("bcn/train/grad_x", norm_bwd(dh * ch(p["bn.weight"]), xh, r, (0, 2, 3)), t["grad_x"])
    n = x.size // x.shape[1]
    check("bcn/train/bn.running_mean", 0.1 * mu.ravel(), t["bn.running_mean"])
    check("bcn/train/bn.running_var", 0.9 + 0.1 * var.ravel() * n / (n - 1), t["bn.running_var"])
    # eval: BN with running stats, group step still with per-sample batch stats
    e = c["eval"]
    rm, rv = A(e["bn.running_mean"]), A(e["bn.running_var"])
    rr = 1 / np.sqrt(ch(rv) + 1e-5)
    xh = (x - ch(rm)) * rr
    h = ch(p["bn.weight"]) * xh + ch(p["bn.bias"])
    y, dh, d_gw, d_gb = bcn_tail(h, R, p["weight"], p["bias"], G)
    check("bcn/eval/y", y, e["y"])
    check("bcn/eval/grad_x", dh * ch(p["bn.weight"]) * rr, e["grad_x"])
    check("bcn/eval/grad_weight", d_gw, e["grad_weight"])
    check("bcn/eval/grad_bn.weight", (dh * xh).sum((0, 2, 3)), e["grad_bn.weight"])


def verify_bcn_est(c):
    p = {k: A(v) for k, v in c["params"].items()}
    G = c["hparams"]["num_groups"]
    ms = c["hparams"]["estbn_moving_speed"]
    rm, rv = np.zeros(8), np.ones(8)

    def est(x, R, tag, rec):
        rr = 1 / np.sqrt(ch(rv) + 1e-5)
        xh = (x - ch(rm)) * rr
        h = ch(p["bn.weight"]) * xh + ch(p["bn.bias"])
        y, dh, d_gw, d_gb = bcn_tail(h, R, p["weight"], p["bias"], G)
        check(f"{tag}/y", y, rec["y"])
        check(f"{tag}/grad_x", dh * ch(p["bn.weight"]) * rr, rec["grad_x"])  # stats are constants
        check(f"{tag}/grad_bn.weight", (dh * xh).sum((0, 2, 3)), rec["grad_bn.weight"])
        check(f"{tag}/grad_bn.bias", dh.sum((0, 2, 3)), rec["grad_bn.bias"])
        check(f"{tag}/grad_weight", d_gw, rec["grad_weight"])
        check(f"{tag}/grad_bias", d_gb, rec["grad_bias"])

    for k, s in enumerate(c["steps"]):
        x, R = A(s["x"]), A(s["R"])
        bm = x.mean((0, 2, 3))
        bv = ((x - ch(rm)) ** 2).mean((0, 2, 3))      # centred on the OLD running mean, biased
        rm = (1 - ms) * rm + ms * bm                  # both updated BEFORE normalizing
        rv = (1 - ms) * rv + ms * bv
        check(f"bcn_estimated/step{k}/bn.running_mean", rm, s["bn.running_mean"])
        check(f"bcn_estimated/step{k}/bn.running_var", rv, s["bn.running_var"])
        est(x, R, f"bcn_estimated/step{k}", s)
    e = c["eval"]
    est(A(e["x"]), A(e["R"]), "bcn_estimated/eval", e)


def group_scaling(x, G, eps=1e-5):
    T_, B, C = x.shape
    xg = x.reshape(T_, B, G, C // G)
    r = np.sqrt((xg ** 2).mean(3, keepdims=True) + eps)
    return (xg / r).reshape(x.shape), xg, r


def group_scaling_bwd(gs, xg, r):
    Cg = xg.shape[3]
    gg = gs.reshape(xg.shape)
    return (gg / r - xg * (gg * xg).sum(3, keepdims=True) / (Cg * r ** 3)).reshape(gs.shape)


def verify_powernorm(name, c):
    hp = c["hparams"]
    eps, afwd, abkw, wu, G = hp["eps"], hp["alpha_fwd"], hp["alpha_bkw"], hp["warmup_iters"], hp["group_num"]
    w, b = A(c["weight"]), A(c["bias"])
    T_, B, C = c["T"], c["B"], c["C"]
    valid = np.ones((T_, B), bool) if c["pad_mask"] is None else ~A(c["pad_mask"]).astype(bool).T
    phi = np.ones(C)
    egz = np.zeros(C)
    for k, call in enumerate(c["calls"]):
        it = k + 1
        tag = f"powernorm/{name}/call{k}(iter {it})"
        x, R = A(call["x"]), A(call["R"])
        s, xg, r = group_scaling(x, G)
        check(f"{tag}/group_scaled_x", s, call["group_scaled_x"])
        psi2 = (s[valid] ** 2).mean(0)                        # (C,) over non-pad tokens
        denom = psi2 if it <= wu else phi                      # phi = value before this call
        z = s / np.sqrt(denom + eps)
        y = w * z + b
        if it < wu:
            phi = phi * (it - 1) / it + psi2 / it
        phi = afwd * phi + (1 - afwd) * psi2
        check(f"{tag}/y", y, call["y"])
        check(f"{tag}/running_phi", phi, call["running_phi"])
        # approximate backward (per channel; means over ALL T*B positions, pads included)
        g = R * w
        gt = g - (1 - abkw) * egz * z                          # egz = value before this backward
        egz = egz + (gt * z).mean((0, 1))                      # plain accumulation, no decay
        gs = gt / np.sqrt(psi2 + eps)                          # batch psi2 even after warmup
        check(f"{tag}/ema_gz", egz, call["ema_gz"])
        check(f"{tag}/grad_weight", (R * z).sum((0, 1)), call["grad_weight"])
        check(f"{tag}/grad_bias", R.sum((0, 1)), call["grad_bias"])
        check(f"{tag}/grad_x", group_scaling_bwd(gs, xg, r), call["grad_x"])
    e = c["eval"]
    x, R = A(e["x"]), A(e["R"])
    s, xg, r = group_scaling(x, G)
    rr = 1 / np.sqrt(phi + eps)
    check(f"powernorm/{name}/eval/y", w * s * rr + b, e["y"])
    check(f"powernorm/{name}/eval/grad_x", group_scaling_bwd(R * w * rr, xg, r), e["grad_x"])
    check(f"powernorm/{name}/eval/grad_weight", (R * s * rr).sum((0, 1)), e["grad_weight"])


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else common.fixtures_dir("norm", "golden.json")
    fx = json.load(open(path))
    for v in ("var_eps", "std_eps"):
        verify_ws(fx["ws"][v], v)
    verify_bn(fx["batchnorm2d"])
    verify_gn(fx["groupnorm"])
    verify_bcn(fx["bcn"])
    verify_bcn_est(fx["bcn_estimated"])
    for name, c in fx["powernorm"].items():
        verify_powernorm(name, c)
    print(f"{len(FAIL)} failures" + (": " + ", ".join(FAIL) if FAIL else ""))
    sys.exit(1 if FAIL else 0)


if __name__ == "__main__":
    main()
