"""Writes UpstreamGoldens.cs: inputs and outputs of LMM-R1's own RL math (TideDra/lmm-r1 f917f18 =
OpenRLHF 0.7.3 + patches), run on CPU with PyTorch, for UpstreamParityTests.cs.

    python gen_openrlhf_goldens.py --lmm-r1 <checkout of TideDra/lmm-r1> --out UpstreamGoldens.cs

Imports upstream's files by path: openrlhf/models/{utils,loss}.py, trainer/ppo_utils/kl_controller.py, and the
three advantage methods of experience_maker.RemoteExperienceMaker (extracted with ast; the module itself needs Ray).
Needs torch and numpy only.
"""
import argparse
import ast
import importlib
import importlib.util
import json
import logging
import sys
import types
from copy import deepcopy
from pathlib import Path

import torch


def load_upstream(root: Path):
    pkg = types.ModuleType("upstream_models")
    pkg.__path__ = [str(root / "openrlhf" / "models")]
    sys.modules["upstream_models"] = pkg
    utils = importlib.import_module("upstream_models.utils")
    loss = importlib.import_module("upstream_models.loss")
    spec = importlib.util.spec_from_file_location("upstream_klc", root / "openrlhf/trainer/ppo_utils/kl_controller.py")
    klc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(klc)

    src = (root / "openrlhf/trainer/ppo_utils/experience_maker.py").read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "RemoteExperienceMaker")
    wanted = {"compute_advantages_and_returns", "get_advantages_and_returns", "get_cumulative_returns"}
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert len(methods) == 3
    module = ast.Module(body=methods, type_ignores=[])
    ns = {
        "torch": torch, "deepcopy": deepcopy, "Experience": object, "compute_reward": utils.compute_reward, "masked_mean": utils.masked_mean,
        "logger": logging.getLogger("upstream"),
    }
    from typing import List, Optional, Tuple  # annotations in the extracted methods
    ns.update(List=List, Optional=Optional, Tuple=Tuple)
    exec(compile(module, "experience_maker.py", "exec"), ns)
    maker = type("Maker", (), {m: ns[m] for m in wanted})
    return utils, loss, klc, maker


def t(x):
    x = x.detach().cpu()
    if x.dtype == torch.bool:
        return {"shape": list(x.shape), "data": x.flatten().int().tolist()}
    # %.9g round-trips float32 exactly
    return {"shape": list(x.shape), "data": [float("%.9g" % v) for v in x.float().flatten().tolist()]}


def masks_b4_a8():
    # right-padded (eos in the middle), full, left-padded (replay-buffer layout), hole
    return torch.tensor([
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 1],
        [1, 1, 0, 1, 1, 0, 1, 0],
    ], dtype=torch.bool)


