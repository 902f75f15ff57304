"""How large a first move the Reasoner's prompts ask for: training recipes against held-out data.

The ``delta-hint`` Reasoner learned to write the ``hint=`` its prompt shows; on Robyn it
departed from large hints (a quarter of its round-1 answers, docs/results.md §8). This
prints, for the Reasoner prompts of training configs and of evaluation families, the
share whose hint moves some slot by more than 1 unit of B/T (the teacher's trust region)
and quantiles of the largest move:

    python benchmarks/hint_sizes.py --config training/configs/generalist-sft-hint-reasoner.json \
        --config training/configs/generalist-sft-hint-reasoner-wide.json --family robyn,meridian-geo,media

Numeric only (no model); a few seconds per thousand prompts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from policies.base import DecisionRequest  # noqa: E402
from policies.observations import window_hint  # noqa: E402


def largest_moves(tasks) -> np.ndarray:
    """max |hint| (units of B/T) of each task's Reasoner prompt (the whole history)."""
    out = []
    for task in tasks:
        req = DecisionRequest("reasoner", task, list(task.history))
        out.append(np.abs(window_hint(req.window, task, req.current)).max())
    return np.array(out)


def config_tasks(path: Path, prompts: int, seed: int):
    from training.config import build_train_config
    from training.distribution import draw_recipes

    cfg = build_train_config("sft", str(path)).rollout
    rng = np.random.default_rng(seed)
    for _ in range(prompts // 4):
        for recipe in draw_recipes(cfg, 4, rng):
            yield recipe.build().task(0)


def family_tasks(family: str, n: int, seed: int, noise: float, periods: int):
    from tools.envs import make_envs

    env = make_envs(family, n, seed=seed, noise=noise, periods=periods)
    return [env.task(i) for i in range(env.n)]


def report(name: str, moves: np.ndarray) -> str:
    q = np.quantile(moves, [0.5, 0.9, 0.99])
    return (f"{name:<60} {len(moves):5d} prompts; move > 1 unit: {np.mean(moves > 1.01):5.0%}; "
            f"largest move p50 / p90 / p99: {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, action="append", default=[], help="training config (repeatable)")
    ap.add_argument("--family", default="robyn,meridian-geo,meridian-national",
                    help="comma-separated evaluation families (seed 7, the matrix's)")
    ap.add_argument("--prompts", type=int, default=600, help="prompts per training config")
    ap.add_argument("--envs", type=int, default=200, help="environments per family")
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--periods", type=int, default=6, help="T of synthetic evaluation families")
    args = ap.parse_args(argv)
    for path in args.config:
        if not path.is_file():
            ap.error(f"--config {path}: no such file")
        print(report(str(path), largest_moves(config_tasks(path, args.prompts, seed=0))))
    for fam in filter(None, args.family.split(",")):
        print(report(f"{fam} (seed 7, noise {args.noise:g})",
                     largest_moves(family_tasks(fam, args.envs, 7, args.noise, args.periods))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
