"""GRPO-A vs fixed-reference GRPO vs SFT-only: per-round regret and paired Wilcoxon tests.

    python benchmarks/rl_compare.py runs/eval-generalist/episodes \
        --runs gen-grpo-optimizer-hint gen-grpo-optimizer-hint-fixed-ref gen-sft-optimizer-hint \
        --json docs/data/rl-compare.json

Reads the episodes ``MODE=rl benchmarks/eval_generalist.sh`` keeps
(``EPISODES/rl-<run>-<cell>/<cell family>/dara/episodes.jsonl``). Every run of a cell
played the same environments (same ``--seed``, same feedback-noise draws), so episodes
pair by id. Per cell and round: the mean regret (%) of each run, and, for the first run
against each other, the two-sided Wilcoxon signed-rank test of the per-environment
regret differences (``scipy.stats.wilcoxon``; rounds where every difference is zero get
p = 1). Prints one markdown table per cell; ``--json`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from graph.commands.episode_log import EPISODES, repair_and_read  # noqa: E402


def regret_by_env(cell_dir: Path) -> dict[str, np.ndarray]:
    """``{episode id: per-round regret}`` of the one ``dara`` method under ``cell_dir``."""
    files = sorted(cell_dir.glob(f"*/dara/{EPISODES}"))
    if len(files) != 1:
        raise SystemExit(f"{cell_dir}: expected one */dara/{EPISODES}, found {len(files)}")
    out = {}
    for r in repair_and_read(files[0]):
        if r.get("status", "ok") != "ok":
            raise SystemExit(f"{files[0]}: episode {r['id']} failed: {r.get('error')}")
        out[r["id"]] = np.array(r["regret"], float)
    return out


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of ``a - b`` (1.0 when all differences are 0)."""
    d = a - b
    if np.allclose(d, 0.0):
        return 1.0
    return float(wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)


def compare_cell(episodes: Path, runs: list[str], cell: str) -> dict:
    per_run = {run: regret_by_env(episodes / f"rl-{run}-{cell}") for run in runs}
    ids = sorted(set.intersection(*(set(v) for v in per_run.values())))
    if not ids:
        raise SystemExit(f"cell {cell}: the runs share no episode ids")
    K = min(len(per_run[r][i]) for r in runs for i in ids)
    arr = {r: np.stack([per_run[r][i][:K] for i in ids]) for r in runs}  # (N, K)
    first = runs[0]
    return {
        "envs": len(ids),
        "regret": {r: [float(x) for x in arr[r].mean(0)] for r in runs},
        "wilcoxon_p": {r: [paired_p(arr[first][:, k], arr[r][:, k]) for k in range(K)] for r in runs[1:]},
        "wins": {r: [int((arr[first][:, k] < arr[r][:, k]).sum()) for k in range(K)] for r in runs[1:]},
    }


def cells_of(episodes: Path, runs: list[str]) -> list[str]:
    """Cells every run has (run names may prefix each other: ``x`` and ``x-fixed-ref``)."""
    prefix = f"rl-{runs[0]}-"
    names = (p.name[len(prefix):] for p in episodes.glob(f"{prefix}*") if p.is_dir())
    return sorted(c for c in names if all((episodes / f"rl-{r}-{c}").is_dir() for r in runs))


def markdown(cell: str, res: dict, runs: list[str]) -> str:
    K = len(res["regret"][runs[0]])
    lines = [f"**{cell}** ({res['envs']} environments; regret %, p = paired Wilcoxon vs {runs[0]})", "",
             "| run | " + " | ".join(f"r{k + 1}" for k in range(K)) + " |", "|---|" + "---:|" * K]
    for r in runs:
        lines.append(f"| {r} | " + " | ".join(f"{100 * v:.2f}" for v in res["regret"][r]) + " |")
    for r in runs[1:]:
        lines.append(f"| p vs {r} | " + " | ".join(f"{p:.3f}" for p in res["wilcoxon_p"][r]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", type=Path, help="the --llm-out root of MODE=rl (…/episodes)")
    ap.add_argument("--runs", nargs="+", required=True, help="run names; the first is tested against the others")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        ap.error("--runs needs at least two runs to compare")
    cells = cells_of(args.episodes, args.runs)
    if not cells:
        ap.error(f"no rl-{args.runs[0]}-* cells under {args.episodes}")
    out = {}
    for cell in cells:
        out[cell] = compare_cell(args.episodes, args.runs, cell)
        print(markdown(cell, out[cell], args.runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": args.runs, "cells": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
