# The PyTorch side of `optlab-bench rl`: one TD3 update as CleanRL's td3_continuous_action.py does it (twin
# critics and one Adam over both, target policy smoothing, the actor and the Polyak averaging every second
# update), on Pendulum-v1's sizes (3 observations, 1 action, MLPs 256-256, batch 256) from a replay buffer of
# 10^5 random transitions. Arguments: threads, updates per timed run. Prints {"ms_per_update": best of 3}.
import json, sys, time
import torch
import torch.nn as nn

threads, updates = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
obs, act, hidden, batch, bound = 3, 1, 256, 256, 2.0
gamma, tau, policy_noise, noise_clip, delay = 0.99, 0.005, 0.2, 0.5, 2


def mlp(i, o):
    return nn.Sequential(nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, o))


actor, actor_t = mlp(obs, act), mlp(obs, act)
q1, q2, q1_t, q2_t = (mlp(obs + act, 1) for _ in range(4))
for t, s in [(actor_t, actor), (q1_t, q1), (q2_t, q2)]:
    t.load_state_dict(s.state_dict())
q_opt = torch.optim.Adam(list(q1.parameters()) + list(q2.parameters()), lr=3e-4)
a_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
n = 100_000
S, A, R = torch.randn(n, obs), torch.rand(n, act) * 4 - 2, torch.randn(n, 1)
S2, D = torch.randn(n, obs), (torch.rand(n, 1) < 0.01).float()


def pi(net, s):
    return bound * torch.tanh(net(s))


def update(k):
    i = torch.randint(0, n, (batch,))
    s, a, r, s2, d = S[i], A[i], R[i], S2[i], D[i]
    with torch.no_grad():
        noise = (torch.randn_like(a) * policy_noise * bound).clamp(-noise_clip * bound, noise_clip * bound)
        a2 = (pi(actor_t, s2) + noise).clamp(-bound, bound)
        sa2 = torch.cat([s2, a2], 1)
        y = r + (1 - d) * gamma * torch.min(q1_t(sa2), q2_t(sa2))
    sa = torch.cat([s, a], 1)
    loss = ((q1(sa) - y) ** 2).mean() + ((q2(sa) - y) ** 2).mean()
    q_opt.zero_grad()
    loss.backward()
    q_opt.step()
    if k % delay == 0:
        actor_loss = -q1(torch.cat([s, pi(actor, s)], 1)).mean()
        a_opt.zero_grad()
        actor_loss.backward()
        a_opt.step()
        with torch.no_grad():
            for t, o in [(actor_t, actor), (q1_t, q1), (q2_t, q2)]:
                for pt, po in zip(t.parameters(), o.parameters()):
                    pt.mul_(1 - tau).add_(po, alpha=tau)


for k in range(20):
    update(k)
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    for k in range(updates):
        update(k + 1)
    best = min(best, (time.perf_counter() - t0) / updates)
print(json.dumps({"ms_per_update": best * 1e3}))
