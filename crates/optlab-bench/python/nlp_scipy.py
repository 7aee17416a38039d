# The scipy side of `optlab-bench nlp` (P19): scipy.optimize.minimize(method="trust-constr") on the same
# equality-constrained CUTEst problems as optlab's test set (crates/optlab/src/constrained/problems.rs, mirrored
# formula by formula), with exact derivatives from jax (jit-compiled and warmed up before timing: gradient,
# constraint Jacobian, Hessians of f and of each constraint). Default trust-constr options apart from maxiter.
# Success as in the paper: KKT residual ||(grad f + G^T lam; c)|| <= 1e-4 at the returned point, with lam the
# least-squares multipliers. Prints one JSON line {"scipy": version, "results": {name: {...}}}; exit code 3 with
# {"error": ...} when scipy or jax is missing.
import argparse, json, math, sys, time

p = argparse.ArgumentParser()
p.add_argument("--repeat", type=int, default=3)
p.add_argument("--maxiter", type=int, default=10000)
a = p.parse_args()
try:
    import numpy as np
    import scipy
    from scipy.optimize import minimize, NonlinearConstraint
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platform_name", "cpu")
    import jax.numpy as jnp
except Exception as e:  # noqa: BLE001
    print(json.dumps({"error": f"scipy/jax not importable: {e}"}))
    sys.exit(3)

S2 = math.sqrt(2.0)
Z = lambda x: 0.0 * x[0]


def grid(n):
    h = 1.0 / (n + 1)
    return h, jnp.arange(1, n + 1) * h


def morebvne(x):
    n = x.shape[0]
    h, t = grid(n)
    xp = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return Z(x), 2 * x - xp[:-2] - xp[2:] + 0.5 * h * h * (x + t + 1) ** 3


def inteqne(x):
    n = x.shape[0]
    h, t = grid(n)
    cube = (x + t + 1) ** 3
    left = jnp.cumsum(t * cube)
    right = jnp.concatenate([jnp.cumsum(((1 - t) * cube)[::-1])[::-1][1:], jnp.zeros(1)])
    return Z(x), x + 0.5 * h * ((1 - t) * left + t * right)


def genhs28(x):
    f = jnp.sum((x[:-1] + x[1:]) ** 2)
    return f, x[:-2] + 2 * x[1:-1] + 3 * x[2:] - 1


