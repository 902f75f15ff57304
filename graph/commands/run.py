"""``dara run``: scripted batch episodes through the DARA graph.

Every episode is one graph thread, run concurrently and durably by
:func:`graph.commands.episodes.run_episodes`: in this process (default), or with
``--server URL`` as runs of the ``dara`` graph on a LangGraph server (``langgraph dev`` /
``langgraph up``; :mod:`graph.commands.server_episodes`), which queues and persists them.
Episodes are environments ``0..N-1`` of a family (``--family``) or the lines of a JSONL
file (``--tasks``).

Outputs in ``--out DIR`` (the same files with or without ``--server``):

- ``episodes.jsonl`` — one whole line per finished episode, appended and fsynced
  atomically under a lock: ``{"id", "rounds": [{"round", "proposal", "allocation",
  "mroi", "source", "text", "error", "budget_reasons", "flags", "rejected_answers"?}...],
  "regret": [...],
  "mroi_var": [...], "dispersion": [...], "stop_reason", ...}``;
- ``summary.csv`` — per round: mean/median regret, MROI variance, dispersion,
  fallback and carried rates;
- ``rounds.png`` — regret per round (mean and inter-quartile band);
- ``checkpoints.sqlite`` (local runs) — LangGraph ``SqliteSaver``: a killed batch
  restarted with ``--resume`` skips finished episodes (by id) and resumes in-flight ones
  from their last checkpoint, so nothing is lost or duplicated; a torn last line is
  repaired. With ``--server`` the server's threads (ids derived from the batch and the
  episode id) play that part: finished ones are read back, running ones joined;
- ``run.json`` — the run's context, adapter weight hashes and episodes (``--resume`` refuses different ones).

A malformed model answer is recorded (source ``fallback``, ``error``), never fatal; an
episode that fails outright is recorded with ``"status": "error"``. The share of decisions
whose plan did not come from the policy (the fallback rate) is printed when above zero,
and so is the number of decisions that used a later sample after a rejected answer.

Bad input (flags, ``--tasks`` lines, adapters, base model, model servers, a ``--server``
that does not answer or serves no ``dara`` graph, an ``--out`` that is a file) exits 2
with one line before any episode runs, and leaves nothing behind. Exit 1: some episodes
failed outright (their lines say why), or the ``--server`` went away mid-batch; a killed
run keeps its files for ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graph.commands.context_flags import MODEL_FIELDS, POLICY_FIELDS, add_context_flags, context_from_args
from tools.cli_errors import InputError, OneLineParser, check_number, check_output_dir, report

CONTEXT_FIELDS = (*POLICY_FIELDS, *MODEL_FIELDS, "window", "max_rounds", "tolerance", "seed")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="dara run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="quadratic", help="environment family (tools.envs.FAMILIES)")
    p.add_argument("--episodes", type=int, default=20, help="number of episodes (environments 0..N-1)")
    p.add_argument("--periods", type=int, default=6, help="T: slots per environment (synthetic families)")
    p.add_argument("--budget", type=float, default=6.0, help="B: total budget (synthetic families)")
    p.add_argument("--noise", type=float, default=0.0, help="feedback noise (coefficient of variation)")
    p.add_argument("--history", type=int, default=3, help="few-shot records per task")
    p.add_argument("--tasks", default=None,
                   help="JSONL of episodes instead of --family: each line {\"id\"?, \"task\"?, \"env\"} "
                        "where env is an EnvBatch spec with \"index\" (simulator feedback needs one)")
    add_context_flags(p, CONTEXT_FIELDS, helps={
        "seed": "Seed of the environments (with --family) and of simulator feedback noise "
                "(and of sampling when temperature > 0)."})
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    p.add_argument("--concurrency", type=int, default=16,
                   help="episodes in flight at once (16 = the local backend's batch size, so coalesced "
                        "generate calls run full batches)")
    p.add_argument("--server", default=None, metavar="URL",
                   help="run the episodes on this LangGraph server (langgraph dev / up serving this "
                        "checkout's langgraph.json), e.g. http://127.0.0.1:2024; default: in this process")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep finished episodes' checkpoints (with --server: their server threads; "
                        "default: delete once written)")
    p.add_argument("--quiet", action="store_true", help="no progress bar / table")
    return p


def main(argv: list[str] | None = None) -> int:
    from graph.commands.episodes import ExecutorLost

    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except ExecutorLost as e:  # the server went away mid-batch: finished episodes are kept
        print(f"dara run: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:  # InputError, context and task errors: one line
        return report("dara run", e)


def _main(args: argparse.Namespace) -> int:
    from graph.commands.episode_sources import family_episodes, task_episodes
    from graph.commands.episodes import run_episodes
    from graph.commands.summaries import format_round_table, round_summary, write_round_summary

    from graph.commands.preflight import check_context_models
    from graph.commands.summaries import fallback_counts

    check_output_dir("--out", args.out)
    for flag, value, kw in (("--episodes", args.episodes, {"minimum": 1}), ("--periods", args.periods, {"minimum": 1}),
                            ("--history", args.history, {"minimum": 1}),
                            ("--concurrency", args.concurrency, {"minimum": 1})):
        check_number(flag, value, integer=True, **kw)
    check_number("--budget", args.budget, above=0)
    check_number("--noise", args.noise, minimum=0)
    if not args.tasks:
        from tools.envs import FAMILIES

        if args.family not in FAMILIES:
            raise InputError("--family", args.family, f"unknown family; choose one of {', '.join(FAMILIES)}")
    ctx = context_from_args(args, CONTEXT_FIELDS)
    if args.tasks:
        source = {"tasks": args.tasks}
        episodes = task_episodes(args.tasks)
    else:
        source = {k: getattr(args, k) for k in ("family", "episodes", "seed", "periods", "budget",
                                                 "noise", "history")}
        episodes = family_episodes(args.family, args.episodes, seed=args.seed, periods=args.periods,
                                   budget=args.budget, noise=args.noise, history=args.history)
    if args.server is not None:
        from graph.commands.server_episodes import check_server

        check_server(args.server, ctx)
    check_context_models(ctx)
    out = Path(args.out)
    result = run_episodes(ctx, episodes, out, args.concurrency, args.resume, source=source,
                          keep_checkpoints=args.keep_checkpoints, progress=not args.quiet,
                          server=args.server)
    rows = round_summary(result.records)
    write_round_summary(rows, out)
    if not args.quiet:
        print(format_round_table(rows))
        rate = result.ran / result.seconds * 60 if result.seconds > 0 and result.ran else float("nan")
        print(f"{len(result.records)} episodes in {out} ({result.ran} run now in {result.seconds:.1f}s, "
              f"{rate:.1f} episodes/min; {result.errors} failed)")
    fell, resampled, decisions = fallback_counts(result.records)
    if fell:
        print(f"fallback rate: {fell / decisions:.1%} ({fell} of {decisions} decisions did not use the "
              "policy's answer: parse or backend errors, self-check replacements)", file=sys.stderr)
    if resampled:
        print(f"resampled: {resampled} of {decisions} decisions used a later sample after a rejected "
              "answer (the rejected ones are each round's rejected_answers)", file=sys.stderr)
    return 0 if result.errors == 0 else 1
