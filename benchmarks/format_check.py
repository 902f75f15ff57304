"""Does an adapter write the answer format by itself, without constrained decoding?

The ``local`` and ``vllm`` backends force ``<answer>[...]</answer>`` with exactly T
numbers (``policies.constrained``); an OpenAI-compatible server does not, so there an
adapter that leans on the constraint turns its answers into fallbacks. This generates
greedy answers with the constraint off, on held-out prompts built as the graph builds
them (``training.evaluate``; Optimizer windows chained by ``local-model``), parses them
as the graph does, and prints per adapter and cell the share of well-formed answers,
the share equal to the prompt's ``hint=`` (``delta-hint`` adapters) and round regret:

    python benchmarks/format_check.py                               # both shipped adapters
    python benchmarks/format_check.py --adapters optimizer:training/runs/gen-grpo-optimizer-hint/adapter \\
        --n 16 --json docs/data/format-check/grpo-a.json

Cells are ``family:T`` (T ignored for the data families, which keep their own).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_CELLS = ("quadratic:6", "media:16", "robyn:0")


def parse_adapter(spec: str) -> tuple[str, str | None]:
    """``role:DIR`` or ``role`` (the shipped adapter of that role)."""
    role, _, path = spec.partition(":")
    if role not in ("reasoner", "optimizer"):
        raise ValueError(f"--adapters: {spec!r} must start with 'reasoner' or 'optimizer' (role[:DIR])")
    return role, (path or None)


def parse_cell(spec: str) -> tuple[str, int | None]:
    family, _, t = spec.partition(":")
    from tools.envs import FAMILIES

    if family not in FAMILIES:
        raise ValueError(f"--cells: unknown family {family!r} in {spec!r}; choose from {', '.join(FAMILIES)}")
    try:
        T = int(t) if t else 0
    except ValueError:
        raise ValueError(f"--cells: T in {spec!r} must be an integer") from None
    return family, (T or None)


def check(adapters: list[tuple[str, str | None]], cells: list[tuple[str, int | None]], n: int, noise: float,
          seed: int, base: str = "embedded", batch_size: int = 16) -> list[dict]:
    """One row per (adapter, cell): evaluate's result with ``constrained=False``."""
    from policies import shipped_adapter
    from policies.backends.local import LocalChatModel
    from training.evaluate import evaluate

    rows = []
    for role, path in adapters:
        adapter = str(path or shipped_adapter(role))
        chat = LocalChatModel(base=base, adapters={role: adapter}, bf16=True, batch_size=batch_size, coalesce=False)
        for family, T in cells:
            t0 = time.time()
            res = evaluate(role=role, adapter=adapter, base=base, family=family, n=n, seed=seed, periods=T,
                           noise=noise, constrained=False, chat=chat)
            # the format kept; an answer the decoder rejects as not_a_change was well formed
            res["well_formed_rate"] = 1.0 - res["parse_error_rate"] + res["not_a_change_rate"]
            rows.append(res)
            hint = "-" if res["hint_copy_rate"] is None else f"{res['hint_copy_rate']:.2f}"
            print(f"{role:9s} {adapter:55s} {family:12s} T={res['periods']:<3d} well-formed "
                  f"{res['well_formed_rate']:.2f}  = hint {hint}  regret {100 * res['regret']:.2f}% "
                  f"(local-model {100 * res['regret_teacher']:.2f}%)  {time.time() - t0:.0f} s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapters", nargs="+", default=["reasoner", "optimizer"],
                    help="role[:DIR] per adapter (default: the shipped Reasoner and Optimizer)")
    ap.add_argument("--cells", nargs="+", default=list(DEFAULT_CELLS), help="family:T cells (default: %(default)s)")
    ap.add_argument("--n", type=int, default=16, help="held-out prompts per cell")
    ap.add_argument("--noise", type=float, default=0.1, help="feedback noise of the held-out tasks")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    a = ap.parse_args(argv)
    try:
        adapters = [parse_adapter(s) for s in a.adapters]
        cells = [parse_cell(s) for s in a.cells]
    except ValueError as e:
        print(f"format_check: {e}", file=sys.stderr)
        return 2
    rows = check(adapters, cells, a.n, a.noise, a.seed, a.base)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"n": a.n, "noise": a.noise, "seed": a.seed, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
