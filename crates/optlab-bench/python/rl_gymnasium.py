"""Environment steps per second of Gymnasium's CartPole-v1 and Pendulum-v1 (gym.make, with its wrappers, as users
run them): random actions drawn beforehand, reset when an episode ends; best of 3 runs. Then 64 copies with
gym.make_vec(..., vectorization_mode="sync") (autoreset inside), steps counted per copy. Prints one JSON line.
Exit 3 when gymnasium is not installed (pip install gymnasium)."""
import json
import sys
import time

try:
    import gymnasium as gym
    import numpy as np
except ImportError:
    sys.exit(3)

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
out = {"gymnasium": gym.__version__}
for name in ["CartPole-v1", "Pendulum-v1"]:
    env = gym.make(name)
    rng = np.random.default_rng(0)
    if name == "CartPole-v1":
        actions = [int(a) for a in rng.integers(0, 2, size=steps)]
    else:
        actions = [np.array([a], dtype=np.float32) for a in rng.uniform(-2, 2, size=steps)]
    best = 0.0
    for _ in range(3):
        env.reset(seed=0)
        t = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        best = max(best, steps / (time.perf_counter() - t))
    out[name] = best
for name in ["CartPole-v1", "Pendulum-v1"]:
    envs = gym.make_vec(name, num_envs=64, vectorization_mode="sync")
    rng = np.random.default_rng(0)
    rounds = max(1, steps // 64)
    if name == "CartPole-v1":
        actions = [rng.integers(0, 2, size=64) for _ in range(rounds)]
    else:
        actions = [rng.uniform(-2, 2, size=(64, 1)).astype(np.float32) for _ in range(rounds)]
    best = 0.0
    for _ in range(3):
        envs.reset(seed=0)
        t = time.perf_counter()
        for a in actions:
            envs.step(a)
        best = max(best, rounds * 64 / (time.perf_counter() - t))
    out[name + " x64"] = best
print(json.dumps(out))
