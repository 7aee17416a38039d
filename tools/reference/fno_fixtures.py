"""P08's basis network from the official code, for crates/optlab/tests/pde.rs (`fno_golden`).

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax equinox jaxtyping numpy
    mkdir -p /tmp/optlab_ref_vendor/p08
    # ASK-Berkeley/physics-NNs-hard-constraints @ 0330e646cde06407f1406c1714e76f507f368f73:
    #   neptune/models/fno2d.py, neptune/models/modules/spectral_conv2d.py,
    #   neptune/models/modules/activations.py, neptune/pdes/finite_differences.py
    cp fno2d.py spectral_conv2d.py activations.py finite_differences.py /tmp/optlab_ref_vendor/p08/
    /tmp/jaxenv/bin/python tools/reference/fno_fixtures.py

Builds the official `FNO2D` (float64) for two small grids, runs it on the official input (the (t, x) grid and the
initial condition u0(x) = sin 3x + 0.2 as channels, `prepare_input`), takes the official finite differences
(`fdm_first_order_derivative`: u_x, u_xx as the difference of u_x, u_t) and writes
crates/optlab/tests/fixtures/fno/golden.json: per case the sizes, every weight in optlab's layout (linear and
1 x 1 convolution weights in x out; spectral weights M x C x O with the modes in the order weights1[.., a, kx] then
weights2[.., a, kx], kx fastest), and phi, phi_x, phi_xx, phi_t (nt x nx x K, flattened row-major).

It also records which arrays the official training differentiates (`eqx.filter(model, eqx.is_inexact_array)`, as
the official trainer does): the lifting `fc0` and the projections `fc1`, `fc2` are wrapped in `jax.vmap`, which
hides them from equinox, so the official code never trains them; optlab trains every layer, as the paper's FNO does.
"""

import argparse
import json
import os
from dataclasses import dataclass

import common

REFS = {
    "fno2d.py": "17da56fabaf7537f1f5fa93727999de6b51a30a6307ed16698bc6efa06de0c2d",
    "spectral_conv2d.py": "49260658497a10ba107460385f2ff44ff015da205adf2572902ebab8bebdd89d",
    "activations.py": "1ab7ead6775c0376c52e4b06d7d0f574257f73dd29be7f795c55e8dd3e55b18e",
    "finite_differences.py": "f319e49952398401ab906650df9fc5302eb414c2d5696ca311d4810badbc4a9e",
}


def load(vendor, name, scope, patches=()):
    path = os.path.join(vendor, name)
    with open(path) as f:
        src = f.read()
    for old, new in patches:
        assert src.count(old) == 1, f"patch target not found exactly once in {name}: {old!r}"
        src = src.replace(old, new)
    exec(compile(src, path, "exec"), scope)
    return scope


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vendor", default=common.vendor_dir("p08"))
    ap.add_argument("--no-hash-check", action="store_true")
    args = ap.parse_args()

    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    for name, digest in REFS.items():
        common.check_reference(os.path.join(args.vendor, name), digest, not args.no_hash_check)

    acts = load(args.vendor, "activations.py", {})
    spec = load(args.vendor, "spectral_conv2d.py", {})
    fd = load(args.vendor, "finite_differences.py", {})

    @dataclass(frozen=True)
    class ModelConfig:  # the fields of the official ModelConfig that FNO2D reads: none
        model: str = "fno2d"

    fno_scope = {
        "SpectralConv2d": spec["SpectralConv2d"],
        "Activation_Function": acts["Activation_Function"],
        "ModelConfig": ModelConfig,
        "split_prng_key": lambda key, num_keys=2: jax.random.split(key),
    }
    fno = load(
        args.vendor,
        "fno2d.py",
        fno_scope,
        patches=[
            ("from .modules import SpectralConv2d\n", ""),
            ("from .modules.activations import Activation_Function\n", ""),
            ("from .model_utils import ModelConfig, split_prng_key\n", ""),
        ],
    )

    def unwrap(f):
        while not isinstance(f, eqx.nn.Linear):
            f = f.__wrapped__
        return f

    cases = []
    for seed, (nt, nx, width, layers, m1, m2, fc, k) in enumerate(
        [(8, 10, 6, 2, 3, 2, 5, 4), (7, 9, 5, 3, 3, 4, 4, 3)]
    ):
        cfg = fno["FNO2DConfig"](
            modes1=[m1] * layers,
            modes2=[m2] * layers,
            layers=[width] * (layers + 1),
            fc_dim=fc,
            out_dim=k,
            activation="gelu",
            activate_last_layer=True,
        )
        t = jnp.linspace(0.0, 1.0, nt)
        x = jnp.linspace(0.0, 1.0, nx)
        tt, xx = jnp.meshgrid(t, x, indexing="ij")
        domain = jnp.stack([tt, xx], axis=-1)  # nt x nx x 2, (t, x) as the official dense grid
        u0 = jnp.sin(3.0 * xx[..., None]) + 0.2
        inp = jnp.concatenate([domain, u0], axis=-1)  # prepare_input: grid, then the initial condition
        model = fno["FNO2D"](cfg, jax.random.PRNGKey(100 + seed), inp)
        phi = model(None, inp)  # nt x nx x K
        phi_x = fd["fdm_first_order_derivative"](phi, domain, axis=1)
        phi_xx = fd["fdm_first_order_derivative"](phi_x, domain, axis=1)
        phi_t = fd["fdm_first_order_derivative"](phi, domain, axis=0)

        trained = eqx.filter(model, eqx.is_inexact_array)
        trained_leaves = [l.shape for l in jax.tree_util.tree_leaves(trained)]

        def lin(f):
            lin_ = unwrap(f)
            return {"w": np.asarray(lin_.weight).T.ravel().tolist(), "b": np.asarray(lin_.bias).ravel().tolist()}

        blocks = []
        for sc, conv in zip(model.sp_convs, model.convs):
            w = jnp.concatenate([sc.weights1, sc.weights2], axis=2)  # C x O x 2m1 x m2
            w = jnp.transpose(w, (2, 3, 0, 1)).reshape(2 * m1 * m2, width, width)
            blocks.append(
                {
                    "re": np.asarray(w.real).ravel().tolist(),
                    "im": np.asarray(w.imag).ravel().tolist(),
                    "w": np.asarray(conv.weight[:, :, 0, 0]).T.ravel().tolist(),
                    "b": np.asarray(conv.bias).ravel().tolist(),
                }
            )
        flat = lambda a: np.asarray(a).ravel().tolist()
        cases.append(
            {
                "nt": nt,
                "nx": nx,
                "width": width,
                "layers": layers,
                "modes": [m1, m2],
                "fc": fc,
                "k": k,
                "fc0": lin(model.fc0),
                "blocks": blocks,
                "fc1": lin(model.fc1),
                "fc2": lin(model.fc2),
                "phi": flat(phi),
                "phi_x": flat(phi_x),
                "phi_xx": flat(phi_xx),
                "phi_t": flat(phi_t),
                "official_trained_shapes": [list(s) for s in trained_leaves],
            }
        )
        print(f"case {seed}: the official training differentiates {len(trained_leaves)} arrays: {trained_leaves}")

    out = common.fixtures_dir("fno", "golden.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(
            {
                "source": "ASK-Berkeley/physics-NNs-hard-constraints @ 0330e646cde06407f1406c1714e76f507f368f73",
                "u0": "sin(3x) + 0.2",
                "cases": cases,
            },
            f,
        )
    print("wrote", out)


if __name__ == "__main__":
    main()
