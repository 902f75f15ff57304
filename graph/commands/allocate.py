"""``dara allocate --task task.json``: DARA's plan for one real task (the copilot use).

Prints the plan as an analyst reads it: the self-check's flags, then a per-slot table
(current and recommended spend to the cent, change, share, last observed and predicted
MROI), the expected change in return with its interval, and a reason built from those
facts (``graph.commands.plan_output``). ``--plot`` draws each slot's fitted response
curve (``graph.commands.plan_plot``); ``--json`` writes the documented schema;
``--verbose`` adds the model's raw text and the budget tool's report per round.

Feedback:

- neither ``--live`` nor a simulator: one round, the Reasoner's plan for the task;
- ``--live``: after each plan, asks for what was observed on the campaign (marginal ROI,
  one number per slot on stdin); bad input is re-asked; an empty line or EOF stops. The
  last round's plan is printed without asking for an observation nobody will use;
- ``--env SPEC.json`` (or ``--family``/``--seed``/``--index``): a simulator.

A round whose model answer cannot be used (unparseable, cut at the token cap, backend
error) produces *no new plan* (the round record's ``no_plan``, with ``error`` saying
why): the command says so and why and exits 3, never passing the held allocation off as
a recommendation. ``--fallback POLICY`` sets ``Context.fallback``: the graph then plans
that round with the numeric policy (source ``fallback:POLICY``), marked as such everywhere.
A plan the self-check flags is still a plan (exit 0, flags above the table). Bad input
exits 2 with one line naming the flag, before any model is loaded.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TextIO

from graph.commands.context_flags import MODEL_FIELDS, POLICY_FIELDS, add_context_flags, context_from_args
from graph.context import Context
from tools.cli_errors import (EXIT_NO_PLAN, EXIT_OK, InputError, OneLineParser, check_number,
                              check_output_file, report)
from tools.money import format_money, money_decimals

_OPTIONAL = tuple(f for f in ("on_flag",) if f in {x.name for x in fields(Context)})
CONTEXT_FIELDS = (*POLICY_FIELDS, *MODEL_FIELDS, "window", "tolerance", "approval", *_OPTIONAL)
FLAG_NAMES = {"approval": ["--approve"]}
"""Context fields whose flag here has another name."""
FALLBACKS = ("uniform", "heuristic", "gradient", "local-model")
"""Numeric policies ``--fallback`` accepts (``hold`` would keep the current plan: no plan)."""
PROG = "dara allocate"


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help="task contract JSON file")
    p.add_argument("--rounds", "--max-rounds", dest="rounds", type=int, default=None,
                   help="K rounds (default: 5 with feedback, 1 without)")
    p.add_argument("--live", action="store_true", help="ask for the observed MROI on stdin each round")
    p.add_argument("--env", default=None, help="simulator: EnvBatch spec JSON file (with \"index\")")
    p.add_argument("--family", default=None, help="simulator: family (with --seed, --index)")
    p.add_argument("--seed", type=int, default=0, help="simulator: seed of the --family environments")
    p.add_argument("--index", type=int, default=0, help="simulator: which environment of the batch")
    add_context_flags(p, CONTEXT_FIELDS, names=FLAG_NAMES,
                      helps={"approval": "Approve or edit each plan before it is applied."})
    p.add_argument("--fallback", default=None, choices=FALLBACKS,
                   help="when the model's answer cannot be used, plan with this numeric policy instead "
                        "(marked as such); default: no plan, exit 3")
    p.add_argument("--json", default=None, help="write the plan (documented schema) to this file")
    p.add_argument("--plot", default=None, help="draw each slot's fitted response curve with the current "
                                                "and recommended spend to this image file (.png, .pdf, .svg)")
    p.add_argument("--verbose", action="store_true", help="also print the model's raw text and the budget "
                                                          "tool's report for every round")
    return p


@dataclass
class Setup:
    """Everything checked before the first model call."""

    task: Any
    env: dict | None
    rounds: int
    context: Context
    roles: list[str]


def prepare(args) -> Setup:
    """Check every input (outputs, task, simulator, models) without loading a model."""
    from graph.commands.plan_plot import FORMATS
    from graph.commands.preflight import check_context_models
    from graph.context import llm_roles
    from tools.task import TaskError, load_task

    check_output_file("--json", args.json)
    check_output_file("--plot", args.plot)
    if args.plot and Path(args.plot).suffix.lower() not in FORMATS:
        raise InputError("--plot", args.plot, f"unknown image type; use one of {', '.join(FORMATS)}")
    check_number("--rounds", args.rounds, minimum=1, integer=True)
    try:
        task = load_task(args.task)
    except TaskError as e:
        if e.field == "task" and e.source is None:  # the file itself: name the flag
            raise InputError("--task", args.task, e.expected) from None
        raise
    env = None
    if args.env:
        from graph.feedback import normalise_env

        try:
            env = json.loads(Path(args.env).read_text())
        except (OSError, ValueError) as e:
            raise InputError("--env", args.env, f"cannot be read as JSON ({type(e).__name__})") from None
        env = normalise_env({"index": args.index, **env} if isinstance(env, dict) else env)
    elif args.family:
        from graph.feedback import normalise_env

        env = normalise_env({"family": args.family, "seed": args.seed, "index": args.index})
    if args.live and env is not None:
        raise InputError("--live", None, "choose --live (real feedback) or a simulator (--env/--family), not both")
    has_feedback = args.live or env is not None
    rounds = args.rounds if args.rounds is not None else (5 if has_feedback else 1)
    if not has_feedback and rounds != 1:
        raise InputError("--rounds", rounds, "without feedback (--live or --env) only one round can be planned")
    ctx = context_from_args(args, CONTEXT_FIELDS, names=FLAG_NAMES, max_rounds=rounds, fallback=args.fallback,
                            feedback="simulator" if env is not None else "live")
    roles = llm_roles(ctx, rounds)
    check_context_models(ctx, roles)
    return Setup(task=task, env=env, rounds=rounds, context=ctx, roles=roles)


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    inp, out = stdin or sys.stdin, stdout or sys.stdout
    try:
        setup = prepare(args)
    except (ValueError, OSError) as e:  # InputError, TaskError, context and env errors
        return report(PROG, e)
    try:
        return _run(args, setup, inp, out)
    except ValueError as e:  # the graph's input checks (setup node), before any plan
        return report(PROG, e)


# ---- the session -------------------------------------------------------------------------------
def _money(xs, labels, decimals: int = 2) -> str:
    return "  ".join(f"{lab} {format_money(x, decimals)}" for lab, x in zip(labels, xs))


def _status(rec: dict, ctx: Context) -> tuple[bool, str, str | None]:
    """(a usable plan?, its source for the JSON, why not / why a fallback), from the round
    record's ``source``, ``no_plan`` and ``error`` (``graph.state.Round``)."""
    src = str(rec.get("source"))
    if rec.get("no_plan") or src == "fallback":
        budget = rec.get("budget") or {}
        return False, "none", rec.get("error") or "; ".join(budget.get("reasons") or []) or "the answer was unusable"
    if src.startswith("fallback:"):
        return True, src, rec.get("error") or "the answer could not be used"
    review = rec.get("review") or {}
    if review.get("edited"):
        fixed = (review.get("budget") or {})
        return True, "edited", "; ".join(fixed.get("reasons") or []) if fixed.get("changed") else None
    if src in ("reasoner", "optimizer"):
        name = ctx.reasoner if src == "reasoner" else ctx.optimizer
        return True, ("model" if name == "llm" else name), None
    return True, src, rec.get("error")


