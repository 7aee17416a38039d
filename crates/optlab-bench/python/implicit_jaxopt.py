# The jaxopt side of `optlab-bench implicit` (P10): one ridge hypergradient by implicit differentiation on the
# deterministic problem both sides build (X_ij = sin(0.7 i + 1.3 j) + 0.1 cos(0.05 i j mod 2π), y_i = sin(0.3 i),
# validation rows offset by n), lambda = 1: the inner solution w* by a dense solve (not timed), then
# jaxopt.implicit_diff.root_vjp with solve_normal_cg(tol) on F(w, theta) = X^T (X w - y)/n + exp(theta) w and the
# cotangent of the validation MSE. CPU, float64. Prints one JSON line: seconds per hypergradient (median of --repeat
# after one warm-up), the hypergradient, the exact one (dense solve) and versions. Exit code 3 with {"error": ...} when jax or jaxopt is missing.
import argparse, json, sys, time

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=5000)
p.add_argument("--d", type=int, default=2000)
p.add_argument("--tol", type=float, default=1e-8)
p.add_argument("--repeat", type=int, default=3)
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
solve = lambda matvec, b: linear_solve.solve_normal_cg(matvec, b, tol=a.tol)


@jax.jit
def hypergrad(w, theta, v):
    return implicit_diff.root_vjp(F, w, (theta,), v, solve=solve)[0]


g = hypergrad(w, theta, v).block_until_ready()
times = []
for _ in range(a.repeat):
    t = time.perf_counter()
    g = hypergrad(w, theta, v).block_until_ready()
    times.append(time.perf_counter() - t)
# The exact hypergradient by a dense solve: A symmetric, u = -A^{-1} v, d/dtheta = exp(theta) <w, u>.
u = -np.linalg.solve(np.asarray(x.T @ x / a.n + jnp.eye(a.d)), np.asarray(v))
exact = float(np.dot(np.asarray(w), u))
print(json.dumps({
    "library": "jaxopt", "jax": jax.__version__, "seconds": float(np.median(times)),
    "hypergradient": float(g[0]), "exact": exact, "rel_error": abs(float(g[0]) - exact) / abs(exact),
    "n": a.n, "d": a.d, "tol": a.tol,
}))
