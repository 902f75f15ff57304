"""Time GRPO-A's log-prob passes with and without one prefill per distinct prompt.

A GRPO-A step runs a reference pass (no grad) and a policy pass (forward + backward) over
its P x G completions. This script builds the prompts of real steps of a training config
(the generalist ``delta-hint`` Optimizer by default), gives every row a completion of
the length the format implies (the local-model tool's answer, encoded; timing depends on
shapes, not on which digits are there), and times both variants of both passes on the
SAME rows in one process, alternating the order per step so warm-up and load drift do
not favour one side:

- ``plain``  — every row runs prompt + completion (``training.common.token_logprobs``);
- ``shared`` — each distinct prompt runs once, its KV cache is repeated for the group
  (``training.shared_prompts.shared_token_logprobs``).

It also reports the largest log-prob difference between the two (they compute the same
quantity). Run it on an otherwise idle box for absolute figures; the ratio is what to quote.

    python benchmarks/grpo_logprob_passes.py --steps 3
    python benchmarks/grpo_logprob_passes.py --base tiny-random --steps 2   # quick code-path run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SFT_OPTIMIZER = ROOT / "training/runs/gen-sft-optimizer-hint/adapter"


def step_rows(tok, cfg, src, step):
    """Prompt ids (left-padded, prompt x G) and teacher-shaped completions of ``step``."""
    from policies.prompts import encode, format_target
    from training import common

    P, G = cfg.prompts_per_step, cfg.group_size
    prompts = src.batch(P, step).repeat(G)
    enc = cfg.resolved_encoding
    p_ids = common.prompt_ids(tok, [encode(r, enc) for r in prompts.requests])
    c_ids = [tok(format_target(r, a, enc), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
             for r, a in zip(prompts.requests, prompts.teacher("local-model"))]
    ids, mask = common.left_pad(p_ids, tok.pad_token_id)
    K = max(len(c) for c in c_ids)
    comp = torch.full((len(c_ids), K), tok.pad_token_id, dtype=torch.long)
    cmask = torch.zeros(len(c_ids), K)
    for i, c in enumerate(c_ids):  # completions are right-padded, as sampled
        comp[i, :len(c)] = torch.tensor(c)
        cmask[i, :len(c)] = 1
    return ids, mask, comp, cmask


def time_passes(model, ids, mask, comp, cmask, G, bf16, shared: bool) -> tuple[float, float, torch.Tensor]:
    """(seconds of the no-grad reference pass, seconds of the policy forward+backward,
    the no-grad log-probs)."""
    from training import common
    from training.shared_prompts import shared_token_logprobs

    def run():
        if shared:
            return shared_token_logprobs(model, ids, mask, comp, cmask, G, bf16=bf16)
        full_ids, full_mask = torch.cat([ids, comp], 1), torch.cat([mask, cmask.long()], 1)
        return common.token_logprobs(model, full_ids, full_mask, comp.shape[1], bf16=bf16)

    t0 = time.perf_counter()
    with torch.no_grad():
        lp = run()
    t1 = time.perf_counter()
    for p in model.parameters():
        p.grad = None
    (run() * cmask).sum().backward()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, lp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "training/configs/generalist-grpo-hint.json"))
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--adapter", default=None, help="LoRA to train (default: the shipped-run SFT Optimizer)")
    ap.add_argument("--steps", type=int, default=3, help="training steps whose rows are timed")
    ap.add_argument("--first-step", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args(argv)

    from training import common
    from training.config import build_train_config
    from training.rollouts import PromptSource

    cfg = build_train_config("grpo", args.config, {"role": "optimizer", "base": args.base})
    if args.threads:
        torch.set_num_threads(args.threads)
    bf16 = not args.no_bf16
    adapter = args.adapter or (str(SFT_OPTIMIZER) if args.base == "embedded" else None)
    model, tok = common.load_model(args.base, cfg.lora, adapter, adapters=(common.POLICY,), seed=0)
    model.eval()
    src = PromptSource(cfg.rollout, "optimizer", seed=cfg.seed)
    rows, diffs = [], []
    for k, step in enumerate(range(args.first_step, args.first_step + args.steps)):
        ids, mask, comp, cmask = step_rows(tok, cfg, src, step)
        res = {}
        for shared in ((False, True) if k % 2 == 0 else (True, False)):
            res[shared] = time_passes(model, ids, mask, comp, cmask, cfg.group_size, bf16, shared)
        real = cmask.bool()
        diffs.append(float((res[True][2] - res[False][2])[real].abs().max()))
        rows.append((step, ids.shape[1], comp.shape[1], res[False][:2], res[True][:2]))
        print(f"step {step}: prompt {ids.shape[1]} + completion {comp.shape[1]} tokens x {ids.shape[0]} rows; "
              f"plain {sum(res[False][:2]):.1f} s, shared {sum(res[True][:2]):.1f} s", flush=True)

    plain = np.array([sum(r[3]) for r in rows])
    shared = np.array([sum(r[4]) for r in rows])
    load = os.getloadavg()
    lines = [
        f"GRPO-A log-prob passes (reference no-grad + policy forward/backward), {args.base}"
        f"{' + ' + Path(adapter).parent.name if adapter else ''}, P={cfg.prompts_per_step} G={cfg.group_size}, "
        f"bf16={bf16}, torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
        f"load average {load[0]:.2f} {load[1]:.2f}",
        "",
        "| step | tokens (prompt + completion) | plain ref / policy (s) | shared ref / policy (s) | speed-up |",
        "|---|---|---|---|---|",
    ]
    for step, lp_, lc, (pr, pp), (sr, sp) in rows:
        lines.append(f"| {step} | {lp_} + {lc} | {pr:.1f} / {pp:.1f} | {sr:.1f} / {sp:.1f} | "
                     f"{(pr + pp) / (sr + sp):.2f}x |")
    lines += ["", f"total: plain {plain.sum():.1f} s, shared {shared.sum():.1f} s, "
              f"**{plain.sum() / shared.sum():.2f}x**; largest log-prob difference {max(diffs):.2e}"]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