def _source_line(source: str, why: str | None, role: str | None) -> str:
    if source == "model":
        return f"plan from: the chat model ({role or 'reasoner'})"
    if source == "edited":
        return "plan from: your edit" + (f", made feasible by the budget tool: {why}" if why else "")
    if source.startswith("fallback:"):
        return f"plan from: numeric fallback {source.split(':', 1)[1]} (asked with --fallback): the model's " \
               f"answer could not be used: {why}"
    return f"plan from: {source}" + (f" ({why})" if why else "")


def _print_round(r: dict, labels, out: TextIO, verbose: bool, ctx: Context) -> None:
    ok, source, why = _status(r, ctx)
    print(f"\n== round {r['round']} ({r.get('role') or r.get('source')}) ==", file=out)
    if r.get("window"):
        print(f"  saw: {', '.join(r['window'])}", file=out)
    if not ok:
        print(f"  no new plan was produced: {why}; the current allocation stays in place", file=out)
    else:
        print("  " + _source_line(source, why, r.get("role")), file=out)
    for f in r.get("flags") or []:
        print(f"  check ({f.get('kind')}): {f.get('message')}", file=out)
    rejected = r.get("rejected_answers") or []
    if rejected:
        from graph.commands.summaries import is_resampled

        what = (f"the answer of sample {len(rejected)} is the plan" if is_resampled(r)
                else "none of them gave a usable plan")
        print(f"  the model was asked {len(rejected)} more time(s) after a rejected answer; {what}", file=out)
    text = (r.get("text") or "").strip()
    if verbose and text:
        print(f"  model answer: {text}", file=out)
        for a in rejected:
            print(f"  rejected answer (seed {a.get('seed')}): {a.get('text')!r}: {a.get('error')}", file=out)
    b = r.get("budget") or {}
    if verbose and b.get("changed") and not b.get("used_fallback"):
        print("  budget tool: " + "; ".join(b.get("reasons") or ["adjusted"]), file=out)


