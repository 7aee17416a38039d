"""Golden values for optlab::privacy from opacus 1.6.0 (and torch.func for per-sample gradients).

    pip install torch opacus numpy safetensors
    python tools/reference/privacy_fixtures.py accountant   # -> crates/optlab/tests/fixtures/privacy/accountant.json
    python tools/reference/privacy_fixtures.py persample    # -> .../privacy/persample_{mlp,cnn,transformer}.*
                                                            #    (also needs mup==1.0.0: imports transformer_fixture)

The accountant cases are (q, sigma, steps, delta) -> (epsilon, best order) from opacus's RDPAccountant with its
default orders, and (target epsilon, delta, q, steps) -> noise multiplier from opacus.accountants.utils.
get_noise_multiplier (tolerance 0.01). Cases cover integer and fractional best orders, tiny and full sampling
rates, short and long runs.
"""
import json
import sys
import warnings
from pathlib import Path

OUT = Path("crates/optlab/tests/fixtures/privacy")


def accountant():
    import opacus
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    warnings.simplefilter("ignore")
    cases = []
    grid = [
        (0.04, 1.5, 2250, 1e-5),
        (0.01, 1.0, 1000, 1e-5),
        (0.01, 1.1, 10000, 1e-5),
        (0.001, 0.8, 5000, 1e-6),
        (0.001, 2.0, 100000, 1e-6),
        (0.1, 0.7, 100, 1e-5),
        (0.1, 3.0, 3000, 1e-5),
        (0.256, 1.0, 60, 1e-5),
        (0.5, 2.5, 200, 1e-3),
        (1.0, 5.0, 10, 1e-5),
        (1.0, 20.0, 1000, 1e-6),
        (0.02, 0.6, 50, 1e-5),
        (0.02, 10.0, 50000, 1e-8),
        (0.004, 1.3, 25000, 1e-5),
        (0.0001, 0.9, 1000000, 1e-7),
        (0.05, 1.2, 1, 1e-5),
        (0.05, 50.0, 1, 1e-5),
        (0.3, 0.9, 10, 1e-2),
        (0.064, 1.1, 900, 1e-5),
        (0.016, 0.95, 12000, 1e-5),
        (0.75, 4.0, 40, 1e-5),
        (0.008, 4.0, 500, 0.5),
        (0.03, 1.6, 3333, 1e-10),
        (0.2, 1.0, 5, 1e-5),
    ]
    for q, sigma, steps, delta in grid:
        acc = RDPAccountant()
        acc.history = [(sigma, q, steps)]
        eps, order = acc.get_privacy_spent(delta=delta)
        cases.append(dict(q=q, sigma=sigma, steps=steps, delta=delta, epsilon=float(eps), order=float(order)))
    calib = []
    for eps, delta, q, steps in [
        (8.0, 1e-5, 0.04, int(90 / 0.04)),
        (8.0, 1e-5, 0.04, 2000),
        (1.0, 1e-5, 0.01, 1000),
        (3.0, 1e-5, 0.01, 5000),
        (0.5, 1e-6, 0.001, 20000),
        (10.0, 1e-5, 0.25, 100),
    ]:
        s = get_noise_multiplier(target_epsilon=eps, target_delta=delta, sample_rate=q, steps=steps,
                                 accountant="rdp", epsilon_tolerance=0.01)
        calib.append(dict(epsilon=eps, delta=delta, q=q, steps=steps, sigma=float(s)))
    OUT.mkdir(parents=True, exist_ok=True)
    doc = dict(source=f"opacus {opacus.__version__} RDPAccountant (default orders), get_noise_multiplier(tol 0.01)",
               epsilon=cases, noise=calib)
    (OUT / "accountant.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(cases)} epsilon and {len(calib)} noise cases")


def persample():
    """Per-sample gradients from torch.func (vmap of grad of one example's summed cross-entropy) for three models
    with optlab's structure and state-dict names: an MLP, a CNN with GroupNorm (cnn:channels=4-8,norm=gn,groups=2
    on 1x8x8 images) and a one-block LayerNorm transformer on right-padded windows. Float32. Each case writes
    <case>.safetensors (state dict, x, y, and per-sample gradients as ps.<name> of shape [B, ...]) and
    <case>.json (the optlab spec, the input shape, the number of outputs)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap
    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).parent))
    import transformer_fixture as tf

    def perturb_norms(m, g):
        for mod in m.modules():
            if isinstance(mod, (nn.GroupNorm, nn.LayerNorm)):
                with torch.no_grad():
                    mod.weight.add_(0.3 * torch.randn(mod.weight.shape, generator=g))
                    mod.bias.add_(0.3 * torch.randn(mod.bias.shape, generator=g))

    def write(name, m, x, y, spec, input_shape, outputs):
        params = {k: v.detach() for k, v in m.named_parameters()}

        def loss_one(p, xb, yb):
            out = functional_call(m, p, (xb.unsqueeze(0),))
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1), ignore_index=-100,
                                   reduction="sum")

        ps = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
        tensors = {k: v.contiguous() for k, v in m.state_dict().items()}
        tensors["x"] = x.contiguous().float() if x.is_floating_point() else x.contiguous().float()
        tensors["y"] = y.contiguous().float()
        for k, v in ps.items():
            tensors[f"ps.{k}"] = v.contiguous()
        save_file(tensors, str(OUT / f"persample_{name}.safetensors"))
        meta = dict(spec=spec, input_shape=input_shape, outputs=outputs, batch=int(x.shape[0]),
                    source=f"torch {torch.__version__} torch.func vmap(grad) of the summed cross-entropy")
        (OUT / f"persample_{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(name, {k: list(v.shape) for k, v in ps.items()})

    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    write("mlp", mlp, torch.randn(6, 8, generator=g), torch.randint(0, 3, (6,), generator=g),
          "mlp:hidden=16,act=tanh", [8], 3)

    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(32, 3))
    perturb_norms(cnn, g)
    write("cnn", cnn, torch.randn(5, 1, 8, 8, generator=g), torch.randint(0, 3, (5,), generator=g),
          "cnn:channels=4-8,norm=gn,groups=2", [1, 8, 8], 3)

    v, ctx, b = 11, 6, 4
    lm = tf.model(v, ctx, 16, 2, 2, 1, "ln", 1)
    perturb_norms(lm, g)
    ids, tg = torch.randint(0, v, (b, ctx), generator=g), torch.randint(0, v, (b, ctx), generator=g)
    lengths = torch.tensor([ctx, 3, 5, 1])
    pad = torch.arange(ctx).unsqueeze(0) >= lengths.unsqueeze(1)
    ids[pad], tg[pad] = v, -100
    write("transformer", lm, ids, tg, "transformer:layers=1,dim=16,heads=2,mlp=2,norm=ln", [ctx], v)


if __name__ == "__main__":
    {"accountant": accountant, "persample": persample}[sys.argv[1]]()
