"""Time GRPO-A's rollouts three ways on the same rows: hf plain, hf with one prefill per
distinct prompt, and vLLM.

Each training step samples P x G completions (the generalist ``delta-hint`` Optimizer
config by default: P = 4, G = 8, answer format enforced, cap following T). This script
builds the rows of real steps and samples them with

- ``hf plain``  — ``training.grpo.sample``, every row prefilled whole;
- ``hf shared`` — the same with ``group=G``: each distinct prompt prefilled once, its KV
  cache repeated for its G rows (``training.shared_prompts.shared_prefill``); on CPU the
  decode runs in fp32 over the upcast cache (``sampling_prefill``);
- ``hf shared bf16`` — ``hf shared`` with the decode under bf16 autocast too (how the
  trainer sampled before the fp32 decode);
- ``vllm``      — ``training.vllm_rollouts.VLLMRollouts`` (offline engine in a worker
  process, the current adapter published as a LoRA; engine start-up not counted),

in one process, one after the other per step, and reports seconds per step and completion
tokens per second. The two hf variants draw the same tokens (row-seeded sampling); vLLM
draws its own (same distribution, other random numbers).

    python benchmarks/grpo_rollouts.py --steps 3 --first-step 9
    python benchmarks/grpo_rollouts.py --steps 3 --first-step 9 --variants "hf shared bf16,hf shared" --no-vllm
    python benchmarks/grpo_rollouts.py --base tiny-random --steps 1 --no-vllm   # code paths only
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SFT_OPTIMIZER = ROOT / "training/runs/gen-sft-optimizer-hint/adapter"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "training/configs/generalist-grpo-hint.json"))
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--adapter", default=None, help="policy LoRA (default: the SFT Optimizer the run starts from)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--first-step", type=int, default=9)
    ap.add_argument("--no-vllm", action="store_true")
    ap.add_argument("--variants", default="hf plain,hf shared",
                    help="comma list of hf plain, hf shared, hf shared bf16 (vllm is added unless --no-vllm)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from policies.prompts import DELTA_ENCODINGS, encode
    from training import common, grpo
    from training.config import build_train_config
    from training.rollouts import PromptSource
    from training.vllm_rollouts import rollout_session

    out = tempfile.mkdtemp(prefix="dara-rollout-bench-")
    adapter = args.adapter or (str(SFT_OPTIMIZER) if args.base == "embedded" else None)
    cfg = build_train_config("grpo", args.config, {"role": "optimizer", "base": args.base, "out": out,
                                                   "rollout_engine": "hf" if args.no_vllm else "vllm"})
    model, tok = common.load_model(args.base, cfg.lora, adapter, adapters=(common.POLICY,), seed=0)
    src = PromptSource(cfg.rollout, "optimizer", seed=cfg.seed)
    P, G = cfg.prompts_per_step, cfg.group_size
    enc = cfg.resolved_encoding
    rows = []
    with rollout_session(cfg) as vllm:
        for step in range(args.first_step, args.first_step + args.steps):
            batch = src.batch(P, step)
            prompts = batch.repeat(G)
            p_ids = common.prompt_ids(tok, [encode(r, enc) for r in prompts.requests])
            formats = [(r.task.periods, enc in DELTA_ENCODINGS) for r in prompts.requests]
            cap = cfg.completion_cap([r.task.periods for r in batch.requests])
            seeds = grpo.row_seeds(cfg.seed, step, range(P * G))
            if vllm is not None and step == args.first_step:  # engine start-up, not timed
                vllm.sample(model, tok, p_ids[:1], cfg, seeds[:1], formats[:1], 4, 0)
            res = {}
            known = {"hf plain": (1, True), "hf shared": (G, True), "hf shared bf16": (G, False)}
            variants = [(n.strip(), *known[n.strip()]) for n in args.variants.split(",")]
            variants += [] if vllm is None else [("vllm", None, True)]
            for name, group, fp32_decode in variants:
                t0 = time.perf_counter()
                if group is None:
                    _, _, comp, cmask, texts = vllm.sample(model, tok, p_ids, cfg, seeds, formats, cap, step)
                else:
                    _, _, comp, cmask, texts = grpo.sample(model, tok, p_ids, cfg, seeds, formats, cap, group=group,
                                                           fp32_decode=fp32_decode)
                res[name] = (time.perf_counter() - t0, float(cmask.sum()), texts)
            a, b = (res[v[0]][2] for v in variants[:2])
            same = sum(x == y for x, y in zip(a, b))
            rows.append((step, len(p_ids[0]), cap, res, same))
            print(f"step {step}: " + ", ".join(f"{k} {v[0]:.1f} s" for k, v in res.items()), flush=True)

    load = os.getloadavg()
    names = list(rows[0][3])
    lines = [f"GRPO-A rollouts, {args.base}{' + ' + Path(adapter).parent.name if adapter else ''}, "
             f"P={P} G={G}, answer format enforced, bf16={cfg.bf16}, load average {load[0]:.2f} {load[1]:.2f}",
             "", "| step | prompt tokens | cap | " + " | ".join(f"{n} s (tok/s)" for n in names)
             + f" | texts identical ({names[0]} / {names[1]}) |", "|---|---|---|" + "---|" * len(names) + "---|"]
    for step, lp, cap, res, same in rows:
        cells = " | ".join(f"{res[n][0]:.1f} ({res[n][1] / res[n][0]:.0f})" for n in names)
        lines.append(f"| {step} | {lp} | {cap} | {cells} | {same}/{P * G} |")
    tot = {n: sum(r[3][n][0] for r in rows) for n in names}
    last = names[-2] if "vllm" in tot else names[-1]
    lines += ["", "total: " + ", ".join(f"{n} {t:.1f} s" for n, t in tot.items())
              + f"; {last} is {tot[names[0]] / tot[last]:.2f}x {names[0]}"
              + (f", {tot['vllm'] / tot[last]:.2f}x vllm" if "vllm" in tot else "")]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
