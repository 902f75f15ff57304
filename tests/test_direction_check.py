"""The direction check: tasks with a clearly best slot, and the rule a plan must keep."""

import numpy as np
import pytest

from training.direction_check import direction_tasks, violations


def test_tasks_have_a_clear_leader_in_every_row():
    tasks = direction_tasks(60, seed=9)
    assert len(tasks) == 60
    Ts = {t.periods for t, _ in tasks}
    assert min(Ts) >= 3 and max(Ts) <= 12 and len(Ts) > 5
    budgets = [t.budget for t, _ in tasks]
    assert min(budgets) >= 1 and max(budgets) <= 1e6 and max(budgets) / min(budgets) > 1e3
    for task, lead in tasks:
        for rec in task.history:
            m = np.array(rec.mroi)
            others = np.delete(m, lead)
            assert m[lead] >= 1.5 * others.max() and m[lead] > 0


def test_violations_rule():
    tasks = direction_tasks(3, seed=1)
    keep = [[r for r in t.history[-1].allocation] for t, _ in tasks]
    mean_lead = [np.mean([r.allocation[lead] for r in t.history]) for t, lead in tasks]
    assert violations(tasks, [None, None, None]) == [0, 1, 2]  # no plan is not a safe plan
    starve = []
    for i, ((t, lead), k) in enumerate(zip(tasks, keep)):
        k = list(k)
        k[lead] = 0.5 * mean_lead[i]
        starve.append(k)
    assert violations(tasks, starve) == [0, 1, 2]
    feed = []
    for (t, lead), k in zip(tasks, keep):
        k = list(k)
        k[lead] = 2 * max(r.allocation[lead] for r in t.history)
        feed.append(k)
    assert violations(tasks, feed) == []


def test_the_sft_teacher_keeps_the_rule():
    """The local-model teacher keeps the rule on all 200 tasks."""
    from policies.baselines import propose_arrays
    from tools.budget import project

    tasks = direction_tasks(200)
    plans = []
    for task, _ in tasks:
        A = np.array([[r.allocation for r in task.history]])
        M = np.array([[r.mroi for r in task.history]])
        b = np.array([task.budget])
        lo, hi = task.lower_array[None], task.upper_array[None]
        plans.append(list(project(propose_arrays("local-model", A, M, b, lo, hi), b, lo, hi)[0]))
    assert violations(tasks, plans) == []


@pytest.mark.slow
def test_the_shipped_reasoner_keeps_the_rule():
    """The shipped Reasoner on the embedded model, 200 tasks, through the budget tool:
    no round-1 plan takes money from the clearly best slot (benchmarks/direction_check.py
    prints the same count)."""
    from training.direction_check import check_policy

    res = check_policy(progress=False)
    assert res["unusable_answers"] == 0 and res["violations"] == 0, res
