"""``dara train``: SFT warm start, GRPO-Adaptive, and a quick evaluation of an adapter.

::

    dara train sft  --role reasoner --base embedded --steps 300 --out runs/sft-reasoner
    dara train grpo --role optimizer --init-adapter runs/sft-optimizer/adapter \\
                    --steps 100 --ref-sync-every 10 --group-size 8 --out runs/grpo-optimizer
    dara train eval --role reasoner --adapter runs/sft-reasoner/adapter --n 64

Every config field is a flag (``dara train sft --help``); ``--config FILE`` (JSON or
YAML; a run's own ``OUT/config.json`` works) sets many at once and flags override it. ``--ref-sync-every never`` (or 0) trains
plain GRPO with a fixed reference. Each run writes ``OUT/log.jsonl``, ``OUT/config.json``,
resumable ``OUT/checkpoint/`` and the PEFT adapter ``OUT/adapter/``.

``sft`` and ``grpo`` also run data-parallel, unchanged, under
``torchrun --nproc_per_node N -m training.cli sft ...`` (or ``accelerate launch``; see
``training.distributed``): same flags, same global batch, rank 0 logs and saves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from training.config import GRPOConfig, SFTConfig, add_flags, build_train_config

MODES = {"sft": SFTConfig, "grpo": GRPOConfig}


def _parser(mode: str) -> argparse.ArgumentParser:
    cls = MODES[mode]
    p = argparse.ArgumentParser(prog=f"dara train {mode}", description=(cls.__doc__ or "").strip(),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None, help="JSON or YAML config file (flags override it).")
    add_flags(p, cls)
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dara train eval",
                                description="Round-1 regret and parse-error rate of an adapter on held-out envs.")
    p.add_argument("--role", default="reasoner", choices=["reasoner", "optimizer"])
    p.add_argument("--adapter", default=None, help="PEFT adapter directory (none = base model).")
    p.add_argument("--base", default="embedded")
    p.add_argument("--encoding", default=None)
    p.add_argument("--family", default="quadratic")
    p.add_argument("--n", type=int, default=64, help="Held-out environments.")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="Token cap per answer (default: follows T, as inference).")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--periods", type=int, default=None, help="Slots T of the held-out tasks (data families keep theirs).")
    p.add_argument("--noise", type=float, default=None, help="Feedback noise (CV) of the held-out tasks.")
    p.add_argument("--constrained", action=argparse.BooleanOptionalAction, default=True,
                   help="Enforce the answer format as the local backend does (--no-constrained: the model "
                        "writes freely, as behind an OpenAI-compatible server).")
    p.add_argument("--json", default=None, help="Also write the result to this file.")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    mode, rest = argv[0], argv[1:]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if mode == "eval":
        args = _eval_parser().parse_args(rest)
        from training.evaluate import evaluate

        res = evaluate(role=args.role, adapter=args.adapter, base=args.base, encoding=args.encoding,
                       family=args.family, n=args.n, seed=args.seed, batch_size=args.batch_size,
                       max_new_tokens=args.max_new_tokens, bf16=args.bf16, periods=args.periods,
                       noise=args.noise, constrained=args.constrained)
        print(json.dumps(res, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
        return 0
    if mode not in MODES:
        print(f"dara train: unknown mode {mode!r}; choose sft, grpo or eval", file=sys.stderr)
        return 2
    args = vars(_parser(mode).parse_args(rest))
    file = args.pop("config", None)
    from training import distributed

    try:
        cfg = build_train_config(mode, file=file, flags=args)
        field = "batch_size" if mode == "sft" else "prompts_per_step"  # what is split over processes
        distributed.check_split(getattr(cfg, field), field, distributed.launched_size())
        # several processes: join the group now (needs accelerate), nccl on CUDA, gloo on CPU
        distributed.world(distributed.resolve_device(cfg.device))
    except (ValueError, FileNotFoundError, distributed.MissingAccelerate) as e:
        print(f"dara train {mode}: {e}", file=sys.stderr)
        return 2
    if mode == "sft":
        from training.sft import train
    else:
        from training.grpo import train
    try:
        train(cfg)
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
