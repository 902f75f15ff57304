"""How far ``local-model`` should trust a fitted slope: regret by planning-slope shift ``z``.

``local-model`` (the numeric tool behind the ``delta-hint`` prompt's ``hint=`` line, and
the SFT teacher) equalises MROI on per-slot lines fitted to the window. It plans on the
fitted slope made ``z`` standard errors steeper (``tools.local_response.planning_slopes``):
``z`` = 0 is the plain least-squares slope. This runs ``local-model`` at each ``z`` (and
the heuristic, for reference) through ``dara bench``'s numeric loop on every matrix
family and size at several noise levels, and prints per cell the mean regret at round 1
(the Reasoner's step, from the whole history), round 2 (the first refinement), over rounds 3-10, the 99th percentile at round 2, and the rounds
at which it is above the heuristic:

    python benchmarks/planning_slope.py --seed 123 --envs 1000 --z 0,0.25,0.5,1
    python benchmarks/planning_slope.py --seed 7 --envs 1000 --z 0,0.5 --json out.json
    python benchmarks/planning_slope.py --seed 123 --z 0.5,0/0.5,0.25/0.5   # round-1 z / later z

A shift written ``a/b`` uses ``a`` for round 1 (the Reasoner's hint, from the whole
history) and ``b`` for rounds 2-10 (the Optimizer's, from the sliding window).

Choose ``z`` on one seed and confirm it on another (the matrix's environments are seed 7).
Numeric only: about a minute per noise level on an idle box.
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

from graph.commands.bench import BenchPlan  # noqa: E402
from graph.commands.bench_numeric import run_numeric  # noqa: E402

CELLS = [(f, T) for f in ("quadratic", "exponential", "hill", "media") for T in (3, 6, 10, 16)] + \
        [(f, None) for f in ("robyn", "meridian-national", "meridian-geo")]


def split_shift(spec: str) -> tuple[float, float]:
    """``"0.5"`` -> (0.5, 0.5); ``"0/0.5"`` -> round-1 z 0, later rounds 0.5."""
    first, _, later = spec.partition("/")
    return float(first), float(later or first)


def cell_envs(noises: list[float], envs: int, seed: int):
    """``(cell name, environments)`` for every matrix cell at every noise level."""
    for noise in noises:
        for fam, T in CELLS:
            env = BenchPlan(families=[fam], methods=["heuristic"], envs=envs, noise=noise, periods=T).make_env(fam, seed)
            yield f"{fam}" + (f"-T{T}" if T else "") + f"-n{noise:g}", env


def run(zs: dict[str, tuple[float, float]], noises: list[float], envs: int, seed: int, rounds: int = 10, window: int = 3) -> list[dict]:
    rows = []
    for cell, env in cell_envs(noises, envs, seed):
        heur = run_numeric("heuristic", env, rounds, window, seed)["regret"].mean(axis=1)
        row = {"cell": cell, "heuristic_r2": float(heur[1])}
        for z, (z1, z_later) in zs.items():
            r = run_numeric("local-model", env, rounds, window, seed, z=z_later, first_round={"z": z1})["regret"]
            m = r.mean(axis=1)
            row[f"z={z}"] = {"r1": float(m[0]), "r2": float(m[1]), "r3+": float(m[2:].mean()),
                               "p99_r2": float(np.percentile(r[1], 99)),
                               "rounds_above_heuristic": [k + 1 for k in range(rounds) if m[k] > heur[k]]}
        rows.append(row)
        print(format_row(row, zs), flush=True)
    return rows


def format_row(row: dict, zs) -> str:
    parts = [f"{row['cell']:<26}"]
    for z in zs:
        c = row[f"z={z}"]
        above = ",".join(map(str, c["rounds_above_heuristic"])) or "-"
        parts.append(f"{c['r1'] * 100:6.2f} {c['r2'] * 100:6.2f} {c['r3+'] * 100:5.2f} {c['p99_r2'] * 100:5.1f} {above:>5}")
    return " | ".join(parts) + f" | {row['heuristic_r2'] * 100:6.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--z", default="0,0.25,0.5,1", help="comma-separated shifts to compare; a/b = round-1 z a, later rounds b")
    ap.add_argument("--noise", default="0,0.1,0.2", help="comma-separated noise levels")
    ap.add_argument("--envs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=123, help="environment seed (the matrix is seed 7)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    zs = {}
    for z in args.z.split(","):
        try:
            zs[z] = split_shift(z)
        except ValueError:
            ap.error(f"--z: {z!r} is not a shift (a number, or round-1/later like 0/0.5)")
    noises = [float(x) for x in args.noise.split(",")]
    print(f"per z: round-1, round-2 and rounds 3-10 mean, round-2 p99 (regret %), rounds above the heuristic "
          f"| heuristic round 2; seed {args.seed}, {args.envs} environments")
    print(" | ".join([f"{'cell':<26}"] + [f"z={z}".center(32) for z in zs] + ["heur r2"]))
    rows = run(zs, noises, args.envs, args.seed)
    summary = {f"z={z}": {"mean_r1": float(np.mean([r[f'z={z}']['r1'] for r in rows])),
                            "mean_r2": float(np.mean([r[f'z={z}']['r2'] for r in rows])),
                            "mean_r3+": float(np.mean([r[f'z={z}']['r3+'] for r in rows])),
                            "cells_above_heuristic": sum(bool(r[f'z={z}']['rounds_above_heuristic']) for r in rows)}
               for z in zs}
    for k, v in summary.items():
        print(f"{k}: mean over cells r1 {v['mean_r1'] * 100:.2f}%, r2 {v['mean_r2'] * 100:.2f}%, r3+ {v['mean_r3+'] * 100:.2f}%, "
              f"cells with a round above the heuristic {v['cells_above_heuristic']}/{len(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "envs": args.envs, "rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
