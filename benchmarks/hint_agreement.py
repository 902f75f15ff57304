"""How often a ``delta-hint`` role writes the change its prompt's ``hint=`` suggests.

The ``delta-hint`` prompt shows the change the numeric ``local-model`` tool suggests (the
Reasoner's from the whole history, the Optimizer's from the sliding window); a model that
copied it exactly (to the answer's two decimals) would play ``local-model``'s plan. This
rebuilds every prompt's hint from a ``dara bench --llm-out`` episodes file (the
environment from the episode's spec, the window from the history and the applied rounds,
as the graph builds it) and compares it with the answer:

    python benchmarks/hint_agreement.py --option grow:1 --option unfunded_cap:0 docs/data/rl-compare/episodes/rl-gen-grpo-optimizer-hint-robyn/robyn/dara/episodes.jsonl
    python benchmarks/hint_agreement.py --option grow:1 --option unfunded_cap:0 --role reasoner docs/data/matrix/episodes/robyn-n0.1/robyn/dara/episodes.jsonl

(``--option grow:1``: those runs predate ``grow=2`` as ``local-model``'s default;
``--option unfunded_cap:0``: they predate its cap on a slot no record funded; the hint is
rebuilt as they showed it.)

Prints the share of answers equal to the rounded hint (within 0.01 per slot), the share
copied one slot out of step (an entry skipped or repeated:
``policies.observations.misaligned_copy``), the distribution of the largest per-slot
deviation, and the worst cases.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from policies.base import DecisionRequest  # noqa: E402
from policies.observations import HINT_COPY_TOL, misaligned_copy, shown_hint  # noqa: E402
from tools.envs import env_from_spec  # noqa: E402
from tools.task import Record  # noqa: E402


def recorded_requests(path: Path, window: int, roles=("reasoner", "optimizer")):
    """``(episode, round record, DecisionRequest)`` for every round a role in ``roles``
    answered (the Reasoner round 1, the Optimizer the others; its source is the role, or
    ``fallback`` when its answer was unusable and the plan held), the request rebuilt as
    the graph built it (the Reasoner sees the whole history, the Optimizer the last
    ``window`` records)."""
    for line in path.read_text().splitlines():
        ep = json.loads(line)
        if ep.get("status", "ok") != "ok":
            continue
        task = env_from_spec(ep["env"], ep["env"]["index"]).task(0)
        pool = list(task.history)
        for r in ep["rounds"]:
            role = "reasoner" if r["round"] == 1 else "optimizer"
            if role in roles and r["source"] in (role, "fallback"):
                seen = list(pool) if role == "reasoner" else pool[-window:]  # a copy: pool grows below
                yield ep, r, DecisionRequest(role, task, seen)
            if r.get("mroi") is not None:
                pool.append(Record(allocation=r["allocation"], mroi=r["mroi"]))


def parsed_answers(path: Path, window: int, role: str = "optimizer"):
    """``(episode, round record, request, rounded hint, answer)`` of every parsed answer of
    ``role`` whose length matches its hint."""
    for ep, r, request in recorded_requests(path, window, (role,)):
        hint = np.array(shown_hint(request))
        m = re.search(r"\[(.*)\]", r.get("text") or "")
        if m:
            ans = np.array([float(x) for x in m.group(1).split(",")])
            if len(ans) == len(hint):
                yield ep, r, request, hint, ans


def answers_and_hints(path: Path, window: int, role: str = "optimizer") -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """``(episode id, round, rounded hint, answer)`` of every parsed answer of ``role``."""
    return [(ep["id"], r["round"], hint, ans) for ep, r, _, hint, ans in parsed_answers(path, window, role)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("episodes", type=Path, nargs="+", help="episodes.jsonl files of dara runs")
    ap.add_argument("--window", type=int, default=3, help="the graph's sliding window w (default 3)")
    ap.add_argument("--role", choices=("optimizer", "reasoner"), default="optimizer",
                    help="whose answers to compare (the Reasoner answers round 1)")
    ap.add_argument("--worst", type=int, default=5, help="worst cases to print")
    ap.add_argument("--option", action="append", default=[],
                    help="param:value for local_model as the episodes ran it (e.g. grow:1 for runs before "
                         "grow=2 was the default: docs/data/matrix, docs/data/rl-compare)")
    args = ap.parse_args(argv)
    from benchmarks.trust_region import local_model_options, parse_options

    try:
        options = parse_options(args.option)
    except ValueError as e:
        ap.error(f"--option: {e}")
    for path in args.episodes:
        with local_model_options(options):
            rows = answers_and_hints(path, args.window, args.role)
        if not rows:
            print(f"{path}: no parsed {args.role} answers")
            continue
        dev = np.array([np.abs(a - h).max() for _, _, h, a in rows])
        slips = sum(misaligned_copy(list(a), list(h)) for _, _, h, a in rows)
        print(f"{path}: {len(rows)} {args.role} answers; equal to the rounded hint: {np.mean(dev <= HINT_COPY_TOL):.2f}; "
              f"copied out of step: {slips} ({slips / len(rows):.1%}); "
              f"largest per-slot deviation: median {np.median(dev):.2f}, mean {dev.mean():.2f}, "
              f"> 0.5 in {np.mean(dev > 0.5):.2f}")
        for i in np.argsort(-dev)[:args.worst]:
            eid, k, h, a = rows[i]
            print(f"  {eid} round {k}: hint {h.tolist()} answer {a.tolist()}")
        big = np.array([np.abs(h).max() > 1 for _, _, h, _ in rows])
        if big.any() and not big.all():
            copied = dev <= HINT_COPY_TOL
            print(f"  hints with a move beyond 1 unit (B/T): {big.mean():.2f} of prompts; copied there "
                  f"{copied[big].mean():.2f}, elsewhere {copied[~big].mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
