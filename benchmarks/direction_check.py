"""Direction check of a Reasoner: does its round-1 plan take money from the clearly best slot?

200 generated tasks (T 3-12, budgets 1-10^6, all synthetic families, noise up to 0.1) where
one slot has the highest MROI in every history row and at least 1.5x the runner-up's
(``training.direction_check``). A plan that gives that slot less than its mean historical
spend is a violation; an answer that could not be used counts as one too.

    python benchmarks/direction_check.py                        # shipped Reasoner
    python benchmarks/direction_check.py --adapter DIR --encoding delta-slope
    python benchmarks/direction_check.py --policy local-model   # a numeric method

Prints the count and writes ``--json`` (per-task plans, violations) if asked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def run(policy: str = "llm", adapter: str | None = None, encoding: str | None = None, n: int = 200,
        base: str = "embedded", batch: int = 25) -> dict:
    from policies import make_policy
    from policies.base import DecisionRequest
    from training.direction_check import direction_tasks, violations

    tasks = direction_tasks(n)
    kw = {"adapter": adapter, "encoding": encoding, "base": base} if policy == "llm" else {}
    pol = make_policy(policy, "reasoner", **kw)
    plans: list = [None] * len(tasks)
    errors = done = 0
    t0 = time.time()
    # one T per call: the answer format (and the token cap) depend on T, so a mixed batch
    # would be split into one generate call per T anyway
    order = sorted(range(len(tasks)), key=lambda k: tasks[k][0].periods)
    chunks = [[k for k in order if tasks[k][0].periods == T] for T in sorted({t.periods for t, _ in tasks})]
    for chunk in chunks:
        for i in range(0, len(chunk), batch):
            idx = chunk[i:i + batch]
            reqs = [DecisionRequest("reasoner", tasks[k][0], tasks[k][0].history) for k in idx]
            for k, d in zip(idx, pol.propose(reqs)):
                plans[k] = d.allocation
                errors += d.allocation is None
            done += len(idx)
            print(f"\r{done}/{len(tasks)} plans, {time.time() - t0:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    bad = violations(tasks, plans)
    return {"policy": policy, "adapter": adapter, "encoding": encoding, "tasks": len(tasks),
            "violations": len(bad), "unusable_answers": errors, "violating_tasks": bad,
            "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default="llm", help="llm or a numeric baseline name")
    p.add_argument("--adapter", default=None, help="Reasoner adapter dir (default: the shipped one)")
    p.add_argument("--encoding", default=None, help="Reasoner prompt encoding (default: the role's)")
    p.add_argument("--base", default="embedded")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--json", default=None, help="write the result here")
    a = p.parse_args(argv)
    res = run(a.policy, a.adapter, a.encoding, a.n, a.base)
    print(f"{res['violations']} violations out of {res['tasks']} "
          f"({res['unusable_answers']} unusable answers) in {res['seconds']} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
