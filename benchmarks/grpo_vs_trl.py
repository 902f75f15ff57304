"""Seconds per GRPO step and peak memory: DARA's GRPO-A trainer vs TRL's GRPOTrainer.

Same base model, same prompts (``training.rollouts.PromptSource``, same seed), same
group size, completion length, LoRA shape and reward function (``training.rewards``).
Each trainer runs in its own subprocess so peak RSS is its own.

TRL lives in the ``bench`` extra, which ``make test`` does not install, and may want a
different transformers than the shared venv: use a separate environment, e.g.::

    python -m venv /tmp/bench && . /tmp/bench/bin/activate
    pip install -e '.[bench]'        # or: pip install -e . trl datasets
    python benchmarks/grpo_vs_trl.py --steps 3 --out benchmarks/results/grpo_vs_trl.json

Without TRL installed, only DARA's side runs (``--trainer dara``) and the TRL row says
why it is missing. The ratio (TRL s/step / DARA s/step) goes into ``docs/benchmarks.md``.
Note: TRL's GRPOTrainer cannot refresh a reference with PEFT (``sync_ref_model``), so
its reference is the frozen base model (adapter disabled); DARA's ``ref`` adapter is
refreshed every ``--ref-sync-every`` steps. Timing excludes model loading; the first
step (warm-up) is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_dara(a) -> dict:
    import torch

    from training import grpo
    from training.config import GRPOConfig, RolloutConfig
    from training.rollouts import PromptSource

    cfg = GRPOConfig(role=a.role, base=a.base, steps=a.steps, seed=a.seed, prompts_per_step=a.prompts,
                     group_size=a.group_size, max_new_tokens=a.max_new_tokens, beta=a.beta, lr=a.lr,
                     ref_sync_every=a.ref_sync_every, bf16=a.bf16, out="/tmp/dara-bench-grpo",
                     rollout=RolloutConfig(families=["quadratic"], env_pool=256))
    if a.threads:
        torch.set_num_threads(a.threads)
    model, tok, opt, params = grpo.setup(cfg)
    src = PromptSource(cfg.rollout, cfg.role, seed=cfg.seed)
    times, rows = [], []
    for step in range(1, cfg.steps + 1):
        t = time.time()
        rows.append(grpo.train_step(model, tok, opt, params, src, cfg, step))
        times.append(time.time() - t)
    return {"trainer": "dara", "s_per_step": times, "peak_rss_mb": _peak_rss_mb(),
            "reward": [r["train/reward"] for r in rows],
            "completion_len": [r["train/completion_len"] for r in rows]}


def run_trl(a) -> dict:
    import torch

    try:
        import trl
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import TrainerCallback
        from trl import GRPOConfig as TRLConfig
        from trl import GRPOTrainer
    except ImportError as e:
        return {"trainer": "trl", "error": f"TRL not installed ({e}); pip install -e '.[bench]' in a separate venv"}

    from policies.models import load_base
    from policies.prompts import encode, resolve_encoding
    from training.config import RewardConfig, RolloutConfig
    from training.rewards import score
    from training.rollouts import PromptSource

    if a.threads:
        torch.set_num_threads(a.threads)
    enc = resolve_encoding(a.role)
    src = PromptSource(RolloutConfig(families=["quadratic"], env_pool=256), a.role, seed=a.seed)
    batches = [src.batch(a.prompts, s) for s in range(1, a.steps + 1)]
    items = [(b, i) for b in batches for i in range(len(b))]
    data = Dataset.from_list([{"prompt": encode(b.requests[i], enc), "idx": k} for k, (b, i) in enumerate(items)])

    def reward(prompts, completions, idx, **kw):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        out = []
        for t, k in zip(texts, idx):
            b, i = items[k]
            req = [b.requests[i]]
            total, _, _ = score([t], req, lambda al, rows, b=b, i=i: _mroi_row(b, i, al), enc, RewardConfig())
            out.append(float(total[0]))
        return out

    model, tok = load_base(a.base, cache=False)
    L = model.config.num_hidden_layers
    peft_cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                          layers_to_transform=list(range(max(0, L - 10), L)))
    want = dict(output_dir="/tmp/trl-bench-grpo", per_device_train_batch_size=a.prompts * a.group_size,
                num_generations=a.group_size, max_completion_length=a.max_new_tokens, temperature=1.0,
                beta=a.beta, epsilon=0.1, learning_rate=a.lr, max_steps=a.steps, logging_steps=1,
                save_strategy="no", report_to="none", use_cpu=True, bf16=a.bf16, num_iterations=1,
                gradient_accumulation_steps=1, max_grad_norm=0.1, seed=a.seed, shuffle_dataset=False,
                dataloader_num_workers=0)
    import dataclasses

    names = {f.name for f in dataclasses.fields(TRLConfig)}
    args = TRLConfig(**{k: v for k, v in want.items() if k in names})

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.t = time.time()

        def on_step_end(self, *_, **__):
            times.append(time.time() - self.t)

    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=data,
                          processing_class=tok, peft_config=peft_cfg, callbacks=[Timer()])
    trainer.train()
    return {"trainer": "trl", "trl_version": trl.__version__, "s_per_step": times, "peak_rss_mb": _peak_rss_mb()}


def _mroi_row(b, i, alloc):
    import numpy as np

    env = b.envs[b.env_index[i]].subset([b.env_row[i]])
    return env.mroi(np.asarray(alloc, float))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trainer", choices=["both", "dara", "trl"], default="both")
    p.add_argument("--base", default="embedded")
    p.add_argument("--role", default="optimizer")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--ref-sync-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default=None, help="Write the JSON result here.")
    a = p.parse_args(argv)
    if a.trainer != "both":
        res = run_dara(a) if a.trainer == "dara" else run_trl(a)
        print("RESULT " + json.dumps(res))
        return 0
    results = []
    for t in ("dara", "trl"):
        cmd = [sys.executable, __file__, "--trainer", t] + [x for x in (argv or sys.argv[1:])]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        results.append(json.loads(line[-1][7:]) if line else {"trainer": t, "error": proc.stderr[-2000:]})
    summary = {"config": vars(a), "results": results}
    ok = [r for r in results if "s_per_step" in r and len(r["s_per_step"]) > 1]
    if len(ok) == 2:
        steady = {r["trainer"]: sum(r["s_per_step"][1:]) / len(r["s_per_step"][1:]) for r in ok}
        summary["steady_s_per_step"] = steady
        summary["ratio_trl_over_dara"] = steady["trl"] / steady["dara"]
        summary["peak_rss_mb"] = {r["trainer"]: r["peak_rss_mb"] for r in ok}
    print(json.dumps(summary, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
