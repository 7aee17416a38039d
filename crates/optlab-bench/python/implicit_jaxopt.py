# The jaxopt side of `optlab-bench implicit` (P10): one ridge hypergradient by implicit differentiation on the
# deterministic problem both sides build (X_ij = sin(0.7 i + 1.3 j) + 0.1 cos(0.05 i j mod 2π), y_i = sin(0.3 i),
# validation rows offset by n), lambda = 1: the inner solution w* by a dense solve (not timed), then
# jaxopt.implicit_diff.root_vjp with solve_normal_cg(tol) for each of --tols on F(w, theta) = X^T (X w - y)/n + exp(theta) w and the
# cotangent of the validation MSE; with --digits also one distillation step (see distill()). CPU, float64. Prints one
# JSON line: per tolerance the seconds per hypergradient (median of --repeat after one warm-up, and each run's), the hypergradient and
# its error against the exact one (dense solve); the time of one X^T X p product; versions. Exit code 3 with {"error": ...} when jax or jaxopt is missing.
import argparse, json, sys, time

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=5000)
p.add_argument("--d", type=int, default=2000)
p.add_argument("--tols", default="1e-8", help="comma-separated relative tolerances, one timing each")
p.add_argument("--repeat", type=int, default=3)
p.add_argument("--digits", help="digits.csv.gz: also time a distillation step")
p.add_argument("--distill-steps", type=int, default=20)
a = p.parse_args()
try:
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platform_name", "cpu")
    import jax.numpy as jnp
    import jaxopt
    from jaxopt import implicit_diff, linear_solve
except Exception as e:  # noqa: BLE001
    print(json.dumps({"error": f"jax/jaxopt not importable: {e}"}))
    sys.exit(3)
import numpy as np


def data(n, d, offset):
    i = np.arange(offset, offset + n, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    x = np.sin(0.7 * i + 1.3 * j) + 0.1 * np.cos(np.mod(0.05 * i * j, 2 * np.pi))
    y = np.sin(0.3 * np.arange(offset, offset + n, dtype=np.float64))
    return jnp.asarray(x), jnp.asarray(y)


x, y = data(a.n, a.d, 0)
xv, yv = data(a.n, a.d, a.n)
theta = jnp.zeros(1)


def F(w, theta):
    return x.T @ (x @ w - y) / a.n + jnp.exp(theta[0]) * w


w = jnp.linalg.solve(x.T @ x / a.n + jnp.eye(a.d), x.T @ y / a.n)
v = jax.grad(lambda w: 0.5 * jnp.mean((xv @ w - yv) ** 2))(w)


def hypergrad_at(tol):
    solve = lambda matvec, b: linear_solve.solve_normal_cg(matvec, b, tol=tol)

    @jax.jit
    def hypergrad(w, theta, v):
        return implicit_diff.root_vjp(F, w, (theta,), v, solve=solve)[0]

    g = hypergrad(w, theta, v).block_until_ready()
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        g = hypergrad(w, theta, v).block_until_ready()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(g[0]), times


# One X^T (X p) product (two passes over X), jit-compiled, for the cost of a hypergradient in products.
product = jax.jit(lambda p: x.T @ (x @ p))
product(v).block_until_ready()
t = time.perf_counter()
for _ in range(5):
    product(v).block_until_ready()
product_seconds = (time.perf_counter() - t) / 5


# Distillation step: the first 1000 digits as the real data, the first image of each class as the synthetic set,
# inner logistic regression (intercept, L2 0.01) by jaxopt.LBFGS to tol 1e-9 warm-started, implicit
# differentiation with solve_cg(tol=1e-10), a gradient step on the images; seconds per step (median).
def distill(path, steps):
    import gzip
    rows = np.loadtxt(gzip.open(path, "rt"), delimiter=",")[:1000]
    xr, yr = rows[:, :64] / 16.0, rows[:, 64].astype(np.int32)
    s0 = np.stack([xr[np.argmax(yr == c)] for c in range(10)])
    xr1 = jnp.asarray(np.hstack([xr, np.ones((len(xr), 1))]))
    yr = jnp.asarray(yr)
    cls = jnp.arange(10)

    def ce(w, x, y):
        logits = x @ w
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(len(y)), y])

    def inner_obj(w, s):
        s1 = jnp.hstack([s, jnp.ones((10, 1))])
        return ce(w, s1, cls) + 0.005 * jnp.sum(w**2)

    from functools import partial
    solver = jaxopt.LBFGS(fun=inner_obj, tol=1e-9, maxiter=1000, implicit_diff=True,
                          implicit_diff_solve=partial(linear_solve.solve_cg, tol=1e-10))

    @jax.jit
    def step(s, w0):
        def outer(s):
            w = solver.run(w0, s).params
            return ce(w, xr1, yr), w
        (val, w), g = jax.value_and_grad(outer, has_aux=True)(s)
        return s - 0.05 * g, w, val

    s, w = jnp.asarray(s0), jnp.zeros((65, 10))
    s, w, _ = step(s, w)
    jax.block_until_ready(s)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        s, w, val = step(s, w)
        jax.block_until_ready(s)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(val)


# The exact hypergradient by a dense solve: A symmetric, u = -A^{-1} v, d/dtheta = exp(theta) <w, u>.
u = -np.linalg.solve(np.asarray(x.T @ x / a.n + jnp.eye(a.d)), np.asarray(v))
exact = float(np.dot(np.asarray(w), u))
runs = []
for tol in [float(t) for t in a.tols.split(",")]:
    seconds, g, times = hypergrad_at(tol)
    runs.append({"tol": tol, "seconds": seconds, "times": times, "hypergradient": g,
                 "rel_error": abs(g - exact) / abs(exact)})
out = {
    "library": "jaxopt", "jax": jax.__version__, "runs": runs, "exact": exact,
    "product_seconds": product_seconds, "n": a.n, "d": a.d,
}
if a.digits:
    out["distill_seconds_per_step"], out["distill_outer_loss"] = distill(a.digits, a.distill_steps)
print(json.dumps(out))
