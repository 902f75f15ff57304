"""``dara bench``: compare allocation methods round by round on many environments.

Round k is the allocation applied after the k-th decision: round 1 is the Reasoner's (or
a baseline's) answer to the few-shot history, rounds 2..K refine it from the sliding
window of the last ``w`` records (history followed by applied rounds). Every method's
proposal goes through the same budget projection (``tools.budget.project``), and all
methods see the same noisy observations for the same seed, environment and round.

Numeric baselines run as arrays over all environments at once (``graph.commands.
bench_numeric``; 2000 environments x 10 rounds take seconds). LLM methods (``dara``,
``reasoner-only``, ``optimizer-only``, ``base``, ``dara-grpo-a``, ``dara-sft``) run as episodes
through the DARA graph (``graph.commands.bench_llm``), imported only when asked for, so a
numeric benchmark never loads torch.

Output: a Markdown table per metric (methods x rounds) on stdout, ``--json`` with
``{"config": {...}, "methods": {name: {"regret": [K], "mroi_var": [K],
"dispersion": [K], "regret_ci95": [[lo, hi]] * K, ...}}}`` (LLM methods add
``parse_error_rate``, ``fallback_rate``, their ``_by_round`` lists, ``resample_rate`` and
``llm_decisions``; the rates are printed when above zero) and ``--plot`` per-round curves. With several families (``--family quadratic,hill``) the JSON holds
``"families": {family: {"methods": ...}}`` instead of a top-level ``"methods"``.

:func:`run_bench` is the typed entry point (``dara demo`` calls it); :func:`main` parses
the flags into a :class:`BenchPlan` and a :class:`graph.context.Context`. Bad flags, output
paths and model settings exit 2 with one line before any row runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from graph.commands.bench_llm import METHODS as _LLM_METHOD_TABLE
from graph.commands.context_flags import MODEL_FIELDS, add_context_flags, context_from_args
from graph.context import Context
from policies.baselines import BASELINES
from tools.cli_errors import InputError, OneLineParser, check_number, check_output_dir, check_output_file, report

LLM_METHODS = tuple(_LLM_METHOD_TABLE)  # their policies and adapters: graph.commands.bench_llm
CONTEXT_FIELDS = ("max_rounds", "seed", "window", *MODEL_FIELDS)


@dataclass(kw_only=True)
class BenchPlan:
    """Which methods ``dara bench`` compares, on which environments.

    The rounds, window, seed (environments and feedback noise) and the model settings of
    LLM methods come from the :class:`Context` given with the plan.
    """

    families: list[str]
    methods: list[str]
    envs: int = 2000
    noise: float = 0.0
    periods: int | None = None
    budget: float | None = None
    oracle: bool = True

    def __post_init__(self) -> None:
        from tools.envs import FAMILIES

        unknown = [m for m in self.methods if m not in BASELINES and m not in LLM_METHODS and m != "oracle"]
        if unknown:
            raise InputError("--policies", ",".join(unknown), "unknown method; choose from "
                             f"{', '.join(BASELINES + LLM_METHODS)}, oracle")
        if not self.families:
            raise InputError("--family", None, "name at least one environment family")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise InputError("--family", ",".join(bad), f"unknown family; choose from {', '.join(FAMILIES)}")
        check_number("--envs", self.envs, minimum=1, integer=True)
        check_number("--periods", self.periods, minimum=1, integer=True)
        check_number("--budget", self.budget, above=0)
        check_number("--noise", self.noise, minimum=0)
        if self.oracle and "oracle" not in self.methods:
            self.methods = [*self.methods, "oracle"]

    def make_env(self, family: str, seed: int):
        from tools.envs import make_envs

        kw = {k: v for k, v in (("periods", self.periods), ("budget", self.budget)) if v is not None}
        return make_envs(family, n=self.envs, seed=seed, noise=self.noise, **kw)


def run_bench(plan: BenchPlan, context: Context, *, concurrency: int = 16, llm_out: str | Path | None = None,
              out: TextIO | None = None, progress: bool = False) -> dict[str, dict[str, dict]]:
    """``{family: {method: summary}}``; prints the tables to ``out`` (stdout by default);
    ``progress`` shows LLM methods' episodes done, elapsed and remaining on stderr."""
    from graph.commands.bench_numeric import run_numeric
    from graph.commands.summaries import markdown_table, method_summary

    out = out or sys.stdout
    results: dict[str, dict[str, dict]] = {}
    for fam in plan.families:
        env = plan.make_env(fam, context.seed)
        results[fam] = {}
        for name in plan.methods:
            t = time.perf_counter()
            if name in LLM_METHODS:
                from graph.commands.bench_llm import run_llm_method  # heavy: torch, models

                per_round, extra_stats = run_llm_method(
                    name, env, context, concurrency=concurrency,
                    out_dir=(Path(llm_out) / fam if llm_out else None), progress=progress)
                res = method_summary(per_round)
                res.update(extra_stats)
            else:
                res = method_summary(run_numeric(name, env, context.max_rounds, context.window, context.seed))
            res["envs"] = env.n
            res["seconds"] = round(time.perf_counter() - t, 3)
            results[fam][name] = res
        print(f"\n## {fam}: regret (% of optimal value), mean over environments\n", file=out)
        print(markdown_table(results[fam], "regret", scale=100), file=out)
        print(f"\n## {fam}: MROI variance across slots\n", file=out)
        print(markdown_table(results[fam], "mroi_var", fmt="{:.2e}"), file=out)
        rates = {name: (res["parse_error_rate"], res.get("fallback_rate", 0.0), res.get("resample_rate", 0.0))
                 for name, res in results[fam].items() if "parse_error_rate" in res}
        if any(p > 0 or f > 0 or r > 0 for p, f, r in rates.values()):
            print("\nparse-error / fallback / resampled rate: " + ", ".join(
                f"{k} {p:.2%} / {f:.2%} / {r:.2%}" for k, (p, f, r) in rates.items()), file=out)
    return results