def _read_numbers(prompt: str, n: int, inp: TextIO, out: TextIO, what: str) -> list[float] | None:
    """Ask until ``n`` finite numbers are given; None on an empty line / EOF."""
    while True:
        print(prompt, end="", file=out, flush=True)
        line = inp.readline()
        if not line or not line.strip():
            return None
        parts = line.replace(",", " ").split()
        bad = next((x for x in parts if not _isnum(x)), None)
        if bad is not None:
            print(f"  error: {bad!r} is not a number; enter {n} {what}", file=out)
            continue
        vals = [float(x) for x in parts]
        if len(vals) != n:
            print(f"  error: got {len(vals)} numbers, expected {n} {what} (one per slot)", file=out)
            continue
        if not all(v == v and abs(v) != float("inf") for v in vals):
            print("  error: numbers must be finite", file=out)
            continue
        return vals


def _isnum(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def _observation_kind(task, request: dict) -> str:
    """``return`` when the task records returns and the graph accepts them live, else ``mroi``."""
    accepts = request.get("resume_with") or {}
    return "return" if task.observes == "return" and isinstance(accepts, dict) and "return" in accepts else "mroi"


def _run(args, setup: Setup, inp: TextIO, out: TextIO) -> int:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from graph.graph import build_graph

    task, ctx, rounds = setup.task, setup.context, setup.rounds
    labels = task.slot_labels
    dec = money_decimals(task.budget)
    print(f"task: budget {format_money(task.budget, dec)} over {task.periods} slots ({', '.join(labels)}), "
          f"{len(task.history)} past allocations", file=out)
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": f"allocate-{uuid.uuid4().hex[:8]}"}}
    state_in: dict[str, Any] = {"task": task.model_dump(exclude_none=True, by_alias=True)}
    if setup.env is not None:
        state_in["env"] = setup.env

    result = g.invoke(state_in, cfg, context=ctx)
    shown: set[int] = set()
    observed: set[int] = set()
    while True:
        values = g.get_state(cfg).values
        for r in values.get("rounds") or []:
            if r["round"] in observed or r["source"] == "carried":
                continue
            if r["round"] not in shown and (rounds > 1 or args.verbose):
                _print_round(r, labels, out, args.verbose, ctx)
                shown.add(r["round"])
            print(f"  applied: {_money(r['allocation'], labels, dec)}", file=out)
            m = r.get("metrics")
            extra = f"   (regret {100 * m['regret']:.2f}%)" if m else ""
            if r.get("observed_return") is not None:
                print(f"  observed return: {_money(r['observed_return'], labels, dec)}", file=out)
                print(f"  MROI estimated from the returns: {'  '.join(f'{x:.4g}' for x in r['mroi'])}", file=out)
            elif r.get("mroi") is not None:
                print(f"  observed MROI: {'  '.join(f'{x:.4g}' for x in r['mroi'])}{extra}", file=out)
            observed.add(r["round"])
        pending = values.get("pending")
        if pending and pending.get("budget") is not None and pending["round"] not in shown \
                and (rounds > 1 or args.verbose):
            _print_round(pending, labels, out, args.verbose, ctx)
            shown.add(pending["round"])
        intr = result.get("__interrupt__") if isinstance(result, dict) else None
        if not intr:
            break
        req = intr[0].value
        if "review" in req:
            print(f"  to review: {_money(req['review'], labels, dec)}", file=out)
            if req.get("error"):
                print(f"  error: {req['error']}", file=out)
            vals = _read_numbers(f"  Enter = apply, or type {task.periods} numbers to edit: ",
                                 task.periods, inp, out, "spend values")
            resume: Any = True if vals is None else {"allocation": vals}
        else:
            if rounds == 1 and not args.live:
                break
            print(f"  apply: {_money(req['apply'], labels, dec)}", file=out)
            if req.get("error"):
                print(f"  error: {req['error']}", file=out)
            if req["round"] >= rounds:
                break  # the last plan: no observation would be used
            kind = _observation_kind(task, req)
            what = "MROI values" if kind == "mroi" else "return values"
            vals = _read_numbers(f"  observed {'MROI' if kind == 'mroi' else 'return'} after applying round "
                                 f"{req['round']} ({task.periods} numbers, empty = stop): ",
                                 task.periods, inp, out, what)
            if vals is None:
                print("  (stopped: no observation given)", file=out)
                break
            resume = {kind: vals}
        result = g.invoke(Command(resume=resume), cfg, context=ctx)
    values = g.get_state(cfg).values
    decided = [r for r in values.get("rounds") or [] if r["source"] != "carried"]
    final = values.get("pending") if values.get("pending") else (decided[-1] if decided else None)
    return _conclude(args, setup, values, final, out)


def _evidence_task(task, rounds: list[dict]):
    """The task's records plus the rounds observed in this session (for the report)."""
    from tools.returns import mroi_task
    from tools.task import Record

    seen = [r for r in rounds if r.get("source") != "carried"]
    if not seen:
        return task
    if task.observes == "return" and all(r.get("observed_return") is not None for r in seen):
        extra = [Record.model_validate({"allocation": r["allocation"], "return": r["observed_return"]})
                 for r in seen]
        return task.model_copy(update={"history": [*task.history, *extra]})
    base, _ = mroi_task(task)
    extra = [Record(allocation=r["allocation"], mroi=r["mroi"]) for r in seen if r.get("mroi") is not None]
    return base.model_copy(update={"history": [*base.history, *extra]})


def _conclude(args, setup: Setup, values: dict, final: dict | None, out: TextIO) -> int:
    from graph.commands.plan_output import format_plan, plan_json
    from graph.provenance import provenance, range_warnings
    from tools.plan_report import plan_report

    task, ctx = setup.task, setup.context
    current = list(task.history[-1].allocation)
    used = ["reasoner"] + (["optimizer"] if setup.rounds > 1 else [])  # the roles this run asked
    prov = {**provenance(ctx, used), "seed": ctx.seed if setup.env is not None else args.seed}
    ok, source, why = _status(final, ctx) if final else (False, "none", "no round was planned")
    raw_text = (final or {}).get("text") or ""
    if not ok:
        print(f"\nno new plan was produced: {why}", file=out)
        print("the current allocation stays in place" + ("" if args.fallback else
              "; rerun with --fallback local-model to get a numeric plan instead (marked as such)"), file=out)
        if args.json:
            payload = plan_json(None, current=current, flags=list((final or {}).get("flags") or []),
                                reason=f"no new plan was produced: {why}", raw_text=raw_text,
                                source="none", prov=prov, rejected=(final or {}).get("rejected_answers"),
                                decimals=money_decimals(setup.task.budget))
            _write_json(args.json, payload)
        return EXIT_NO_PLAN
    plan = final["allocation"]
    evidence = _evidence_task(task, values.get("rounds") or [])
    rep = plan_report(evidence, plan, current=current)
    flags = list(final["flags"]) if isinstance(final.get("flags"), list) else [f.model_dump() for f in rep.flags]
    note = None if source == "model" and not why else _source_line(source, why, final.get("role"))
    from graph.commands.summaries import is_resampled

    if is_resampled(final) and source != "edited":
        n = len(final["rejected_answers"])
        note = (f"{_source_line(source, why, final.get('role'))}: sample {n}, asked again after {n} rejected "
                "answer(s) (--verbose shows them)")
    if source == "model":  # the chat model wrote this plan: say when it extrapolates in T
        rep.warnings.extend(range_warnings(task.periods, ctx, setup.roles))
    print("\nplan:\n" + format_plan(rep, flags, note), file=out)
    if args.plot:
        from graph.commands.plan_plot import plot_plan

        print(f"plot: {plot_plan(evidence, rep.plan, current, args.plot)}", file=out)
    if args.json:
        payload = plan_json(rep, current=current, flags=flags, reason=rep.reason, raw_text=raw_text,
                            source=source, prov=prov, rejected=final.get("rejected_answers"))
        _write_json(args.json, payload)
    return EXIT_OK


def _write_json(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
