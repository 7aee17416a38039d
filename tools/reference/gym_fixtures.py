"""Gymnasium trajectories and tables for crates/optlab/tests/rl.rs (the environments of optlab::rl).

    pip install gymnasium==1.4.0 scipy numpy
    python3 tools/reference/gym_fixtures.py

Writes crates/optlab/tests/fixtures/rl/gym.json:
  * CartPole-v1 (unwrapped, float64 state): three start states set directly, each followed by an action sequence
    (random, or a balancing rule for 300 steps) until termination; the state, reward and terminated flag after
    every step;
  * Pendulum-v1 (g = 10): three start states and fixed torque sequences (some beyond the +-2 limit, so the clip is
    exercised) of 80 steps; the state [theta, thetadot], the observation [cos, sin, thetadot] and the reward;
  * FrozenLake-v1 4x4, slippery and not: the whole transition table env.P;
  * a discrete LQR: scipy.linalg.solve_discrete_are's P for a 3-state, 2-input system and the gain
    K = (R + B'PB)^-1 B'PA.
"""

import json
import os

import common


def main():
    import gymnasium as gym
    import numpy as np
    import scipy.linalg

    out = {"gymnasium": gym.__version__}
    rng = np.random.default_rng(20)

    cart = []
    for k in range(3):
        env = gym.make("CartPole-v1").unwrapped
        env.reset(seed=k)
        start = rng.uniform(-0.05, 0.05, size=4) * (1 + 2 * k)
        env.state = np.array(start, dtype=np.float64)
        random_actions = [int(a) for a in rng.integers(0, 2, size=60)]
        steps, actions = [], []
        for t in range(300 if k == 1 else 60):
            # Run 1 balances the pole (push towards the side it falls to) for 300 steps; the others act at random.
            a = int(env.state[2] + 0.5 * env.state[3] > 0) if k == 1 else random_actions[t]
            actions.append(a)
            _, r, term, _, _ = env.step(a)
            steps.append({"state": [float(v) for v in env.state], "reward": float(r), "terminated": bool(term)})
            if term:
                break
        cart.append({"start": start.tolist(), "actions": actions, "steps": steps})
    out["cartpole"] = cart

    pend = []
    for k in range(3):
        env = gym.make("Pendulum-v1").unwrapped
        env.reset(seed=k)
        start = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-1, 1)])
        env.state = start.copy()
        actions = [float(a) for a in rng.uniform(-3, 3, size=80)]
        steps = []
        for a in actions:
            obs, r, _, _, _ = env.step(np.array([a], dtype=np.float64))
            steps.append({"state": [float(v) for v in env.state], "obs": [float(v) for v in obs],
                          "reward": float(r)})
        pend.append({"start": start.tolist(), "actions": actions, "steps": steps})
    out["pendulum"] = pend

    lakes = {}
    for slippery in [True, False]:
        env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=slippery).unwrapped
        lakes["slippery" if slippery else "deterministic"] = {
            str(s): {str(a): [[p, int(s2), float(r), bool(t)] for (p, s2, r, t) in env.P[s][a]] for a in range(4)}
            for s in range(16)
        }
    out["frozenlake"] = lakes

    A = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.05, 0.0, 0.98]])
    B = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.2]])
    Q = np.diag([1.0, 0.5, 0.2])
    R = np.array([[0.3, 0.05], [0.05, 0.4]])
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    out["lqr"] = {"A": A.ravel().tolist(), "B": B.ravel().tolist(), "Q": Q.ravel().tolist(), "R": R.ravel().tolist(),
                  "P": P.ravel().tolist(), "K": K.ravel().tolist()}

    os.makedirs(common.fixtures_dir("rl"), exist_ok=True)
    with open(common.fixtures_dir("rl", "gym.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("cartpole lengths", [len(c["steps"]) for c in cart])


if __name__ == "__main__":
    main()
