# DP-SGD on the digits with opacus, the same setting as `optlab train --privacy` in
# scripts/experiments/dp_sgd_digits.sh: pixels / 16, a random 80/20 split (numpy seed), the MLP 64-128-10 (ReLU) with
# PyTorch's default initialisation, plain SGD (lr), Poisson sampling at q = batch / N (opacus's DPDataLoader), flat
# clipping at C, noise calibrated by opacus to (epsilon, delta) over the run's steps, float32, 2 threads.
# Prints one JSON line: validation accuracy, epsilon spent, the noise multiplier, seconds per step (private and
# not), per seed. Exit code 3 with {"error": ...} when torch or opacus is missing.
#   python dp_opacus.py --digits crates/optlab/data/digits.csv.gz --epsilon 3 --seeds 0,1,2
import argparse, gzip, json, sys, time, warnings

p = argparse.ArgumentParser()
p.add_argument("--digits", required=True)
p.add_argument("--epsilon", type=float, required=True)
p.add_argument("--delta", type=float, default=1e-5)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--lr", type=float, default=0.5)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--seeds", default="0,1,2")
a = p.parse_args()
try:
    import numpy as np
    import torch
    import torch.nn as nn
    import opacus
    from opacus import PrivacyEngine
except Exception as e:  # noqa: BLE001
    print(json.dumps({"error": f"{e}"}))
    sys.exit(3)
warnings.simplefilter("ignore")
torch.set_num_threads(2)
rows = np.loadtxt(gzip.open(a.digits, "rt"), delimiter=",")
X, Y = (rows[:, :64] / 16.0).astype(np.float32), rows[:, 64].astype(np.int64)


def run(seed, private):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    nval = int(round(0.2 * len(X)))
    tr, va = perm[nval:], perm[:nval]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(X[tr]), torch.from_numpy(Y[tr]))
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    engine = None
    if private:
        engine = PrivacyEngine(accountant="rdp")
        model, opt, loader = engine.make_private_with_epsilon(
            module=model, optimizer=opt, data_loader=loader, target_epsilon=a.epsilon, target_delta=a.delta,
            epochs=a.epochs, max_grad_norm=a.clip)
    lossf = nn.CrossEntropyLoss()
    steps, t0 = 0, time.perf_counter()
    for _ in range(a.epochs):
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            opt.zero_grad()
            lossf(model(xb), yb).backward()
            opt.step()
            steps += 1
    secs = (time.perf_counter() - t0) / max(steps, 1)
    with torch.no_grad():
        acc = (model(torch.from_numpy(X[va])).argmax(1).numpy() == Y[va]).mean()
    out = {"seed": seed, "val_accuracy": float(acc), "steps": steps, "seconds_per_step": secs}
    if engine is not None:
        out["epsilon"] = engine.get_epsilon(a.delta)
        out["noise_multiplier"] = opt.noise_multiplier
    return out


seeds = [int(s) for s in a.seeds.split(",")]
print(json.dumps({"opacus": opacus.__version__, "torch": torch.__version__, "epsilon_target": a.epsilon,
                  "private": [run(s, True) for s in seeds], "plain": [run(s, False) for s in seeds]}))
