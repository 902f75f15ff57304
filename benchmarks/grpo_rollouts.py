"""Time GRPO-A's rollouts three ways on the same rows: hf plain, hf with one prefill per
distinct prompt, and vLLM.

Each training step samples P x G completions (the generalist ``delta-hint`` Optimizer
config by default: P = 4, G = 8, answer format enforced, cap following T). This script
builds the rows of real steps and samples them with

- ``hf plain``  — ``training.grpo.sample``, every row prefilled whole;
- ``hf shared`` — the same with ``group=G``: each distinct prompt prefilled once, its KV
  cache repeated for its G rows (``training.shared_prompts.shared_prefill``);
- ``vllm``      — ``training.vllm_rollouts.VLLMRollouts`` (offline engine in a worker
  process, the current adapter published as a LoRA; engine start-up not counted),

in one process, one after the other per step, and reports seconds per step and completion
tokens per second. The two hf variants draw the same tokens (row-seeded sampling); vLLM
draws its own (same distribution, other random numbers).

    python benchmarks/grpo_rollouts.py --steps 3 --first-step 9
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

SHIPPED = ROOT / "training/runs/gen-sft-optimizer-hint/adapter"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "training/configs/generalist-grpo-hint.json"))
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--adapter", default=None, help="policy LoRA (default: the SFT Optimizer the run starts from)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--first-step", type=int, default=9)
    ap.add_argument("--no-vllm", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from policies.prompts import DELTA_ENCODINGS, encode
    from training import common, grpo
    from training.config import build_train_config
    from training.rollouts import PromptSource
    from training.vllm_rollouts import rollout_session

    out = tempfile.mkdtemp(prefix="dara-rollout-bench-")
    adapter = args.adapter or (str(SHIPPED) if args.base == "embedded" else None)
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
            variants = [("hf plain", 1), ("hf shared", G)] + ([] if vllm is None else [("vllm", None)])
            for name, group in variants:
                t0 = time.perf_counter()
                if group is None:
                    _, _, comp, cmask, texts = vllm.sample(model, tok, p_ids, cfg, seeds, formats, cap, step)
                else:
                    _, _, comp, cmask, texts = grpo.sample(model, tok, p_ids, cfg, seeds, formats, cap, group=group)
                res[name] = (time.perf_counter() - t0, float(cmask.sum()), texts)
            same = sum(a == b for a, b in zip(res["hf plain"][2], res["hf shared"][2]))
            rows.append((step, len(p_ids[0]), cap, res, same))
            print(f"step {step}: " + ", ".join(f"{k} {v[0]:.1f} s" for k, v in res.items()), flush=True)

    load = os.getloadavg()
    names = list(rows[0][3])
    lines = [f"GRPO-A rollouts, {args.base}{' + ' + Path(adapter).parent.name if adapter else ''}, "
             f"P={P} G={G}, answer format enforced, bf16={cfg.bf16}, load average {load[0]:.2f} {load[1]:.2f}",
             "", "| step | prompt tokens | cap | " + " | ".join(f"{n} s (tok/s)" for n in names)
             + " | hf texts identical |", "|---|---|---|" + "---|" * len(names) + "---|"]
    for step, lp, cap, res, same in rows:
        cells = " | ".join(f"{res[n][0]:.1f} ({res[n][1] / res[n][0]:.0f})" for n in names)
        lines.append(f"| {step} | {lp} | {cap} | {cells} | {same}/{P * G} |")
    tot = {n: sum(r[3][n][0] for r in rows) for n in names}
    lines += ["", "total: " + ", ".join(f"{n} {t:.1f} s" for n, t in tot.items())
              + f"; hf shared is {tot['hf plain'] / tot['hf shared']:.2f}x hf plain"
              + (f", {tot['vllm'] / tot['hf shared']:.2f}x vllm" if "vllm" in tot else "")]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
