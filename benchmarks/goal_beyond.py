"""Is DARA above ``local-model`` by more than the environments' spread? (the goal beyond)

``benchmarks/matrix_summary.py`` compares per-round *means*: a cell misses the goal
("at or below ``local-model`` from round 3") when DARA's mean over its 20 environments
is higher in any round, by however little. This pairs the two per environment instead
(the same environments, the same observation noise: ``dara bench`` seeds both alike)
and asks, per round from 3, whether DARA is higher with a one-sided paired Wilcoxon
test, so a miss of a hundredth of a point on one environment is told apart from a
steady gap:

    python benchmarks/goal_beyond.py docs/data/matrix/*n0.1.json --option grow:1 --json docs/data/goal-beyond.json

``local-model``'s per-environment regret is recomputed from the cell's configuration
(numeric, seconds) and checked against the cell's recorded means; DARA's comes from the
cell's episodes (``<llm_out>/<family>/dara/episodes.jsonl``). Cells must be single-family
``dara bench --json`` files with a ``dara`` and a ``local-model`` row; a DARA-only cell
(``MODE=rl`` of ``benchmarks/eval_generalist.sh``) takes ``local-model``'s recorded means
from ``--baselines DIR/<family>[-T<periods>].json``, a numeric ``dara bench`` run with the
same environments, noise, rounds and window:

    python benchmarks/goal_beyond.py docs/data/rl-compare-current/rl-*-robyn.json \
        --baselines docs/data/rl-compare-current/baselines
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def local_model_per_env(config: dict, recorded_mean: list[float], options: dict | None = None) -> np.ndarray:
    """``(rounds, envs)`` regret of ``local-model`` (with ``options``) on the cell's environments."""
    from graph.commands.bench_numeric import run_numeric
    from tools.envs import make_envs

    fam = config["family"]
    kw = {k: config[k] for k in ("periods", "budget") if config.get(k) is not None}  # as dara bench does
    env = make_envs(fam, n=config["envs"], seed=config["seed"], noise=config["noise"], **kw)
    reg = run_numeric("local-model", env, config["rounds"], config["window"], config["seed"], **(options or {}))["regret"]
    if not np.allclose(reg.mean(axis=1), recorded_mean, atol=1e-9):
        raise ValueError(f"{fam}: recomputed local-model means {reg.mean(axis=1)} differ from the recorded "
                         f"{recorded_mean} (the cell's, or its --baselines file's): the code or the configuration "
                         "changed since they ran (--option grow:1 for cells run before grow=2 was the default)")
    return reg


def dara_per_env(episodes: Path, rounds: int) -> np.ndarray:
    """``(rounds, envs)`` regret of DARA, environments in index order."""
    eps = [json.loads(line) for line in episodes.read_text().splitlines() if line.strip()]
    eps.sort(key=lambda e: e["env"]["index"])
    return np.array([e["regret"][:rounds] for e in eps], float).T


SAME_ENVS = ("family", "envs", "seed", "noise", "rounds", "window", "periods", "budget")


def recorded_local_model(config: dict, methods: dict, baselines: Path | None) -> list[float]:
    """``local-model``'s per-round means: the cell's own row, else the baseline run's on the
    same environments (``--baselines``)."""
    if "local-model" in methods:
        return methods["local-model"]["regret"]
    if baselines is None:
        raise ValueError("no local-model row (a DARA-only cell needs --baselines)")
    name = config["family"] + (f"-T{config['periods']}" if config.get("periods") else "")
    path = baselines / f"{name}.json"
    base = json.loads(path.read_text())
    differ = [k for k in SAME_ENVS if base["config"].get(k) != config.get(k)]
    if differ:
        raise ValueError(f"{path} ran other environments: {', '.join(differ)} differ")
    if "local-model" not in base.get("methods", {}):
        raise ValueError(f"{path} has no local-model row")
    return base["methods"]["local-model"]["regret"]


def cell(path: Path, ref_from: int = 3, alpha: float = 0.05, options: dict | None = None,
         baselines: Path | None = None) -> dict:
    from scipy.stats import wilcoxon

    data = json.loads(path.read_text())
    config, m = data["config"], data["methods"]
    eps = Path(config["llm_out"]) / config["family"] / "dara" / "episodes.jsonl"
    if not eps.is_absolute() and not eps.exists():
        eps = ROOT / eps
    dara = dara_per_env(eps, config["rounds"])
    lm = local_model_per_env(config, recorded_local_model(config, m, baselines), options)
    if dara.shape != lm.shape:
        raise ValueError(f"{path.name}: DARA has {dara.shape[1]} environments, the cell {lm.shape[1]}")
    rows = []
    for k in range(ref_from - 1, dara.shape[0]):
        diff = dara[k] - lm[k]
        p = 1.0 if not np.any(diff) else float(wilcoxon(dara[k], lm[k], alternative="greater").pvalue)
        rows.append({"round": k + 1, "dara": float(dara[k].mean()), "local_model": float(lm[k].mean()),
                     "higher_envs": int((diff > 0).sum()), "lower_envs": int((diff < 0).sum()), "p_greater": p})
    tail = slice(ref_from - 1, dara.shape[0])
    return {"cell": path.stem, "envs": int(dara.shape[1]), "rounds": rows,
            "mean_difference_from_r3": float((dara[tail] - lm[tail]).mean()),
            "above_in_mean": [r["round"] for r in rows if r["dara"] > r["local_model"]],
            "significantly_above": [r["round"] for r in rows if r["p_greater"] < alpha]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cells", nargs="+", type=Path, help="dara bench --json files (one family each)")
    ap.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    ap.add_argument("--option", action="append", default=[],
                    help="param:value for local_model, as the cells ran it (e.g. grow:1 for docs/data/matrix)")
    ap.add_argument("--json", type=Path, help="write the per-round results here")
    ap.add_argument("--baselines", type=Path, default=None,
                    help="dir of numeric dara bench JSON (<family>[-T<periods>].json) on the same environments, "
                         "for cells without a local-model row")
    args = ap.parse_args(argv)
    from benchmarks.trust_region import parse_options

    try:
        options = parse_options(args.option)
    except ValueError as e:
        ap.error(f"--option: {e}")
    out = []
    print("| cell | DARA − local-model, mean over rounds 3+ (points) | rounds from 3 DARA mean above | "
          f"significantly above (one-sided paired Wilcoxon, p < {args.alpha}) |\n|---|---|---|---|")
    for path in args.cells:
        try:
            res = cell(path, alpha=args.alpha, options=options, baselines=args.baselines)
        except (KeyError, ValueError, FileNotFoundError) as e:
            print(f"{path}: skipped: {e}", file=sys.stderr)
            continue
        out.append(res)
        above = ", ".join(map(str, res["above_in_mean"])) or "none"
        sig = ", ".join(map(str, res["significantly_above"])) or "none"
        print(f"| {res['cell']} | {100 * res['mean_difference_from_r3']:+.2f} | {above} | {sig} |", flush=True)
    print(f"\ncells DARA is significantly above local-model in some round from 3: "
          f"{sum(bool(r['significantly_above']) for r in out)}/{len(out)}; above in mean: "
          f"{sum(bool(r['above_in_mean']) for r in out)}/{len(out)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"alpha": args.alpha, "local_model_options": options, "cells": out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
