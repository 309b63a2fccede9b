"""Writes PeerGoldens.cs: inputs and outputs of the peers' own loss functions, for PeerParityTests.cs.

    python gen_peer_goldens.py --verl <checkout of volcengine/verl> --openrlhf <checkout of OpenRLHF/OpenRLHF> \
        --out PeerGoldens.cs

Sources (commits named in the output): verl verl/trainer/ppo/core_algos.py (agg_loss, compute_policy_loss_vanilla,
_gspo, _cispo) with verl/utils/torch_functional.py (masked_sum, masked_mean), extracted with ast because the
modules import Ray/Hydra/omegaconf; OpenRLHF openrlhf/models/loss.py (PolicyLoss) imported by path with deepspeed
stubbed, and openrlhf/trainer/ppo_utils/length_penalty.py (apply_overlong_penalty, extracted).
Needs torch only.
"""
import argparse
import ast
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Callable, Optional

import torch


def extract(path: Path, names, ns):
    src = path.read_text()
    fns = [n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {f.name for f in fns} == set(names), (path, names, [f.name for f in fns])
    for f in fns:
        f.decorator_list = []
    exec(compile(ast.Module(body=fns, type_ignores=[]), str(path), "exec"), ns)
    return ns


def commit(root: Path, given: Optional[str]) -> str:
    if given:
        return given[:9]
    return subprocess.check_output(["git", "-C", str(root), "rev-parse", "--short=9", "HEAD"], text=True).strip()


class ActorConfig(dict):
    """verl's ActorConfig as the loss functions read it: attributes, .get and global_batch_info."""

    def __init__(self, clip_low, clip_high, clip_c=3.0, global_batch_info=None):
        super().__init__(clip_ratio_c=clip_c)
        self.clip_ratio = clip_low
        self.clip_ratio_low = clip_low
        self.clip_ratio_high = clip_high
        self.global_batch_info = global_batch_info or {}


def load_verl(root: Path):
    ns = {"torch": torch, "Optional": Optional, "Any": Any}
    extract(root / "verl/utils/torch_functional.py", ["masked_sum", "masked_mean"], ns)
    verl_F = types.SimpleNamespace(masked_sum=ns["masked_sum"], masked_mean=ns["masked_mean"])
    core = {"torch": torch, "verl_F": verl_F, "Optional": Optional, "Any": Any, "ActorConfig": ActorConfig,
            "AlgoConfig": type("AlgoConfig", (), {}), "DictConfig": dict}
    extract(root / "verl/trainer/ppo/core_algos.py",
            ["agg_loss", "compute_policy_loss_vanilla", "compute_policy_loss_gspo", "compute_policy_loss_cispo"], core)
    return core


def load_openrlhf(root: Path):
    sys.modules.setdefault("deepspeed", types.ModuleType("deepspeed"))
    if not hasattr(torch, "compile"):  # torch < 2 (utils.py decorates compute_entropy, which is not used here)
        torch.compile = lambda f=None, **_: f
    pkg = types.ModuleType("orl_models")
    pkg.__path__ = [str(root / "openrlhf" / "models")]
    sys.modules["orl_models"] = pkg
    import importlib
    return importlib.import_module("orl_models.loss")


def t(x):
    x = x.detach().cpu()
    if x.dtype == torch.bool:
        return {"shape": list(x.shape), "data": x.flatten().int().tolist()}
    return {"shape": list(x.shape), "data": [float("%.9g" % v) for v in x.float().flatten().tolist()]}


def inputs(seed, empty_row=False):
    g = torch.Generator().manual_seed(seed)
    B, A = 4, 8
    lengths = [3, 8, 5, 6] if not empty_row else [3, 8, 0, 6]
    mask = torch.zeros(B, A)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    mask[1, 2] = 0  # a hole
    logp = -(torch.rand(B, A, generator=g) * 2.9 + 0.05)
    old = logp + torch.randn(B, A, generator=g) * 0.25
    adv = torch.randn(B, A, generator=g)
    return logp * mask, old * mask, adv * mask, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verl", type=Path, required=True)
    ap.add_argument("--openrlhf", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--verl-commit", help="the commit, when --verl is an exported tree rather than a checkout")
    ap.add_argument("--openrlhf-commit", help="likewise for --openrlhf")
    args = ap.parse_args()
    verl = load_verl(args.verl)
    orl_loss = load_openrlhf(args.openrlhf)
    cases = []

    def policy_case(source, op, name, argd, seed, fn, sequence_advantages=False):
        logp, old, adv, mask = inputs(seed)
        if sequence_advantages:  # one advantage per sequence (GRPO's), broadcast over its tokens
            adv = adv[:, :1].expand_as(adv) * mask
        lp = logp.clone().requires_grad_(True)
        loss, extra = fn(lp, old, adv, mask)
        loss.backward()
        out = {"loss": t(loss), "grad": t(lp.grad)}
        out.update({k: t(torch.as_tensor(v)) for k, v in extra.items()})
        cases.append({"source": source, "op": op, "name": name, "args": argd,
                      "in": {"logp": t(logp), "old": t(old), "adv": t(adv), "mask": t(mask.bool())}, "out": out})

    # verl vanilla = PPO with dual clip c (always on there), token-mean over the micro-batch.
    for seed, (lo, hi, c) in enumerate([(0.2, 0.2, 3.0), (0.2, 0.28, 3.0), (0.1, 0.3, 1.5), (0.2, 0.28, 10.0)]):
        def f(lp, old, adv, mask, lo=lo, hi=hi, c=c):
            loss, m = verl["compute_policy_loss_vanilla"](old, lp, adv, mask, "token-mean", ActorConfig(lo, hi, c))
            return loss, {"clipfrac": m["actor/pg_clipfrac"], "ppo_kl": m["actor/ppo_kl"],
                          "clipfrac_lower": m["actor/pg_clipfrac_lower"]}
        policy_case("verl", "ppo", f"verl_vanilla_{seed}", {"low": lo, "high": hi, "dual": c, "agg": "micro-token-mean"}, 10 + seed, f)
    for seed, (lo, hi) in enumerate([(0.2, 0.2), (3e-4, 4e-4), (0.05, 0.1)]):
        def f(lp, old, adv, mask, lo=lo, hi=hi):
            loss, m = verl["compute_policy_loss_gspo"](old, lp, adv, mask, "seq-mean-token-mean", ActorConfig(lo, hi))
            return loss, {"clipfrac": m["actor/pg_clipfrac"], "ppo_kl": m["actor/ppo_kl"]}
        policy_case("verl", "gspo", f"verl_gspo_{seed}", {"low": lo, "high": hi, "agg": "micro-token-mean"}, 20 + seed, f)
    for seed, (lo, hi) in enumerate([(0.2, 0.2), (1.0, 0.28), (10.0, 0.1)]):
        def f(lp, old, adv, mask, lo=lo, hi=hi):
            loss, m = verl["compute_policy_loss_cispo"](old, lp, adv, mask, "token-mean", ActorConfig(lo, hi))
            return loss, {"clipfrac": m["actor/pg_clipfrac"], "ppo_kl": m["actor/ppo_kl"]}
        policy_case("verl", "cispo", f"verl_cispo_{seed}", {"low": lo, "high": hi, "agg": "micro-token-mean"}, 30 + seed, f)

    # OpenRLHF PolicyLoss: ppo (clip-higher, optional dual clip, token/sequence level) and gspo.
    orl = [("ppo", 0.2, 0.2, None, True), ("ppo", 0.2, 0.28, None, True), ("ppo", 0.2, 0.28, 3.0, True),
           ("ppo", 0.2, 0.28, None, False), ("gspo", 0.2, 0.27, None, True)]
    for i, (typ, lo, hi, dual, token_level) in enumerate(orl):
        def f(lp, old, adv, mask, typ=typ, lo=lo, hi=hi, dual=dual, token_level=token_level):
            pl = orl_loss.PolicyLoss(clip_eps_low=lo, clip_eps_high=hi, dual_clip=dual, token_level_loss=token_level,
                                     policy_loss_type=typ)
            loss, clip_ratio, ppo_kl, _ = pl(lp, old, adv, action_mask=mask)
            return loss, {"clipfrac": clip_ratio, "ppo_kl": ppo_kl}
        agg = "micro-token-mean" if token_level else "micro-seq-mean-token-mean"
        # OpenRLHF's gspo differentiates exp(mean log ρ) itself, verl (and we) use GSPO-token's sg[s]·π/sg[π]: the
        # same value, and the same gradient when the advantage is constant over a sequence, as GSPO defines it.
        policy_case("openrlhf", typ, f"openrlhf_{typ}_{i}", {"low": lo, "high": hi, "dual": dual, "agg": agg}, 40 + i, f,
                    sequence_advantages=typ == "gspo")

    # verl agg_loss over a step of two micro-batches (one with an empty row): each mode with the step's totals, so
    # the sum of our per-micro-batch values ÷ divisor must equal verl's value on the whole batch.
    for i, mode in enumerate(["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]):
        g = torch.Generator().manual_seed(60 + i)
        _, _, _, m1 = inputs(60 + i)
        _, _, _, m2 = inputs(70 + i, empty_row=True)
        mask = torch.cat([m1, m2])
        loss = torch.randn(mask.shape, generator=g)
        norm_len = 16
        kwargs = {}
        if mode == "seq-mean-token-sum-norm":
            kwargs["loss_scale_factor"] = (mask.sum(-1) > 0).sum().item() * norm_len  # B × L: TRL's dr_grpo
        full = verl["agg_loss"](loss, mask, mode, **kwargs)
        cases.append({"source": "verl", "op": "agg", "name": f"verl_agg_{mode}", "args": {"mode": mode, "norm_len": norm_len},
                      "in": {"loss": t(loss), "mask": t(mask.bool())}, "out": {"value": t(full)}})

    # OpenRLHF's overlong penalty, per response length (the rule inside apply_length_penalties, run on its own).
    for max_new, buf, factor in [(20, 8, 1.0), (512, 128, 0.5)]:
        lengths = list(range(0, max_new + 1, max(1, max_new // 20)))
        rewards = torch.zeros(len(lengths))
        exp = types.SimpleNamespace(response_length=torch.tensor(lengths), rewards=rewards)
        ns = {"torch": torch, "List": list}
        src = (args.openrlhf / "openrlhf/trainer/ppo_utils/length_penalty.py").read_text()
        fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "apply_overlong_penalty")
        exec(compile(ast.Module(body=[fn], type_ignores=[]), "length_penalty.py", "exec"), ns)
        ns["apply_overlong_penalty"]([exp], max_new, buf, factor)
        cases.append({"source": "openrlhf", "op": "overlong", "name": f"openrlhf_overlong_{max_new}_{buf}",
                      "args": {"max_new": max_new, "buffer": buf, "factor": factor, "lengths": lengths},
                      "in": {}, "out": {"penalty": t(rewards)}})

    doc = {"verl": commit(args.verl, args.verl_commit), "openrlhf": commit(args.openrlhf, args.openrlhf_commit), "torch": torch.__version__, "cases": cases}
    text = json.dumps(doc, separators=(",", ":"))
    header = (f"// Generated by gen_peer_goldens.py from volcengine/verl {doc['verl']} and OpenRLHF/OpenRLHF {doc['openrlhf']}\n"
              f"// with torch {torch.__version__} on CPU. Do not edit: regenerate. Read by PeerParityTests.\n")
    args.out.write_text(header + "namespace LmmR1.Tests.Algorithms;\n\ninternal static class PeerGoldens\n{\n"
                        "    public const string Json = \"\"\"\n" + text + "\n\"\"\";\n}\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
