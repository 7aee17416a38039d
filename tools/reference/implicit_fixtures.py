"""Golden hypergradients from jaxopt's implicit differentiation (P10), for crates/optlab/tests/implicit.rs.

    pip install jax jaxopt numpy
    python3 tools/reference/implicit_fixtures.py

Writes crates/optlab/tests/fixtures/implicit/golden.json with three problems in float64, each with its data, the
inner solution found by a jaxopt solver and the gradient of the outer loss with respect to theta computed by
jax.grad through the solver (jaxopt differentiates it implicitly with solve_normal_cg):

* ridge: inner 1/2 mean((X w - y)^2) + 1/2 lam ||w||^2, lam = exp(theta); outer 1/2 mean((Xv w - yv)^2).
  The inner solver is jaxopt.LBFGS with implicit_diff=True (jaxopt's ridge example).
* lasso: inner 1/2 mean((X w - y)^2) + lam ||w||_1, lam = exp(theta), jaxopt.ProximalGradient with prox_lasso;
  outer as for ridge.
* logreg: multiclass logistic regression with one L2 strength per feature,
  inner mean CE(X W, y) + 1/2 sum_j exp(theta_j) ||W_j||^2 (W is features x classes), jaxopt.LBFGS;
  outer mean CE(Xv W, yv).

Also records central finite differences of the outer loss (inner re-solved at theta +- h) as a second opinion.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import jaxopt

from common import fixtures_dir

jax.config.update("jax_enable_x64", True)


def data(rng, n, d, classes=None):
    x = rng.normal(size=(n, d))
    if classes is None:
        w = rng.normal(size=d)
        y = x @ w + 0.5 * rng.normal(size=n)
    else:
        w = rng.normal(size=(d, classes))
        y = np.argmax(x @ w + 0.5 * rng.gumbel(size=(n, classes)), axis=1)
    return x, y


def mse(w, x, y):
    r = x @ w - y
    return 0.5 * jnp.mean(r**2)


def ce(w, x, y):
    logits = x @ w
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(len(y)), y])


def problem_ridge(rng):
    x, y = data(rng, 40, 6)
    xv, yv = data(rng, 30, 6)
    solver = jaxopt.LBFGS(
        fun=lambda w, th: mse(w, x, y) + 0.5 * jnp.exp(th[0]) * jnp.sum(w**2),
        tol=1e-14,
        maxiter=2000,
        implicit_diff=True,
    )

    def inner(th):
        return solver.run(jnp.zeros(x.shape[1]), th).params

    return dict(x=x, y=y, xv=xv, yv=yv), inner, lambda w: mse(w, xv, yv), np.array([np.log(0.3)])


def problem_lasso(rng):
    x, y = data(rng, 40, 8)
    xv, yv = data(rng, 30, 8)
    solver = jaxopt.ProximalGradient(
        fun=lambda w: mse(w, x, y),
        prox=jaxopt.prox.prox_lasso,
        tol=1e-14,
        maxiter=20000,
        implicit_diff=True,
    )

    def inner(th):
        w = solver.run(jnp.zeros(x.shape[1]), jnp.exp(th[0])).params
        if isinstance(w, jax.core.Tracer):
            return w
        # Polish on the active set (the stationarity condition there is linear), so the stored solution and the
        # finite differences are exact to rounding rather than to the solver's tolerance.
        w = np.array(w)
        s = np.abs(w) > 0
        xs = x[:, s]
        n = len(y)
        w[s] = np.linalg.solve(xs.T @ xs / n, xs.T @ y / n - np.exp(th[0]) * np.sign(w[s]))
        return jnp.asarray(w)

    return dict(x=x, y=y, xv=xv, yv=yv), inner, lambda w: mse(w, xv, yv), np.array([np.log(0.4)])


def problem_logreg(rng):
    d, k = 5, 3
    x, y = data(rng, 60, d, k)
    xv, yv = data(rng, 40, d, k)
    solver = jaxopt.LBFGS(
        fun=lambda w, th: ce(w, x, y) + 0.5 * jnp.sum(jnp.exp(th)[:, None] * w**2),
        tol=1e-14,
        maxiter=5000,
        implicit_diff=True,
    )

    def inner(th):
        return solver.run(jnp.zeros((d, k)), th).params

    theta = np.log(np.array([0.01, 0.05, 0.1, 0.5, 1.0]))
    return dict(x=x, y=y, xv=xv, yv=yv), inner, lambda w: ce(w, xv, yv), theta


def main():
    rng = np.random.default_rng(20261205)
    out = {"jax": jax.__version__}
    for name, make in [("ridge", problem_ridge), ("lasso", problem_lasso), ("logreg", problem_logreg)]:
        arrays, inner, outer, theta = make(rng)
        w = inner(jnp.asarray(theta))
        hyper = jax.grad(lambda th: outer(inner(th)))(jnp.asarray(theta))
        h = 1e-5
        fd = []
        for j in range(len(theta)):
            e = np.zeros_like(theta)
            e[j] = h
            fd.append(float((outer(inner(theta + e)) - outer(inner(theta - e))) / (2 * h)))
        out[name] = {
            **{k: np.asarray(v).tolist() for k, v in arrays.items()},
            "theta": theta.tolist(),
            "w": np.asarray(w).tolist(),
            "outer": float(outer(w)),
            "hypergradient": np.asarray(hyper).tolist(),
            "finite_differences": fd,
        }
        print(name, "hypergradient", np.asarray(hyper), "fd", np.array(fd))
    os.makedirs(fixtures_dir("implicit"), exist_ok=True)
    with open(fixtures_dir("implicit", "golden.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
