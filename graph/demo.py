"""``dara demo`` (what ``make demo`` runs): DARA on the embedded model vs the baselines.

Runs a batch of held-out quadratic episodes (T=6, B=6, 10 rounds) through the DARA graph
on the embedded SmolLM2-135M-Instruct model — with the shipped Reasoner and Optimizer
adapters when present, the plain base model otherwise — and prints the per-round regret
table next to the numeric baselines and the oracle (all on the same environments).
Results also go to ``--out`` (default ``runs/demo``): ``bench.json``, ``bench.png`` and
the episodes of the LLM run (``dara/episodes.jsonl``), so a rerun resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dara demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=20, help="LLM episodes (held-out environments)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seed", type=int, default=7, help="held-out seed (training never uses it)")
    p.add_argument("--family", default="quadratic")
    p.add_argument("--backend", default="local")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", default="runs/demo")
    args = p.parse_args(argv)

    from policies import shipped_adapter

    have = {role: shipped_adapter(role) for role in ("reasoner", "optimizer")}
    method = "dara" if all(have.values()) else "base"
    if method == "base":
        print("dara demo: no shipped adapters found; running the plain base model (expect parse errors)",
              file=sys.stderr)
    else:
        print(f"dara demo: embedded SmolLM2-135M-Instruct + adapters {have['reasoner']} and "
              f"{have['optimizer']}", file=sys.stderr)
    from graph import bench

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return bench.main([
        "--family", args.family, "--envs", str(args.episodes), "--rounds", str(args.rounds),
        "--seed", str(args.seed), "--policies", f"{method},uniform,heuristic,gradient,local-model",
        "--backend", args.backend, "--concurrency", str(args.concurrency),
        "--json", str(out / "bench.json"), "--plot", str(out / "bench.png"), "--llm-out", str(out),
    ])


if __name__ == "__main__":
    sys.exit(main())
