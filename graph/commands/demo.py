"""``dara demo`` (what ``make demo`` runs): DARA on the embedded model vs the baselines.

Runs a batch of held-out quadratic episodes (T=6, B=6, 10 rounds) through the DARA graph
on the embedded SmolLM2-135M-Instruct model — with the shipped Reasoner and Optimizer
adapters when present, the plain base model otherwise — and prints the per-round regret
table next to the numeric baselines and the oracle (all on the same environments).
Results also go to ``--out`` (default ``runs/demo``): ``bench.json``, ``bench.png`` and
the episodes of the LLM run (``<family>/dara/episodes.jsonl``), so a rerun resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graph.commands.context_flags import add_context_flags, context_from_args

CONTEXT_FIELDS = ("max_rounds", "seed", "backend")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dara demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=20, help="LLM episodes (held-out environments)")
    p.add_argument("--family", default="quadratic")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", default="runs/demo")
    add_context_flags(p, CONTEXT_FIELDS, defaults={"max_rounds": 10, "seed": 7},
                      helps={"seed": "Held-out seed of the environments and feedback noise "
                                     "(training never uses it)."})
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from graph.commands.bench import BenchPlan, bench_config, run_bench, write_results
    from policies import shipped_adapter

    have = {role: shipped_adapter(role) for role in ("reasoner", "optimizer")}
    method = "dara" if all(have.values()) else "base"
    if method == "base":
        print("dara demo: no shipped adapters found; running the plain base model (expect parse errors)",
              file=sys.stderr)
    else:
        print(f"dara demo: embedded SmolLM2-135M-Instruct + adapters {have['reasoner']} and "
              f"{have['optimizer']}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        plan = BenchPlan(families=[args.family], envs=args.episodes,
                         methods=[method, "uniform", "heuristic", "gradient", "local-model"])
        context = context_from_args(args, CONTEXT_FIELDS)
        results = run_bench(plan, context, concurrency=args.concurrency, llm_out=out)
    except (ValueError, FileNotFoundError) as e:
        print(f"dara demo: {e}", file=sys.stderr)
        return 2
    write_results(results, bench_config(plan, context, args.concurrency, str(out)),
                  json_out=out / "bench.json", plot=out / "bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
