"""``dara allocate --task task.json``: DARA on one real task (the copilot use).

Prints, round by round, the plan, the model's reasoning (its raw answer), and what the
budget tool changed and why. Feedback:

- ``--live``: after each plan, asks for the marginal ROI observed on the campaign
  (one number per slot on stdin, comma/space separated); bad input gets a clear error and
  the question is asked again; an empty line or EOF stops (the plan so far is kept).
- ``--env SPEC.json`` (or ``--family``/``--seed``/``--index``): a simulator;
- neither: one round — the Reasoner's plan for the task.

``--approve`` asks before applying each plan (Enter = apply, or type an edited plan).
The policy and model flags are the fields of :class:`graph.context.Context`.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any, TextIO

from graph.commands.context_flags import MODEL_FIELDS, POLICY_FIELDS, add_context_flags, context_from_args


CONTEXT_FIELDS = (*POLICY_FIELDS, *MODEL_FIELDS, "window", "tolerance", "approval")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dara allocate", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help="task contract JSON file")
    p.add_argument("--rounds", "--max-rounds", dest="rounds", type=int, default=None,
                   help="K rounds (default: 5 with feedback, 1 without)")
    p.add_argument("--live", action="store_true", help="ask for observed MROI on stdin each round")
    p.add_argument("--env", default=None, help="simulator: EnvBatch spec JSON file (with \"index\")")
    p.add_argument("--family", default=None, help="simulator: family (with --seed, --index)")
    p.add_argument("--seed", type=int, default=0, help="simulator: seed of the --family environments")
    p.add_argument("--index", type=int, default=0, help="simulator: which environment of the batch")
    add_context_flags(p, CONTEXT_FIELDS, names={"approval": ["--approve"]},
                      helps={"approval": "Approve or edit each plan before it is applied."})
    p.add_argument("--json", default=None, help="write the final state to this file")
    return p


def _fmt(xs, labels=None) -> str:
    if xs is None:
        return "-"
    if labels:
        return "  ".join(f"{lab}={x:.4g}" for lab, x in zip(labels, xs))
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


def _print_round(r: dict, labels, out: TextIO) -> None:
    print(f"\n== round {r['round']} ({r['source']}) ==", file=out)
    if r.get("window"):
        print(f"  saw: {', '.join(r['window'])}", file=out)
    text = (r.get("text") or "").strip()
    if text:
        print(f"  reasoning: {text}", file=out)
    if r.get("error"):
        print(f"  error: {r['error']}", file=out)
    print(f"  proposal: {_fmt(r.get('proposal'))}", file=out)
    b = r.get("budget") or {}
    if b.get("changed"):
        print("  budget tool: " + "; ".join(b.get("reasons") or ["adjusted"]), file=out)
    elif b:
        print("  budget tool: feasible as proposed", file=out)


def _read_numbers(prompt: str, n: int, inp: TextIO, out: TextIO, what: str) -> list[float] | None:
    """Ask until ``n`` numbers are given; None on empty line / EOF."""
    while True:
        print(prompt, end="", file=out, flush=True)
        line = inp.readline()
        if not line or not line.strip():
            return None
        parts = line.replace(",", " ").split()
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            bad = next(x for x in parts if not _isnum(x))
            print(f"  error: {bad!r} is not a number; enter {n} {what}", file=out)
            continue
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


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    inp, out = stdin or sys.stdin, stdout or sys.stdout
    try:
        return _main(args, inp, out)
    except (ValueError, FileNotFoundError) as e:
        print(f"dara allocate: error: {e}", file=sys.stderr)
        return 2


def _main(args, inp: TextIO, out: TextIO) -> int:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from graph.graph import build_graph
    from tools.task import Task

    task = Task.from_file(args.task)
    env = None
    if args.env:
        with open(args.env) as f:
            env = json.load(f)
        env.setdefault("index", args.index)
    elif args.family:
        env = {"family": args.family, "seed": args.seed, "index": args.index}
    if args.live and env is not None:
        raise ValueError("choose --live (real feedback) or a simulator (--env/--family), not both")
    has_feedback = args.live or env is not None
    rounds = args.rounds if args.rounds is not None else (5 if has_feedback else 1)
    if not has_feedback and rounds != 1:
        raise ValueError("without feedback (--live or --env) only one round can be planned; use --rounds 1")
    ctx = context_from_args(args, CONTEXT_FIELDS, max_rounds=rounds,
                            feedback="simulator" if env is not None else "live")
    labels = task.slot_labels
    print(f"task: budget {task.budget:g} over {task.periods} slots ({', '.join(labels)}), "
          f"{len(task.history)} past allocations", file=out)
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": f"allocate-{uuid.uuid4().hex[:8]}"}}
    state_in: dict[str, Any] = {"task": task.model_dump(exclude_none=True)}
    if env is not None:
        state_in["env"] = env
    result = g.invoke(state_in, cfg, context=ctx)
    headers: set[int] = set()
    applied: set[int] = set()
    stopped = None
    while True:
        values = g.get_state(cfg).values
        pending = values.get("pending")
        for r in values.get("rounds") or []:
            if r["round"] in applied or r["source"] == "carried":
                continue
            if r["round"] not in headers:
                _print_round(r, labels, out)
                headers.add(r["round"])
            print(f"  applied: {_fmt(r['allocation'], labels)}", file=out)
            m = r.get("metrics")
            extra = f"   (regret {100 * m['regret']:.2f}%)" if m else ""
            print(f"  observed MROI: {_fmt(r['mroi'], labels)}{extra}", file=out)
            applied.add(r["round"])
        if pending and pending.get("budget") is not None and pending["round"] not in headers:
            _print_round(pending, labels, out)
            headers.add(pending["round"])
        intr = result.get("__interrupt__") if isinstance(result, dict) else None
        if not intr:
            break
        req = intr[0].value
        if "review" in req:
            print(f"  plan: {_fmt(req['review'], labels)}", file=out)
            if req.get("error"):
                print(f"  error: {req['error']}", file=out)
            vals = _read_numbers(f"  Enter = apply, or type {task.periods} numbers to edit: ",
                                 task.periods, inp, out, "spend values")
            resume: Any = True if vals is None else {"allocation": vals}
        else:
            print(f"  apply: {_fmt(req['apply'], labels)}", file=out)
            if rounds == 1 and not args.live:
                break
            vals = _read_numbers(f"  observed MROI after applying round {req['round']} "
                                 f"({task.periods} numbers, empty = stop): ", task.periods, inp, out, "MROI values")
            if vals is None:
                stopped = "stopped by user"
                break
            resume = {"mroi": vals}
        result = g.invoke(Command(resume=resume), cfg, context=ctx)
    values = g.get_state(cfg).values
    if not has_feedback:
        # planning only: the Reasoner's plan, after the budget tool
        plan = values["pending"]["allocation"]
    else:
        plan = values.get("allocation")
    print(f"\nplan: {_fmt(plan, labels)}", file=out)
    if stopped and values.get("pending"):
        print(f"next proposal (not applied): {_fmt(values['pending'].get('allocation'), labels)}", file=out)
    reason = stopped or values.get("stop_reason")
    if reason:
        print(f"({reason})", file=out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**values, "plan": plan}, f, indent=2)
    return 0
