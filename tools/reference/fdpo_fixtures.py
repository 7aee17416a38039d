"""P37 (f-DPO) fixtures for crates/optlab/tests/alignment.rs, from the official code:

  * alecwangcq/f-divergence-dpo `trainers.py` (commit 07d9369): `dpo_loss` (reverse KL, with `reference_free`),
    `forward_dpo_loss`, `js_dpo_loss`, `alpha_dpo_loss` (alpha in (0, 1));
  * eric-mitchell/direct-preference-optimization `trainers.py` (commit f8b8c0f): `preference_loss` with
    `label_smoothing` (conservative DPO) for reverse KL. For the other divergences the smoothed loss is TRL's
    sigmoid loss on the official logits, -(1 - eps) logsigmoid(beta z) - eps logsigmoid(-beta z), with beta z taken
    from the official rewards (chosen_rewards - rejected_rewards).

Both files import heavy training stacks (FSDP, wandb, tensor_parallel), so this script takes only the loss
functions out of them with `ast` and runs those. Get the files with

    git -C <f-divergence-dpo checkout> show 07d9369:trainers.py > $OPTLAB_REF_VENDOR/fdpo/fdpo_trainers.py
    git -C <direct-preference-optimization checkout> show f8b8c0f:trainers.py > $OPTLAB_REF_VENDOR/fdpo/dpo_trainers.py
    pip install torch
    python3 tools/reference/fdpo_fixtures.py

Writes crates/optlab/tests/fixtures/alignment/fdpo.json: per case the four log-probability vectors (float64), the
per-pair losses, rewards and the gradient of the mean loss in the policy log-probabilities (torch autograd).
"""

import argparse
import ast
import json
import os

import common

FDPO_SHA = "12df9359a43c34434d0770c1acd4dd016b9ca7224ca0a175451f7574e4bced69"
DPO_SHA = "96615b95a9fa52fd7c25b3c24b5e35998906e62bb564bee08022fb7aa1ce298a"


def load_functions(path, names):
    """Execute only the top-level `def`s called `names` of the file at `path`."""
    import torch
    import torch.nn.functional as F
    from typing import Tuple

    tree = ast.parse(open(path).read())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    missing = set(names) - {d.name for d in defs}
    if missing:
        raise SystemExit(f"{path}: no function {sorted(missing)}")
    scope = {"torch": torch, "F": F, "Tuple": Tuple}
    exec(compile(ast.Module(body=defs, type_ignores=[]), path, "exec"), scope)
    return scope


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-hash-check", action="store_true")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    fdpo_path = common.vendor_dir("fdpo", "fdpo_trainers.py")
    dpo_path = common.vendor_dir("fdpo", "dpo_trainers.py")
    common.check_reference(fdpo_path, FDPO_SHA, not args.no_hash_check)
    common.check_reference(dpo_path, DPO_SHA, not args.no_hash_check)
    off = load_functions(fdpo_path, ["stabilized_log1pexp", "dpo_loss", "forward_dpo_loss", "js_dpo_loss",
                                      "alpha_dpo_loss"])
    orig = load_functions(dpo_path, ["preference_loss"])

    gen = torch.Generator().manual_seed(37)
    n = 16

    def batch(spread):
        ref_c = -1.0 - 29.0 * torch.rand(n, generator=gen, dtype=torch.float64)
        ref_r = -1.0 - 29.0 * torch.rand(n, generator=gen, dtype=torch.float64)
        pol_c = ref_c + spread * (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1)
        pol_r = ref_r + spread * (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1)
        return pol_c, pol_r, ref_c, ref_r

    def official(div, beta, reference_free, eps):
        def run(pc, pr, rc, rr):
            if div == "reverse-kl":
                if eps > 0:
                    return orig["preference_loss"](pc, pr, rc, rr, beta, label_smoothing=eps,
                                                   reference_free=reference_free)
                return off["dpo_loss"](pc, pr, rc, rr, beta, reference_free=reference_free)
            if div == "forward-kl":
                out = off["forward_dpo_loss"](pc, pr, rc, rr, beta)
            elif div == "js":
                out = off["js_dpo_loss"](pc, pr, rc, rr, beta)
            else:
                out = off["alpha_dpo_loss"](pc, pr, rc, rr, beta, alpha=float(div.split(":")[1]))
            if eps == 0:
                return out
            # TRL's sigmoid loss with label smoothing on the official logits (beta z = reward difference; the
            # rewards are detached, so rebuild beta z differentiably from the unsmoothed loss: beta z = -logit(exp(-loss))).
            z = torch.log(torch.expm1(out[0])).neg()
            return (-F.logsigmoid(z) * (1 - eps) - F.logsigmoid(-z) * eps, out[1], out[2])
        return run

    cases = []
    specs = []
    for div in ["reverse-kl", "forward-kl", "js", "alpha:0.5", "alpha:0.2", "alpha:0.8"]:
        for beta in [0.1, 0.5]:
            specs.append((div, beta, False, 0.0, 2.0))
    specs += [("reverse-kl", 0.1, True, 0.0, 2.0), ("reverse-kl", 0.1, False, 0.1, 2.0),
              ("js", 0.5, False, 0.2, 2.0), ("forward-kl", 0.1, False, 0.05, 1.0),
              ("js", 1.0, False, 0.0, 8.0), ("reverse-kl", 2.0, False, 0.0, 8.0)]
    for div, beta, reference_free, eps, spread in specs:
        pc, pr, rc, rr = batch(spread)
        pcv = pc.clone().requires_grad_(True)
        prv = pr.clone().requires_grad_(True)
        losses, cr, rj = official(div, beta, reference_free, eps)(pcv, prv, rc, rr)
        losses.mean().backward()
        cases.append({
            "divergence": div, "beta": beta, "reference_free": reference_free, "label_smoothing": eps,
            "policy_chosen": pc.tolist(), "policy_rejected": pr.tolist(),
            "reference_chosen": rc.tolist(), "reference_rejected": rr.tolist(),
            "losses": losses.detach().tolist(), "chosen_rewards": cr.tolist(), "rejected_rewards": rj.tolist(),
            "grad_policy_chosen": pcv.grad.tolist(), "grad_policy_rejected": prv.grad.tolist(),
        })
    out = common.fixtures_dir("alignment")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "fdpo.json")
    with open(path, "w") as f:
        json.dump({"source": "alecwangcq/f-divergence-dpo@07d9369 trainers.py; eric-mitchell/direct-preference-"
                             "optimization@f8b8c0f trainers.py (label smoothing)", "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
