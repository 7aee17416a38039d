# The CBXpy side of a CBO benchmark: CBXpy's `cbx.dynamics.CBO` on Rastrigin (or Ackley) in the setting of
# CBXpy's success-evaluation notebook (docs/examples/success_evaluation.ipynb: d=20, N=40, M=100 runs,
# sigma=10.1, alpha=30, dt=0.01, max_it=5000, anisotropic noise, x0 ~ U[-3,3]^d, optimize() with its default
# scheduler alpha *= 1.05 per step capped at 1e5; success: ||best_particle - 0||_inf < 0.25).
# By default the runs are vectorised as CBXpy's M parallel ensembles (one array of shape (runs, N, d));
# --sequential runs one ensemble (M=1) at a time. Prints one JSON line on stdout:
#   {"library", "version", "success_rate", "iterations", "runs", "seconds", "iterations_per_second", "evaluations", ...}
# Exit code 3 with {"error": "cbx not installed"} when `import cbx` fails.
import argparse, json, sys, time

import numpy as np

p = argparse.ArgumentParser(description="CBXpy CBO benchmark (prints one JSON line)")
p.add_argument("--dim", type=int, default=20)
p.add_argument("--particles", type=int, default=40)
p.add_argument("--runs", type=int, default=100)
p.add_argument("--iters", type=int, default=5000)
p.add_argument("--sigma", type=float, default=10.1)
p.add_argument("--alpha", type=float, default=30.0)
p.add_argument("--dt", type=float, default=0.01)
p.add_argument("--lamda", type=float, default=1.0)
p.add_argument("--noise", choices=["isotropic", "anisotropic"], default="anisotropic")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--function", choices=["rastrigin", "ackley"], default="rastrigin")
p.add_argument("--init-range", type=float, default=3.0, help="x0 ~ U[-r, r]^d")
p.add_argument("--tol", type=float, default=0.25, help="success: ||x - 0||_inf < tol")
p.add_argument("--sched", choices=["default", "none"], default="default",
               help="default: CBXpy's optimize() default, alpha *= 1.05 per step up to 1e5; none: constant alpha")
p.add_argument("--track-history", action="store_true",
               help="keep CBXpy's default history (update_norm and energy every step); off: no tracking")
p.add_argument("--sequential", action="store_true", help="run the ensembles one at a time (M=1 each)")
a = p.parse_args()

try:
    import cbx
    from cbx.dynamics import CBO
    from cbx.objectives import Ackley, Rastrigin
    from cbx.utils.success import dist_to_min_success
except ImportError:
    print(json.dumps({"error": "cbx not installed"}))
    sys.exit(3)

try:
    from importlib.metadata import version

    cbx_version = version("cbx")
except Exception:
    cbx_version = getattr(cbx, "__version__", "unknown")

f = Rastrigin() if a.function == "rastrigin" else Ackley()
rng = np.random.default_rng(a.seed)
x0 = rng.uniform(-a.init_range, a.init_range, (a.runs, a.particles, a.dim))


def make(x, seed):
    kw = dict(x=x, f_dim="3D", noise=a.noise, sigma=a.sigma, alpha=a.alpha, dt=a.dt, lamda=a.lamda,
              max_it=a.iters, verbosity=0, seed=seed)
    if not a.track_history:
        kw["track_args"] = {"names": []}
    return CBO(f, **kw)


def run(x, seed):
    """Runs one CBO dynamic on x (M, N, d); returns (best particles (M, d), consensus (M, d), iterations, evaluations)."""
    dyn = make(x, seed)
    dyn.optimize(sched="default" if a.sched == "default" else None)
    return dyn.best_particle, dyn.consensus[:, 0, :], dyn.it, int(np.sum(dyn.num_f_eval)), float(np.max(dyn.alpha))


t0 = time.perf_counter()
if a.sequential:
    parts = [run(x0[m:m + 1].copy(), a.seed + 1 + m) for m in range(a.runs)]
    best = np.concatenate([r[0] for r in parts])
    cons = np.concatenate([r[1] for r in parts])
    iters = int(max(r[2] for r in parts))
    evals = sum(r[3] for r in parts)
    alpha_final = max(r[4] for r in parts)
else:
    best, cons, iters, evals, alpha_final = run(x0.copy(), a.seed + 1)
seconds = time.perf_counter() - t0

x_true = np.zeros(a.dim)
ok_best = dist_to_min_success(best[:, None, :], x_true, tol=a.tol)
ok_cons = dist_to_min_success(cons[:, None, :], x_true, tol=a.tol)
print(json.dumps({
    "library": "cbxpy",
    "version": cbx_version,
    "function": a.function,
    "noise": a.noise,
    "mode": "sequential" if a.sequential else "parallel_ensembles",
    "dim": a.dim,
    "particles": a.particles,
    "sigma": a.sigma,
    "alpha": a.alpha,
    "alpha_final": alpha_final,
    "dt": a.dt,
    "sched": a.sched,
    "seed": a.seed,
    "success_rate": ok_best["rate"],
    "success_rate_consensus": ok_cons["rate"],
    "mean_inf_dist_best": float(np.mean(ok_best["normdiff"])),
    "iterations": iters,
    "runs": a.runs,
    "seconds": seconds,
    "iterations_per_second": iters * a.runs / seconds,
    "evaluations": evals,
}))