def check_llm_methods(plan: BenchPlan, context: Context) -> None:
    """Before any row runs: the adapter flags, and every LLM method's model settings
    (adapters, base model, server), so a bad one fails in one line, not after the numeric rows."""
    from graph.commands.preflight import check_context_models
    from graph.context import llm_roles

    check_context_models(context, [])
    for name in plan.methods:
        if name in LLM_METHODS:
            from graph.commands.bench_llm import method_context

            ctx = method_context(name, context)
            check_context_models(ctx, llm_roles(ctx))


def bench_config(plan: BenchPlan, context: Context, concurrency: int, llm_out: str | None) -> dict:
    """The ``"config"`` of the results JSON: the flags that made them."""
    return {
        "family": ",".join(plan.families), "envs": plan.envs, "rounds": context.max_rounds,
        "seed": context.seed, "periods": plan.periods, "budget": plan.budget, "noise": plan.noise,
        "window": context.window, "policies": plan.methods, "no_oracle": not plan.oracle,
        "backend": context.backend, "base": context.base, "concurrency": concurrency, "llm_out": llm_out,
        "temperature": context.temperature, "resample": context.resample,
        "optimizer_adapter": context.optimizer_adapter, "optimizer_encoding": context.optimizer_encoding,
        "reasoner_adapter": context.reasoner_adapter, "reasoner_encoding": context.reasoner_encoding,
    }


def write_results(results: dict[str, dict[str, dict]], config: dict, json_out: str | Path | None = None,
                  plot: str | Path | None = None) -> None:
    """The results JSON (``{"config", "methods"}`` or ``{"config", "families"}``) and plot."""
    from graph.commands.summaries import plot_methods

    if json_out:
        payload: dict = {"config": config}
        if len(results) == 1:
            payload["methods"] = next(iter(results.values()))
        else:
            payload["families"] = {f: {"methods": r} for f, r in results.items()}
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(payload, indent=1))
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_methods(results, plot)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="dara bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="quadratic", help="environment family, or several comma-separated")
    p.add_argument("--envs", type=int, default=2000, help="number of held-out environments per family")
    p.add_argument("--periods", type=int, default=None, help="slots T (synthetic families; default 6)")
    p.add_argument("--budget", type=float, default=None, help="budget B (synthetic families; default 6)")
    p.add_argument("--noise", type=float, default=0.0, help="multiplicative noise on observed MROI")
    p.add_argument(
        "--policies",
        default="uniform,heuristic,gradient,local-model",
        help=f"comma-separated methods: {', '.join(BASELINES)}, oracle, or LLM methods {', '.join(LLM_METHODS)}",
    )
    p.add_argument("--no-oracle", action="store_true", help="leave the oracle row out of the table")
    p.add_argument("--json", dest="json_out", default=None, help="write results JSON here")
    p.add_argument("--plot", default=None, help="write per-round curves (PNG) here")
    p.add_argument("--concurrency", type=int, default=16, help="episodes in flight for LLM methods")
    p.add_argument("--llm-out", default=None,
                   help="keep LLM methods' episodes here (DIR/<method>/episodes.jsonl); reruns resume")
    add_context_flags(p, CONTEXT_FIELDS, defaults={"max_rounds": 10, "seed": 7}, helps={
        "max_rounds": "Decisions per episode (K).",
        "seed": "Seed of the environments and of observation noise.",
        "reasoner_adapter": "Override the Reasoner adapter of LLM methods.",
        "optimizer_adapter": "Override the Optimizer adapter of LLM methods.",
    })
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        check_output_file("--json", args.json_out)
        check_output_file("--plot", args.plot)
        check_output_dir("--llm-out", args.llm_out)
        check_number("--concurrency", args.concurrency, minimum=1, integer=True)
        plan = BenchPlan(families=[f.strip() for f in args.family.split(",") if f.strip()],
                         methods=[m.strip() for m in args.policies.split(",") if m.strip()],
                         envs=args.envs, noise=args.noise, periods=args.periods, budget=args.budget,
                         oracle=not args.no_oracle)
        context = context_from_args(args, CONTEXT_FIELDS)
        check_llm_methods(plan, context)
    except (ValueError, OSError) as e:  # InputError, context errors: one line, nothing run
        return report("dara bench", e)
    try:
        results = run_bench(plan, context, concurrency=args.concurrency, llm_out=args.llm_out,
                            progress=sys.stderr.isatty())
    except ValueError as e:  # e.g. --llm-out holding a run with other settings: refused, in one line
        return report("dara bench", e)
    print(f"\n{len(plan.families)} family(ies) x {len(plan.methods)} methods in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    write_results(results, bench_config(plan, context, args.concurrency, args.llm_out), args.json_out, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
