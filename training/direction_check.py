"""The direction check: a plan must not take money from the slot that is clearly best.

Tasks where one slot has the highest marginal ROI in *every* history row, at least 1.5x
the runner-up's, are the simplest evidence an allocator can get: whatever the curves,
that slot deserves at least what it had. A round-1 plan that gives it less than its mean
historical spend moves money the wrong way. :func:`direction_tasks` generates such tasks
(T from 3 to 12, budgets from 1 to 10^6, all synthetic families, noise up to 0.1);
:func:`violations` counts the plans that break the rule.
"""

from __future__ import annotations

import numpy as np

from tools.envs import make_envs
from tools.task import Task

FAMILIES = ("quadratic", "exponential", "hill", "media")


def _clear_leader(hist_mroi: np.ndarray, ratio: float) -> np.ndarray:
    """(N,) index of the slot leading every row by ``ratio``, or -1."""
    srt = np.sort(hist_mroi, axis=-1)
    top = hist_mroi.argmax(-1)  # (N, H)
    same = (top == top[:, :1]).all(-1)
    strong = (srt[..., -1] >= ratio * srt[..., -2]).all(-1)
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