def generation_masks(g, b, a):
    # process_sequences layout: first action valid, then a prefix; one row keeps a hole
    lengths = torch.randint(1, a + 1, (b,), generator=g)
    m = torch.arange(a).unsqueeze(0) < lengths.unsqueeze(1)
    m[0, :] = True
    m[0, a // 2] = False
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lmm-r1", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--json", type=Path, help="also write the bare JSON here")
    args = ap.parse_args()
    utils, loss, klc, Maker = load_upstream(args.lmm_r1)
    g = torch.Generator().manual_seed(20250429)
    cases = []

    # KL estimators, on log-probs that are 0 under the mask as the actor returns them
    mask = masks_b4_a8()
    logp = (torch.randn(4, 8, generator=g) * 0.5 - 2) * mask
    ref = (logp - torch.randn(4, 8, generator=g) * 0.8) * mask
    for est in ["k1", "k2", "k3"]:
        kl = utils.compute_approx_kl(logp, ref, kl_estimator=est)
        kl_loss = utils.masked_mean(kl, mask)
        cases.append({"op": "kl", "name": f"kl_{est}", "args": {"estimator": est},
                      "in": {"logp": t(logp), "ref": t(ref), "mask": t(mask)},
                      "out": {"kl": t(kl), "kl_loss": t(kl_loss)}})

    # masked_mean over everything and per row
    x = torch.randn(4, 8, generator=g)
    cases.append({"op": "masked_mean", "name": "masked_mean", "args": {},
                  "in": {"x": t(x), "mask": t(mask)},
                  "out": {"all": t(utils.masked_mean(x, mask)), "rows": t(utils.masked_mean(x, mask, dim=-1))}})

    # compute_reward with clipping and with a negative coefficient and no clip
    r = torch.tensor([-15.0, 3.5, 12.0, -0.7])
    kl = torch.randn(4, 8, generator=g).abs() * 0.2 * mask
    for coef, clip in [(0.05, (-10.0, 10.0)), (-0.1, None)]:
        out = utils.compute_reward(r, coef, kl, action_mask=mask, reward_clip_range=clip)
        cases.append({"op": "compute_reward", "name": f"compute_reward_{coef}",
                      "args": {"kl_coef": coef, "clip": list(clip) if clip else None},
                      "in": {"r": t(r), "kl": t(kl), "mask": t(mask)}, "out": {"reward": t(out)}})

    # GAE and return-to-go directly
    m = generation_masks(g, 4, 8)
    values = torch.randn(4, 8, generator=g) * m
    rewards = torch.randn(4, 8, generator=g)
    adv, ret = Maker.get_advantages_and_returns(None, values, rewards, m, 0.99, 0.95)
    cases.append({"op": "gae", "name": "gae", "args": {"gamma": 0.99, "lambd": 0.95},
                  "in": {"values": t(values), "rewards": t(rewards), "mask": t(m)},
                  "out": {"advantages": t(adv), "returns": t(ret)}})
    rtg = Maker.get_cumulative_returns(None, rewards, m, 0.9)
    cases.append({"op": "rtg", "name": "rtg", "args": {"gamma": 0.9},
                  "in": {"rewards": t(rewards), "mask": t(m)}, "out": {"returns": t(rtg)}})

    # compute_advantages_and_returns: 2 prompts × n = 3 in 3 micro-batches of 2 (groups straddle micro-batches);
    # rewards in ±12 so that shaped rewards get clipped to ±10
    n, mb, a = 3, 2, 6
    roll_masks = [generation_masks(g, mb, a) for _ in range(3)]
    roll_rewards = [torch.rand(mb, generator=g) * 24 - 12 for _ in range(3)]
    roll_kl = [utils.compute_approx_kl(torch.randn(mb, a, generator=g) * 0.3 * mm, torch.zeros(mb, a), "k1") * mm
               for mm in roll_masks]
    roll_values = [torch.randn(mb, a, generator=g) * mm for mm in roll_masks]
    for est in ["gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo"]:
        for no_std in [False, True]:
            a_ns = types.SimpleNamespace(advantage_estimator=est, n_samples_per_prompt=n, gamma=0.9, lambd=0.95,
                                         reward_clip_range=(-10.0, 10.0), no_advantage_std_norm=no_std)
            maker = Maker()
            maker.strategy = types.SimpleNamespace(args=a_ns)
            maker.args = a_ns
            maker.advantage_estimator = est
            maker.kl_ctl = types.SimpleNamespace(value=0.05)
            maker.custom_experience_filter = None
            exps = [types.SimpleNamespace(info={"reward": rr.clone()}, kl=kk.clone(), action_mask=mm.clone(),
                                          values=vv.clone(), advantages=None, returns=None)
                    for rr, kk, mm, vv in zip(roll_rewards, roll_kl, roll_masks, roll_values)]
            exps = maker.compute_advantages_and_returns(exps)
            cases.append({"op": "pipeline", "name": f"pipeline_{est}_{'nostd' if no_std else 'std'}",
                          "args": {"estimator": est, "n": n, "gamma": 0.9, "lambd": 0.95, "clip": [-10.0, 10.0],
                                   "no_std": no_std, "kl_coef": 0.05},
                          "in": {f"{k}{i}": t(v) for i in range(3) for k, v in
                                 [("rewards", roll_rewards[i]), ("kl", roll_kl[i]), ("mask", roll_masks[i]),
                                  ("values", roll_values[i])]},
                          "out": {f"{k}{i}": t(v) for i, e in enumerate(exps) for k, v in
                                  [("advantages", e.advantages), ("returns", e.returns), ("return", e.info["return"])]}})

    # PolicyLoss / ValueLoss with gradients, token- and sequence-level
    old = torch.randn(4, 8, generator=g) * 0.5 - 2
    lp0 = old + torch.randn(4, 8, generator=g) * 0.3
    adv = torch.randn(4, 8, generator=g)
    for token_level in [True, False]:
        lp = lp0.clone().requires_grad_(True)
        out = loss.PolicyLoss(0.2, token_level_loss=token_level)(lp, old, adv, action_mask=mask)
        out.backward()
        cases.append({"op": "policy_loss", "name": f"policy_loss_{token_level}",
                      "args": {"eps": 0.2, "token_level": token_level},
                      "in": {"logp": t(lp0), "old": t(old), "adv": t(adv), "mask": t(mask)},
                      "out": {"loss": t(out), "grad": t(lp.grad)}})
    old_v = torch.randn(4, 8, generator=g)
    v0 = old_v + torch.randn(4, 8, generator=g) * 0.3
    rets = old_v + torch.randn(4, 8, generator=g) * 0.5
    for clip, token_level in [(0.2, True), (0.2, False), (None, True)]:
        v = v0.clone().requires_grad_(True)
        out = loss.ValueLoss(clip, token_level_loss=token_level)(v, old_v, rets, action_mask=mask)
        out.backward()
        cases.append({"op": "value_loss", "name": f"value_loss_{clip}_{token_level}",
                      "args": {"clip": clip, "token_level": token_level},
                      "in": {"values": t(v0), "old": t(old_v), "returns": t(rets), "mask": t(mask)},
                      "out": {"loss": t(out), "grad": t(v.grad)}})

    # Actor.forward's action log-probs and entropy: logits [B, S, V], the last A tokens are actions
    b, s, vocab, na, temp = 2, 7, 20, 3, 0.7
    logits = torch.randn(b, s, vocab, generator=g) * 3
    seqs = torch.randint(0, vocab, (b, s), generator=g)
    amask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    entropy = utils.compute_entropy(logits)
    lp_all = utils.log_probs_from_logits(logits.clone(), torch.roll(seqs, shifts=-1, dims=1), temperature=temp)
    cases.append({"op": "actor", "name": "actor_logprobs_entropy", "args": {"temperature": temp},
                  "in": {"logits": t(logits), "sequences": {"shape": [b, s], "data": seqs.flatten().tolist()},
                         "mask": t(amask)},
                  "out": {"entropy": t(entropy), "action_log_probs": t(lp_all[:, :-1][:, -na:] * amask.float()),
                          "action_entropy": t(entropy[:, :-1][:, -na:])}})

    # Adaptive KL controller over a few rollouts
    ctl = klc.AdaptiveKLController(0.1, 0.05, 10000)
    steps = [(0.06, 4096), (0.2, 4096), (0.01, 4096), (0.05, 4096), (0.045, 1024)]
    history = []
    for kl_now, nsteps in steps:
        ctl.update(kl_now, nsteps)
        history.append(float(ctl.value))
    cases.append({"op": "kl_controller", "name": "adaptive_kl", "args": {"init": 0.1, "target": 0.05,
                  "horizon": 10000, "steps": [list(x) for x in steps]}, "in": {}, "out": {"values": history}})

    doc = {"source": "TideDra/lmm-r1 f917f18", "torch": torch.__version__, "cases": cases}
    text = json.dumps(doc, separators=(",", ":"))
    # one case per line keeps diffs readable
    text = text.replace(',{"op":', ',\n{"op":')
    args.out.write_text(
        "// Generated by gen_openrlhf_goldens.py from TideDra/lmm-r1 f917f18 (OpenRLHF 0.7.3 + patches) with torch "
        + torch.__version__ + " on CPU.\n// Do not edit: regenerate. Read by UpstreamParityTests.\n"
        "namespace LmmR1.Tests.Algorithms;\n\ninternal static class UpstreamGoldens\n{\n"
        '    public const string Json = """\n' + text + '\n""";\n}\n')
    if args.json:
        args.json.write_text(text)
    print(f"{len(cases)} cases, {len(text)} chars -> {args.out}")


if __name__ == "__main__":
    main()
