"""The official side of `optlab-bench explain`: the T-Rex search and the Stability measure of P07's official code
(FaisalHamman/TReX-Counterfactuals, commit 5b4b4a9, `consistency/attack_utils.py`) on the official Keras model
(`baselines.dnn`: Dense 128, ReLU, Dense 128, ReLU, Dense 2, softmax) with German Credit's width (63 inputs).

    python crates/optlab-bench/python/trex_official.py THREADS POINTS K
    -> {"stability_ms": ..., "trex_ms_per_point": ..., "steps": 20}   (one JSON line on stdout)

Each point runs `batch_trex_search` alone (batch 1, as the official main.py) with the official settings (sigma
0.05, 20 steps of 0.01, radius 1) and tau = 2, which no Stability reaches, so every point takes all 20 steps on
both sides whatever the weights. Two changes to run it, neither touching the timed arithmetic: `foolbox` and
`art` are stubbed (only the ElasticNet path imports them), and `gaussian_volume` is wrapped to accept the
`num_class` keyword that `batch_trex_search` passes but the committed `gaussian_volume` does not take (the
official TreX path raises a TypeError without it).

Needs tensorflow and the official file under $OPTLAB_REF_VENDOR (default /tmp/optlab_ref_vendor) at
trex/consistency/attack_utils.py (sha256 a011fd94...ba0c59); exits with code 3 when either is missing.
"""

import contextlib
import importlib.util
import io
import json
import os
import sys
import time
import types

SHA256 = "a011fd940b11f79589b74cf19168a18231086c8d73a8464430a9c11467ba0c59"


def main():
    threads, points, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    try:
        import numpy as np
        import tensorflow as tf
    except ImportError:
        print("tensorflow is not installed", file=sys.stderr)
        sys.exit(3)
    vendor = os.environ.get("OPTLAB_REF_VENDOR", "/tmp/optlab_ref_vendor")
    path = os.path.join(vendor, "trex", "consistency", "attack_utils.py")
    if not os.path.exists(path):
        print(f"the official attack_utils.py is not at {path}", file=sys.stderr)
        sys.exit(3)
    import hashlib

    if hashlib.sha256(open(path, "rb").read()).hexdigest() != SHA256:
        print(f"{path} is not the official file (sha256 differs)", file=sys.stderr)
        sys.exit(3)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    for name in ("foolbox", "art"):
        sys.modules.setdefault(name, types.ModuleType(name))
    spec = importlib.util.spec_from_file_location("trex_attack_utils", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    volume = mod.gaussian_volume
    mod.gaussian_volume = lambda model, x, y, K=1000, sigma=0.1, num_class=None: volume(model, x, y, K=K, sigma=sigma)

    d = 63
    tf.random.set_seed(0)
    inp = tf.keras.Input((d,))
    h = tf.keras.layers.Activation("relu")(tf.keras.layers.Dense(128)(inp))
    h = tf.keras.layers.Activation("relu")(tf.keras.layers.Dense(128)(h))
    out = tf.keras.layers.Activation("softmax")(tf.keras.layers.Dense(2)(h))
    model = tf.keras.models.Model(inp, out)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1.0, 1.0, size=(points, d)).astype(np.float32)

    x0 = tf.constant(xs[:1])
    volume(model, x0, None, K=k, sigma=0.05)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            volume(model, x0, None, K=k, sigma=0.05)
        best = min(best, (time.perf_counter() - t0) / 20)
    stability_ms = best * 1e3

    # Keras's predict draws progress bars on stdout; the one JSON line must stay alone there.
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        for i in range(points):
            x = xs[i:i + 1]
            y = np.argmax(model(x).numpy(), -1)
            mod.batch_trex_search(model, x, y, tau=2.0, n_steps=20, max_steps=20, K=k, sigma=0.05,
                                  adv_step_size=0.01, clamp=[-5.0, 5.0], adv_epsilon=1.0, p=2, num_class=2)
        trex_ms = (time.perf_counter() - t0) * 1e3 / points
    print(json.dumps({"stability_ms": stability_ms, "trex_ms_per_point": trex_ms, "steps": 20, "tf": tf.__version__}))


if __name__ == "__main__":
    main()
