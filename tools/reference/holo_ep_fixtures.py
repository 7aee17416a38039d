"""P31 (holomorphic EP with Jacobian homeostasis) fixtures for crates/optlab/tests/ep_golden.rs, from the official
code Laborieux-Axel/generalized-holo-ep (commit 30592f5):

  * `models/vfs.py` `mlp_discrete_vf` (the layered vector field with learnt feedback kernels and the softmax
    readout's nudge), `models/act.py`, `utils/funcs.py` `sigmoid` (1/(1 + e^(2 - 4z)));
  * `models/dyn.py` `DiscreteDynamics`: `fwd` (the free phase), `du_dbeta` (N = 0 forward-mode, N = 1 one-sided,
    N >= 2 the Fourier sum over beta e^(2 pi i k/N)), `hep_vf` (the weight gradient), `delta_rbp` (recurrent
    backpropagation, run to convergence here), `bp_grad` (the backpropagation baseline: through T2 steps from the
    fixed point) and `homeo_loss` with its gradient.

The released snapshot does not import as is (`utils/funcs.py` lacks `dalify` and `ff_exc_fb_inh`, which
`models/dyn.py` imports but the MLP path never calls): stubs that raise stand in for them. The sources are loaded
with `complex64` replaced by `complex128` and JAX in 64-bit mode, so that the comparison holds to 1e-10 rather
than to single precision; nothing else is changed. `homeo_loss` draws its Gaussian probes from a JAX key; here
the probes are fixed arrays handed to it through a stand-in for `jax.random.normal`, and written to the fixture.

Get the files with

    git -C <generalized-holo-ep checkout> archive 30592f5 models utils | tar -x -C $OPTLAB_REF_VENDOR/holo-ep
    pip install "numpy<2" "jax==0.4.18" "jaxlib==0.4.18" "flax==0.7.4"
    python3 tools/reference/holo_ep_fixtures.py

Writes crates/optlab/tests/fixtures/ep/holo_ep.json.
"""

import argparse
import json
import os
import sys
import types

import common

SHAS = {
    "models/dyn.py": "198ec39be4c1c86b6f41595cc13fa58513e492d4dcf0cf68ea2161cdff451995",
    "models/vfs.py": "3f389a11cf838846c74ba09c08c8b3b9f392de171d0c3fda3042b2e589c264cc",
    "models/act.py": "dc27ece13e7d736f7fb3809bf7817b89945736db57956fa6d3b0228b0050d254",
    "utils/funcs.py": "c7d824884a598b90a29ae8676dec6f108b5d06385a552578e41f6a0678227767",
    "utils/pool.py": "9c507bf2894df68d6c4972238d69d54e64344a2b513000246b4a99ce36e82ffa",
}

STUBS = """

def dalify(*args, **kwargs):
    raise NotImplementedError("not in the released snapshot")


def ff_exc_fb_inh(*args, **kwargs):
    raise NotImplementedError("not in the released snapshot")
"""


