"""``dara demo`` (what ``make demo`` runs): DARA's plan for a real task, then the benchmark.

First what an analyst would see: ``dara allocate`` on ``examples/task_4ch.json`` (four
channels, a 250,000 budget) with the embedded SmolLM2-135M-Instruct model and the
shipped adapters — the self-check's flags, the per-slot plan table, the expected change
in return, the reason, and the response-curve plot (``<out>/plan_4ch.png``; the plan's
JSON is ``<out>/plan_4ch.json``). When the model's answer cannot be used the demo says
so, as ``dara allocate`` does, and goes on.

Then the benchmark: a batch of held-out quadratic episodes (T=6, B=6, 10 rounds) through
the DARA graph — with the shipped Reasoner and Optimizer adapters when present, the plain
base model otherwise — next to the numeric baselines and the oracle on the same
environments, with a progress line on stderr (episodes done/total, elapsed, remaining).
Results go to ``--out`` (default ``runs/demo``): ``bench.json``, ``bench.png`` and the
episodes of the LLM run (``<family>/dara/episodes.jsonl``), so a rerun resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from graph.commands.context_flags import add_context_flags, context_from_args
from tools.cli_errors import OneLineParser, check_number, check_output_dir, report

CONTEXT_FIELDS = ("max_rounds", "seed", "backend")
EXAMPLE_TASK = Path(__file__).resolve().parents[2] / "examples" / "task_4ch.json"


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="dara demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=20, help="LLM episodes (held-out environments)")
    p.add_argument("--family", default="quadratic")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--task", default=str(EXAMPLE_TASK), help="the task planned first (task contract JSON)")
    p.add_argument("--no-plan", action="store_true", help="skip the plan; run the benchmark only")
    add_context_flags(p, CONTEXT_FIELDS, defaults={"max_rounds": 10, "seed": 7},
                      helps={"seed": "Held-out seed of the environments and feedback noise "
                                     "(training never uses it)."})
    return p


def show_plan(task: str, out: Path, backend: str) -> int:
    """``dara allocate`` on ``task`` with the plot and JSON under ``out``; its exit code."""
    from graph.commands import allocate

    stem = Path(task).stem.removeprefix("task_")
    print(f"== DARA's plan for {task} ==", flush=True)
    code = allocate.main(["--task", task, "--backend", backend, "--plot", str(out / f"plan_{stem}.png"),
                          "--json", str(out / f"plan_{stem}.json")])
    print(flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from graph.commands.bench import BenchPlan, bench_config, check_llm_methods, run_bench, write_results
    from policies import shipped_adapter

    have = {role: shipped_adapter(role) for role in ("reasoner", "optimizer")}
    method = "dara" if all(have.values()) else "base"
    out = Path(args.out)
    try:
        check_output_dir("--out", out)
        check_number("--concurrency", args.concurrency, minimum=1, integer=True)
        plan = BenchPlan(families=[args.family], envs=args.episodes,
                         methods=[method, "uniform", "heuristic", "gradient", "local-model"])
        context = context_from_args(args, CONTEXT_FIELDS)
        check_llm_methods(plan, context)
    except (ValueError, OSError) as e:
        return report("dara demo", e)
    if method == "base":
        print("dara demo: no shipped adapters found; running the plain base model (expect parse errors)",
              file=sys.stderr)
    else:
        print(f"dara demo: embedded SmolLM2-135M-Instruct + adapters {have['reasoner']} and "
              f"{have['optimizer']} (the first load converts the model: ~20 s)", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    if not args.no_plan:
        if show_plan(args.task, out, context.backend) == 2:
            return 2
    print(f"== benchmark: {args.episodes} held-out {args.family} environments, {context.max_rounds} rounds ==",
          flush=True)
    try:
        results = run_bench(plan, context, concurrency=args.concurrency, llm_out=out, progress=True)
    except ValueError as e:  # e.g. a rerun into --out with other settings: refused, in one line
        return report("dara demo", e)
    write_results(results, bench_config(plan, context, args.concurrency, str(out)),
                  json_out=out / "bench.json", plot=out / "bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
