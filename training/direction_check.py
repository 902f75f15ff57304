"""The direction check: a plan must not take money from the slot that is clearly best.

Tasks where one slot has the highest marginal ROI in *every* history row, at least 1.5x
the runner-up's, are the simplest evidence an allocator can get: whatever the curves,
that slot deserves at least what it had. A round-1 plan that gives it less than its mean
historical spend moves money the wrong way. :func:`direction_tasks` generates such tasks
(T from 3 to 12, budgets from 1 to 10^6, all synthetic families, noise up to 0.1);
:func:`violations` counts the plans that break the rule; :func:`check_policy` runs a
policy (an LLM Reasoner or a numeric one) on them, each plan through the budget tool as
in the graph.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tools.envs import make_envs
from tools.task import Task

FAMILIES = ("quadratic", "exponential", "hill", "media")


def _clear_leader(hist_mroi: np.ndarray, ratio: float) -> np.ndarray:
    """(N,) index of the slot leading every row by ``ratio``, or -1."""
    srt = np.sort(hist_mroi, axis=-1)
    top = hist_mroi.argmax(-1)  # (N, H)
    same = (top == top[:, :1]).all(-1)
    # a positive leader: rows where every slot is saturated (all MROI 0) say nothing
    strong = ((srt[..., -1] > 0) & (srt[..., -1] >= ratio * srt[..., -2])).all(-1)
    return np.where(same & strong, top[:, 0], -1)


def direction_tasks(n: int = 200, seed: int = 4242, ratio: float = 1.5) -> list[tuple[Task, int]]:
    """``n`` tasks with a clear leader, and the leader's index for each."""
    rng = np.random.default_rng(seed)
    out: list[tuple[Task, int]] = []
    attempt = 0
    while len(out) < n:
        attempt += 1
        T = int(rng.integers(3, 13))
        budget = float(np.exp(rng.uniform(0.0, np.log(1e6))))
        family = FAMILIES[int(rng.integers(0, len(FAMILIES)))]
        env = make_envs(family, 64, periods=T, budget=budget, seed=seed * 1000 + attempt,
                        noise=float(rng.uniform(0, 0.1)), history=int(rng.integers(2, 6)))
        lead = _clear_leader(env.hist_mroi, ratio)
        for i in np.nonzero(lead >= 0)[0][:2]:  # at most 2 per draw: keep T and families mixed
            out.append((env.task(int(i)), int(lead[i])))
            if len(out) == n:
                break
    return out


def violations(tasks: list[tuple[Task, int]], plans: list[list[float] | None], rel_tol: float = 1e-6) -> list[int]:
    """Indices of tasks whose plan gives the leader less than its mean historical spend
    (a missing plan counts as a violation: no plan is not a safe plan)."""
    bad = []
    for k, ((task, lead), plan) in enumerate(zip(tasks, plans)):
        mean_spend = float(np.mean([r.allocation[lead] for r in task.history]))
        if plan is None or plan[lead] < mean_spend * (1 - rel_tol):
            bad.append(k)
    return bad


def check_policy(policy: str = "llm", adapter: str | None = None, encoding: str | None = None, n: int = 200,
                 base: str = "embedded", batch: int = 25, progress: bool = True) -> dict:
    """Round-1 plans of ``policy`` on :func:`direction_tasks` (``n``) and their violations.

    ``adapter`` ``None`` = the shipped Reasoner; ``encoding`` ``None`` = the adapter's
    declared one. Plans are projected by the budget tool (what the graph applies); an
    unusable answer counts as a violation."""
    from policies import make_policy
    from policies.base import DecisionRequest
    from tools.budget import project

    tasks = direction_tasks(n)
    kw = {"adapter": adapter, "encoding": encoding, "base": base} if policy == "llm" else {}
    pol = make_policy(policy, "reasoner", **kw)
    plans: list = [None] * len(tasks)
    errors = done = 0
    t0 = time.time()
    # one T per call: the answer format (and the token cap) depend on T
    for T in sorted({t.periods for t, _ in tasks}):
        chunk = [k for k in range(len(tasks)) if tasks[k][0].periods == T]
        for i in range(0, len(chunk), batch):
            idx = chunk[i:i + batch]
            reqs = [DecisionRequest("reasoner", tasks[k][0], tasks[k][0].history) for k in idx]
            for k, d in zip(idx, pol.propose(reqs)):
                if d.allocation is None:
                    errors += 1
                    continue
                t = tasks[k][0]
                b = np.array([t.budget])
                plans[k] = list(project(np.array([d.allocation], float), b, t.lower_array[None],
                                        t.upper_array[None])[0])
            done += len(idx)
            if progress:
                print(f"\r{done}/{len(tasks)} plans, {time.time() - t0:.0f} s", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    bad = violations(tasks, plans)
    return {"policy": policy, "adapter": adapter, "encoding": getattr(pol, "encoding", None), "tasks": len(tasks),
            "violations": len(bad), "unusable_answers": errors, "violating_tasks": bad,
            "seconds": round(time.time() - t0, 1)}
