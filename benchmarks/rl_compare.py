"""GRPO-A vs fixed-reference GRPO vs SFT-only: per-round regret and paired Wilcoxon tests.

    python benchmarks/rl_compare.py runs/eval-generalist/episodes \
        --runs gen-grpo-optimizer-hint gen-grpo-optimizer-hint-fixed-ref gen-sft-optimizer-hint \
        --json docs/data/rl-compare.json --plot docs/img/rl_compare.png

Reads the episodes ``MODE=rl`` (or ``MODE=reasoner``) ``benchmarks/eval_generalist.sh`` keeps
(``EPISODES/rl-<run>-<cell>/<cell family>/dara/episodes.jsonl``). Every run of a cell
played the same environments (same ``--seed``, same feedback-noise draws), so episodes
pair by id. Per cell and round: the mean regret (%) of each run, and, for the first run
against each other, the two-sided Wilcoxon signed-rank test of the per-environment
regret differences (``scipy.stats.wilcoxon``; rounds where every difference is zero get
p = 1), how many environments the first run ends lower / higher on, and 95% t-intervals
of the means. Prints one markdown table per cell; ``--json`` keeps the numbers,
``--plot`` draws them (one panel per cell, paired p < 0.05 marked).
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
        "losses": {r: [int((arr[first][:, k] > arr[r][:, k]).sum()) for k in range(K)] for r in runs[1:]},
        "ci95": {r: [float(x) for x in ci95(arr[r])] for r in runs},
    }


def ci95(a: np.ndarray) -> np.ndarray:
    """Half-width of the 95% t-interval of the per-round mean over environments (rows)."""
    from graph.commands.summaries import ci95_half

    return ci95_half(a, axis=0)


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
        lines.append(f"| lower / higher than {r} | " + " | ".join(
            f"{w}/{lo}" for w, lo in zip(res["wins"][r], res["losses"][r])) + " |")
    return "\n".join(lines) + "\n"


def round_table(out: dict, runs: list[str], k: int) -> str:
    """One row per cell at round ``k`` (1-based): each run's mean regret, and the paired
    test of the first run against the others (the Reasoner comparison's one round)."""
    head = "| cell | envs | " + " | ".join(runs) + " | " + " | ".join(f"p vs {r} | lower / higher" for r in runs[1:]) + " |"
    lines = [f"Round {k} (regret %, p = paired Wilcoxon of {runs[0]} vs each other run)", "", head,
             "|---|---:|" + "---:|" * len(runs) + "---:|---:|" * (len(runs) - 1)]
    for cell, res in out.items():
        if len(res["regret"][runs[0]]) < k:
            continue
        i = k - 1
        row = [cell, str(res["envs"])] + [f"{100 * res['regret'][r][i]:.2f}" for r in runs]
        for r in runs[1:]:
            row += [f"{res['wilcoxon_p'][r][i]:.3f}", f"{res['wins'][r][i]}/{res['losses'][r][i]}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, out: dict, runs: list[str]) -> None:
    """One panel per cell: mean regret per round of each run with its 95% band; rounds
    where the first run differs from another at p < 0.05 are marked on the first run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(out)
    cols = min(3, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, cell in zip(axes.flat, cells):
        res = out[cell]
        for r in runs:
            m, h = 100 * np.array(res["regret"][r]), 100 * np.array(res["ci95"][r])
            x = np.arange(1, len(m) + 1)
            (line,) = ax.plot(x, m, marker="o", ms=3, label=r)
            ax.fill_between(x, m - h, m + h, alpha=0.15, color=line.get_color())
        first = 100 * np.array(res["regret"][runs[0]])
        sig = [k for k in range(len(first)) if any(res["wilcoxon_p"][r][k] < 0.05 for r in runs[1:])]
        ax.plot([k + 1 for k in sig], first[sig], "k*", ms=9, label="p < 0.05 (paired)" if sig else None)
        ax.set_title(f"{cell} ({res['envs']} envs)", fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel("regret %")
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    seen = {}
    for ax in axes.flat:  # every run's line, and the p < 0.05 marker if any panel has one
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    handles, labels = list(seen.values()), list(seen)
    # as many legend columns as fit the figure's width (long run names wrap to more rows)
    ncol = max(1, min(len(labels), int(fig.get_figwidth() * 72 / (6 * max(map(len, labels)) + 30))))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8)
    rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, 0.02 + 0.05 * rows * 4 / fig.get_figheight(), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", type=Path, help="the --llm-out root of MODE=rl (…/episodes)")
    ap.add_argument("--runs", nargs="+", required=True, help="run names; the first is tested against the others")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--plot", type=Path, default=None, help="draw regret per round per cell to this PNG")
    ap.add_argument("--round", type=int, default=None,
                    help="print one table of this round across cells instead of a table per cell "
                         "(MODE=reasoner runs round 1 only)")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        ap.error("--runs needs at least two runs to compare")
    cells = cells_of(args.episodes, args.runs)
    if not cells:
        ap.error(f"no rl-{args.runs[0]}-* cells under {args.episodes}")
    out = {}
    for cell in cells:
        out[cell] = compare_cell(args.episodes, args.runs, cell)
        if args.round is None:
            print(markdown(cell, out[cell], args.runs))
    if args.round is not None:
        print(round_table(out, args.runs, args.round))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": args.runs, "cells": out}, indent=1) + "\n")
    if args.plot:
        plot(args.plot, out, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