a4, b7 = math.asin(math.sqrt(1 / 4.2)), math.asin(math.sqrt(5 / 7.2))
t10 = np.arange(1, 11) / 11.0
PROBLEMS = {
    "HS6": ([-1.2, 1.0], lambda x: ((1 - x[0]) ** 2, jnp.array([10 * (x[1] - x[0] ** 2)]))),
    "BT5": ([2.0, 2, 2], lambda x: (1000 - x[0] ** 2 - 2 * x[1] ** 2 - x[2] ** 2 - x[0] * x[1] - x[0] * x[2],
                                    jnp.array([x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 25, 8 * x[0] + 14 * x[1] + 7 * x[2] - 56]))),
    "BT9": ([2.0] * 4, lambda x: (-x[0], jnp.array([x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2]))),
    "HS28": ([-4.0, 1, 1], lambda x: ((x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2, jnp.array([x[0] + 2 * x[1] + 3 * x[2] - 1]))),
    "BT10": ([2.0, 2], lambda x: (-x[0], jnp.array([x[1] - x[0] ** 3, x[0] ** 2 - x[1]]))),
    "BT12": ([15.0, -2, 0, 1, 0], lambda x: (0.01 * x[0] ** 2 + x[1] ** 2,
                                             jnp.array([x[0] + x[1] - x[2] ** 2 - 25, x[0] ** 2 + x[1] ** 2 - x[3] ** 2 - 25, x[0] - x[4] ** 2 - 2]))),
    "HS40": ([0.8] * 4, lambda x: (-x[0] * x[1] * x[2] * x[3],
                                   jnp.array([x[0] ** 3 + x[1] ** 2 - 1, x[0] ** 2 * x[3] - x[2], x[3] ** 2 - x[1]]))),
    "HS42": ([1.0] * 4, lambda x: ((x[0] - 1) ** 2 + (x[1] - 2) ** 2 + (x[2] - 3) ** 2 + (x[3] - 4) ** 2,
                                   jnp.array([x[0] - 2, x[2] ** 2 + x[3] ** 2 - 2]))),
    "HS7": ([2.0, 2], lambda x: (jnp.log(1 + x[0] ** 2) - x[1], jnp.array([(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4]))),
    "GENHS28": ([-4.0] + [1.0] * 9, genhs28),
    "HS51": ([2.5, 0.5, 2, -1, 0.5], lambda x: ((x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2 + (x[4] - 1) ** 2,
                                                jnp.array([x[0] + 3 * x[1] - 4, x[2] + x[3] - 2 * x[4], x[1] - x[4]]))),
    "BOOTH": ([0.0, 0], lambda x: (Z(x), jnp.array([x[0] + 2 * x[1] - 7, 2 * x[0] + x[1] - 5]))),
    "HS52": ([2.0] * 5, lambda x: ((4 * x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2 + (x[4] - 1) ** 2,
                                   jnp.array([x[0] + 3 * x[1], x[2] + x[3] - 2 * x[4], x[1] - x[4]]))),
    "HS47": ([2.0, S2, -1, 2 - S2, 0.5], lambda x: ((x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 3 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 4,
                                                    jnp.array([x[0] + x[1] ** 2 + x[2] ** 3 - 3, x[1] - x[2] ** 2 + x[3] - 1, x[0] * x[4] - 1]))),
    "HS48": ([3.0, 5, -3, 2, -2], lambda x: ((x[0] - 1) ** 2 + (x[1] - x[2]) ** 2 + (x[3] - x[4]) ** 2,
                                             jnp.array([jnp.sum(x) - 5, x[2] - 2 * (x[3] + x[4]) + 3]))),
    "HS50": ([35.0, -31, 11, 5, -5], lambda x: ((x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 2,
                                                jnp.array([x[0] + 2 * x[1] + 3 * x[2] - 6, x[1] + 2 * x[2] + 3 * x[3] - 6, x[2] + 2 * x[3] + 3 * x[4] - 6]))),
    "RSNBRNE": ([-1.2, 1.0], lambda x: (Z(x), jnp.array([10 * (x[1] - x[0] ** 2), 1 - x[0]]))),
    "CUBENE": ([-1.2, 1.0], lambda x: (Z(x), jnp.array([x[0] - 1, 10 * (x[1] - x[0] ** 3)]))),
    "HS77": ([2.0] * 5, lambda x: ((x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4 + (x[4] - 1) ** 6,
                                   jnp.array([x[0] ** 2 * x[3] + jnp.sin(x[3] - x[4]) - 2 * S2, x[1] + x[2] ** 4 * x[3] ** 2 - 8 - S2]))),
    "ZANGWIL3": ([100.0, -1, 2.5], lambda x: (Z(x), jnp.array([x[0] - x[1] + x[2], -x[0] + x[1] + x[2], x[0] + x[1] - x[2]]))),
    "HS78": ([-2.0, 1.5, 2, -1, -1], lambda x: (x[0] * x[1] * x[2] * x[3] * x[4],
                                                jnp.array([jnp.sum(x ** 2) - 10, x[1] * x[2] - 5 * x[3] * x[4], x[0] ** 3 + x[1] ** 3 + 1]))),
    "HS56": ([1.0, 1, 1, a4, a4, a4, b7], lambda x: (-x[0] * x[1] * x[2],
                                                     jnp.array([x[0] - 4.2 * jnp.sin(x[3]) ** 2, x[1] - 4.2 * jnp.sin(x[4]) ** 2,
                                                                x[2] - 4.2 * jnp.sin(x[5]) ** 2, x[0] + 2 * x[1] + 2 * x[2] - 7.2 * jnp.sin(x[6]) ** 2]))),
    "HS79": ([2.0] * 5, lambda x: ((x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4 + (x[3] - x[4]) ** 4,
                                   jnp.array([x[0] + x[1] ** 2 + x[2] ** 3 - 2 - 3 * S2, x[1] - x[2] ** 2 + x[3] + 2 - 2 * S2, x[0] * x[4] - 2]))),
    "HS100LNP": ([1.0, 2, 0, 4, 0, 1, 1], lambda x: ((x[0] - 10) ** 2 + 5 * (x[1] - 12) ** 2 + x[2] ** 4 + 3 * (x[3] - 11) ** 2 + 10 * x[4] ** 6
                                                     + 7 * x[5] ** 2 + x[6] ** 4 - 4 * x[5] * x[6] - 10 * x[5] - 8 * x[6],
                                                     jnp.array([2 * x[0] ** 2 + 3 * x[1] ** 4 + x[2] + 4 * x[3] ** 2 + 5 * x[4] - 127,
                                                                -4 * x[0] ** 2 - x[1] ** 2 + 3 * x[0] * x[1] - 2 * x[2] ** 2 - 5 * x[5] + 11 * x[6]]))),
    "GOTTFR": ([0.5, 0.5], lambda x: (Z(x), jnp.array([x[0] - 0.1136 * (x[0] + 3 * x[1]) * (1 - x[0]), x[1] + 7.5 * (2 * x[0] - x[1]) * (1 - x[1])]))),
    "DENSCHNCNE": ([2.0, 3.0], lambda x: (Z(x), jnp.array([x[0] ** 2 + x[1] ** 2 - 2, jnp.exp(x[0] - 1) + x[1] ** 3 - 2]))),
    "DENSCHNFNE": ([2.0, 0.0], lambda x: (Z(x), jnp.array([2 * (x[0] + x[1]) ** 2 + (x[0] - x[1]) ** 2 - 8, 5 * x[0] ** 2 + (x[1] - 3) ** 2 - 9]))),
    "HIMMELBC": ([1.0, 1.0], lambda x: (Z(x), jnp.array([x[0] ** 2 + x[1] - 11, x[0] + x[1] ** 2 - 7]))),
    "MOREBVNE": (list(t10 * (t10 - 1)), morebvne),
    "INTEQNE": (list(t10 * (t10 - 1)), inteqne),
    "BT2": ([10.0] * 3, lambda x: ((x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4,
                                   jnp.array([x[0] * (1 + x[1] ** 2) + x[2] ** 4 - 4 - 3 * S2]))),
}


def run(name):
    x0, fc = PROBLEMS[name]
    x0 = np.asarray(x0, dtype=np.float64)
    f = jax.jit(lambda x: fc(x)[0])
    c = jax.jit(lambda x: fc(x)[1])
    g = jax.jit(jax.grad(lambda x: fc(x)[0]))
    J = jax.jit(jax.jacfwd(lambda x: fc(x)[1]))
    H = jax.jit(jax.hessian(lambda x: fc(x)[0]))
    Hc = jax.jit(lambda x, v: jax.hessian(lambda y: jnp.dot(v, fc(y)[1]))(x))
    m = int(np.asarray(c(x0)).shape[0])
    for fn in (f, c, g, J, H):  # compile before timing
        np.asarray(fn(x0))
    np.asarray(Hc(x0, np.ones(m)))
    fun = lambda x: float(f(x))
    jac = lambda x: np.asarray(g(x))
    hess = lambda x: np.asarray(H(x))
    con = NonlinearConstraint(lambda x: np.asarray(c(x)), 0.0, 0.0, jac=lambda x: np.asarray(J(x)),
                              hess=lambda x, v: np.asarray(Hc(x, v)))
    times, res = [], None
    for _ in range(a.repeat):
        t = time.perf_counter()
        try:
            res = minimize(fun, x0, jac=jac, hess=hess, constraints=[con], method="trust-constr",
                           options={"maxiter": a.maxiter})
        except Exception as e:  # noqa: BLE001
            return {"error": str(e)[:200]}
        times.append(time.perf_counter() - t)
    x = res.x
    gx, Jx, cx = np.asarray(g(x)), np.asarray(J(x)), np.asarray(c(x))
    lam = np.linalg.lstsq(Jx.T, -gx, rcond=None)[0]
    kkt = float(np.sqrt(np.sum((gx + Jx.T @ lam) ** 2) + np.sum(cx ** 2)))
    return {"seconds": float(np.median(times)), "objective": float(res.fun), "kkt": kkt,
            "iterations": int(res.nit), "success": bool(np.isfinite(kkt) and kkt <= 1e-4), "message": str(res.message)[:120]}


print(json.dumps({"scipy": scipy.__version__, "jax": jax.__version__,
                  "results": {name: run(name) for name in PROBLEMS}}))
