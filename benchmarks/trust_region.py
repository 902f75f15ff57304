"""How far ``local-model`` (and so the ``hint=`` line) may move a slot: trust-region options.

``local-model`` moved each slot at most one trust region (B/T) a round. Options of
``policies.baselines.local_model`` change that (``grow=2`` is the default since this
benchmark's figures, docs/results.md §11; ``grow:1`` is the old behaviour):

- ``grow=G`` (with ``grow_after=A``): a slot whose last two moves went the same way, the
  last at least ``A`` trust regions, may move ``G``: nearly linear channels (MROI flat in
  spend, far from their best spend) otherwise crawl one trust region a round;
- ``no_slope_trust=R``: a window in which no slot has a usable slope (spend steady, as at a
  converged optimum) moves at most ``R``: its plan rests on a prior that can be nearly
  flat there, and the full trust region was a wild step.
- ``unfunded_cap:0`` turns off the default cap on a slot no record in the window funded
  (one trust region when an overspent history row widens the region; docs/results.md §11).

This runs each named option set through ``dara bench``'s numeric loop on every matrix
family and size at each noise level and prints per cell the mean regret at round 1,
round 2, over rounds 3-10 and at round 10, and the share of environments whose regret
rose by more than 2 points between two rounds after round 1 (a "jump"):

    python benchmarks/trust_region.py --seed 123 --envs 1000 \\
        --variant base=grow:1 --variant grow=grow:2 --variant calm=grow:1,no_slope_trust:0.1 \\
        --variant both=grow:2,no_slope_trust:0.1 --json docs/data/trust-region/seed123.json

A variant is ``name=param:value,...`` (empty for the defaults). Choose on seed 123,
confirm on seed 7 (the matrix's environments). Numeric only: a few minutes per noise
level on an idle box.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.planning_slope import cell_envs  # noqa: E402
from graph.commands.bench_numeric import run_numeric  # noqa: E402


def _switch(value: str) -> bool:
    """``1/true/on`` or ``0/false/off`` (anything else is an error, not a silent "on")."""
    v = value.strip().lower()
    if v in ("1", "true", "on", "yes"):
        return True
    if v in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"expected 1/true/on or 0/false/off, got {value!r}")


PARAMS = {"grow": float, "grow_after": float, "no_slope_trust": float, "trust": float, "z": float,
          "unfunded_cap": _switch}
JUMP = 0.02


@contextlib.contextmanager
def local_model_options(options: dict):
    """``policies.baselines.local_model`` with ``options`` everywhere it plans (the numeric
    baseline, the ``hint=`` line of ``delta-hint`` prompts, any fallback) inside the block,
    restored after it: to rebuild or rerun what ran under other settings (e.g. ``grow=1``)."""
    from policies import baselines

    original = baselines.local_model
    patched = functools.partial(original, **options)
    baselines.local_model = baselines._FUNCS["local-model"] = patched  # read at each call
    try:
        yield
    finally:
        baselines.local_model = baselines._FUNCS["local-model"] = original


def parse_variant(spec: str) -> tuple[str, dict]:
    """``"both=grow:2,no_slope_trust:0.1"`` -> ``("both", {"grow": 2.0, "no_slope_trust": 0.1})``."""
    name, sep, body = spec.partition("=")
    if not sep or not name:
        raise ValueError(f"{spec!r}: expected name=param:value,... (e.g. grow=grow:2, or base= for the defaults)")
    params = {}
    for item in filter(None, body.split(",")):
        key, sep, value = item.partition(":")
        if not sep or key not in PARAMS:
            raise ValueError(f"{spec!r}: {item!r} is not param:value with param one of {', '.join(PARAMS)}")
        try:
            params[key] = PARAMS[key](value)
        except ValueError as e:
            raise ValueError(f"{spec!r}: {item!r}: {e}") from None
    return name, params


def parse_options(items: list[str]) -> dict:
    """``["grow:1", "unfunded_cap:0"]`` (repeated ``--option`` flags) -> local_model keywords."""
    return parse_variant("episodes=" + ",".join(items))[1]


def cell_summary(regret: np.ndarray) -> dict:
    """Regret ``(rounds, N)`` -> the printed figures of one cell and variant."""
    m = regret.mean(axis=1)
    jumps = (np.diff(regret[1:], axis=0) > JUMP).any(axis=0)
    return {"r1": float(m[0]), "r2": float(m[1]), "r3+": float(m[2:].mean()), "r10": float(m[-1]),
            "jump_share": float(jumps.mean())}


def run(variants: dict[str, dict], noises: list[float], envs: int, seed: int, rounds: int = 10, window: int = 3) -> list[dict]:
    rows = []
    for cell, env in cell_envs(noises, envs, seed):
        row = {"cell": cell}
        for name, params in variants.items():
            row[name] = cell_summary(run_numeric("local-model", env, rounds, window, seed, **params)["regret"])
        rows.append(row)
        print(format_row(row, variants), flush=True)
    return rows


def format_row(row: dict, variants) -> str:
    parts = [f"{row['cell']:<26}"]
    for name in variants:
        c = row[name]
        parts.append(f"{c['r1'] * 100:6.2f} {c['r2'] * 100:6.2f} {c['r3+'] * 100:5.2f} {c['r10'] * 100:5.2f} "
                     f"{c['jump_share'] * 100:3.0f}%")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", default=None,
                    help="name=param:value,... (repeatable; default: base=grow:1 grow=grow:2)")
    ap.add_argument("--noise", default="0,0.1", help="comma-separated noise levels")
    ap.add_argument("--envs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=123, help="environment seed (the matrix is seed 7)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    variants = {}
    for spec in args.variant or ["base=grow:1", "grow=grow:2"]:
        try:
            name, params = parse_variant(spec)
        except ValueError as e:
            ap.error(f"--variant {e}")
        variants[name] = params
    try:
        noises = [float(x) for x in args.noise.split(",")]
    except ValueError:
        ap.error(f"--noise: {args.noise!r} is not a comma-separated list of numbers")
    print(f"per variant: regret % at round 1, round 2, rounds 3-10, round 10, share of environments with a "
          f"jump (> {JUMP * 100:g} points up after round 1); seed {args.seed}, {args.envs} environments")
    print(" | ".join([f"{'cell':<26}"] + [name.center(31) for name in variants]))
    rows = run(variants, noises, args.envs, args.seed)
    summary = {name: {k: float(np.mean([r[name][k] for r in rows])) for k in ("r1", "r2", "r3+", "r10", "jump_share")}
               for name in variants}
    for name, v in summary.items():
        print(f"{name}: mean over cells r1 {v['r1'] * 100:.2f}%, r2 {v['r2'] * 100:.2f}%, r3-10 {v['r3+'] * 100:.2f}%, "
              f"r10 {v['r10'] * 100:.2f}%, jumps {v['jump_share'] * 100:.1f}% of environments")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": args.seed, "envs": args.envs, "variants": variants,
                                         "rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