def load(root, rel, name, extra=""):
    """Executes the vendored file `rel` as module `name`, complex64 read as complex128."""
    with open(os.path.join(root, rel)) as f:
        src = f.read().replace("complex64", "complex128") + extra
    mod = types.ModuleType(name)
    mod.__file__ = os.path.join(root, rel)
    sys.modules[name] = mod
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-hash-check", action="store_true")
    args = ap.parse_args()
    root = common.vendor_dir("holo-ep")
    for rel, sha in SHAS.items():
        common.check_reference(os.path.join(root, rel), sha, not args.no_hash_check)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    for pkg in ("utils", "models"):
        m = types.ModuleType(pkg)
        m.__path__ = []
        sys.modules[pkg] = m
    funcs = load(root, "utils/funcs.py", "utils.funcs", STUBS)
    load(root, "utils/pool.py", "utils.pool")
    load(root, "models/act.py", "models.act")
    vfs = load(root, "models/vfs.py", "models.vfs")
    dynmod = load(root, "models/dyn.py", "models.dyn")

    # The network: 5 inputs, state layers l1 = 6, l2 = 4, out = 3, feedback l2 -> l1 and out -> l2, 5 classes.
    layers = [("l1", 6), ("l2", 4), ("out", 3)]
    inp, classes, batch = 5, 5, 3
    connections = {
        "in-l1": "dense",
        "l1-l2": "dense",
        "l2-l1": "dense_nobias",
        "l2-out": "dense",
        "out-l2": "dense_nobias",
    }
    vf = vfs.mlp_discrete_vf(
        shapes={k: (n,) for k, n in layers},
        sizes={k: n for k, n in layers},
        connections=connections,
        loss="xent",
        act=funcs.sigmoid,
    )
    dyn = dynmod.DiscreteDynamics(vf=vf, seed=0)

    rng = np.random.default_rng(31)
    x = jnp.asarray(rng.uniform(-1.0, 1.0, (batch, inp)))
    labels = [0, 3, 4]
    y = jnp.asarray(np.eye(classes)[labels])
    params = dyn.init_params(x, y)
    params = jax.tree_util.tree_map(
        lambda a: jnp.asarray(rng.normal(0.0, 0.6 if a.ndim == 2 else 0.2, a.shape)), params
    )
    p = params["params"]
    readout = p["readout"]["Dense_0"]
    # optlab's order (EpNet::arrays): forward_l and bias_l per layer, feedback_l, readout, readout bias.
    ours = [
        ("forward0.weight", p["in-l1"]["kernel"]),
        ("forward0.bias", p["in-l1"]["bias"]),
        ("forward1.weight", p["l1-l2"]["kernel"]),
        ("forward1.bias", p["l1-l2"]["bias"]),
        ("forward2.weight", p["l2-out"]["kernel"]),
        ("forward2.bias", p["l2-out"]["bias"]),
        ("feedback0.weight", p["l2-l1"]["kernel"]),
        ("feedback1.weight", p["out-l2"]["kernel"]),
        ("readout.weight", readout["kernel"]),
        ("readout.bias", readout["bias"]),
    ]

    def in_our_order(g):
        q = g["params"]
        r = q["readout"]["Dense_0"]
        return [
            q["in-l1"]["kernel"], q["in-l1"]["bias"], q["l1-l2"]["kernel"], q["l1-l2"]["bias"],
            q["l2-out"]["kernel"], q["l2-out"]["bias"], q["l2-l1"]["kernel"], q["out-l2"]["kernel"],
            r["kernel"], r["bias"],
        ]

    def flat(a):
        return [float(v) for v in np.asarray(a).reshape(-1)]

    def states(u):
        return [flat(u[k]) for k, _ in layers]

    t1, t2, beta = 60, 12, 0.4
    u0 = dyn.batch_nrn(x)
    u1 = dyn.fwd(params, u0, x, y, 0.0, t1)
    estimates = []
    for n in (0, 1, 2, 4, 5):
        dudb = dyn.du_dbeta(params, u1, x, y, t2, beta, n)
        grad = dyn.hep_vf(params, u1, x, y, t2, beta, n)
        estimates.append(
            {"n": n, "du_dbeta": states(dudb), "gradient": [flat(a) for a in in_our_order(grad)]}
        )

    # Recurrent backpropagation run to its fixed point (the official code truncates at T2 iterations).
    delta, conv = dyn.delta_rbp(params, u1, x, y, 150)
    assert float(jnp.max(conv)) < -8.99, f"RBP did not converge: log10 update {conv}"
    rbp_grad = dyn.rbp(params, u1, x, y, 150)
    # The backpropagation baseline: `bp` backpropagates through T2 steps from u1 (bp_grad), which at a fixed
    # point is delta_rbp truncated at T2.
    delta_t2, _ = dyn.delta_rbp(params, u1, x, y, t2)
    bp_grad, _ = dyn.bp_grad(params, u1, x, y, t2)

    # Homeostasis with fixed probes (one per sample, as homeo_loss draws them).
    eps = {k: rng.normal(size=(batch, n)) for k, n in layers}
    queue = [eps[k] for k, _ in layers]

    class FixedNormal:
        split = staticmethod(jax.random.split)

        @staticmethod
        def normal(key, shape):
            a = queue.pop(0)
            assert a.shape == tuple(shape), (a.shape, shape)
            return jnp.asarray(a)

    dynmod.random = FixedNormal
    key = jax.random.PRNGKey(0)
    h_value = float(dyn.homeo_loss(params, u1, x, y, key))
    queue[:] = [eps[k] for k, _ in layers]
    h_grad = jax.grad(dyn.homeo_loss)(params, u1, x, y, key)
    queue[:] = []

    out = {
        "source": "Laborieux-Axel/generalized-holo-ep@30592f5 models/dyn.py, models/vfs.py (complex128, x64)",
        "input": inp,
        "layers": [n for _, n in layers],
        "classes": classes,
        "x": flat(x),
        "labels": labels,
        "t1": t1,
        "t2": t2,
        "beta": beta,
        "params": {name: flat(a) for name, a in ours},
        "u_star": states(u1),
        "estimates": estimates,
        "rbp_delta": states(delta),
        "rbp_gradient": [flat(a) for a in in_our_order(rbp_grad)],
        "bp_delta": states(delta_t2),
        "bp_gradient": [flat(a) for a in in_our_order(bp_grad)],
        "homeostasis": {
            "probes": [flat(eps[k]) for k, _ in layers],
            "value": h_value,
            "gradient": [flat(a) for a in in_our_order(h_grad)],
        },
    }
    os.makedirs(common.fixtures_dir("ep"), exist_ok=True)
    dst = common.fixtures_dir("ep", "holo_ep.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", dst)


if __name__ == "__main__":
    main()
