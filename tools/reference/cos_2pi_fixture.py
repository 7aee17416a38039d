"""cos(2πx) to 50 digits (mpmath) at 4,000 points, for the ulp bound of optlab::functions::cos_2pi.

The points: uniform in [-4, 4] (CBO's range), in [-1000, 1000], near the zeros (x = ±1/4 ± 1e-3) and near 0,
and every multiple of 1/16 in [-4, 4]. Values whose exact cosine is 0 are written as 0.

    pip install mpmath numpy
    python tools/reference/cos_2pi_fixture.py
"""

import json

import mpmath as mp
import numpy as np

from common import fixtures_dir

mp.mp.dps = 50


def main():
    rng = np.random.default_rng(23)
    x = np.concatenate(
        [
            rng.uniform(-4, 4, 2000),
            rng.uniform(-1000, 1000, 1000),
            0.25 + rng.uniform(-1e-3, 1e-3, 300),
            -0.25 + rng.uniform(-1e-3, 1e-3, 300),
            rng.uniform(-1e-6, 1e-6, 271),
            np.arange(-64, 65) / 16.0,
        ]
    )
    exact = []
    for v in x:
        c = mp.cos(2 * mp.pi * mp.mpf(float(v)))
        exact.append(0.0 if abs(c) < mp.mpf("1e-40") else float(c))
    out = {
        "source": "mpmath cos(2*pi*x), 50 digits, rounded to f64",
        "x": [float(v) for v in x],
        "cos_2pi": exact,
    }
    path = fixtures_dir("functions", "cos_2pi.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {len(x)} points to {path}")


if __name__ == "__main__":
    main()
