"""MROI estimated from spend/return records: exact where the model is exact, and plans
built on it move budget in the same direction as plans built on the true MROI."""

from __future__ import annotations

import numpy as np
import pytest

from policies.baselines import propose_arrays
from tools.budget import project
from tools.envs import make_envs
from tools.returns import estimate_mroi, mroi_task
from tools.task import load_task


def test_quadratic_response_gives_exact_mroi():
    x = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0], [4.0, 2.0]])
    slot1 = 3.0 * x[:, 0] - 0.25 * x[:, 0] ** 2           # MROI 3 - 0.5 x
    rets = np.column_stack([slot1, 2.0 * np.sqrt(x[:, 1])])  # slot2 never varied
    est = estimate_mroi(x, rets, unit=2.0, labels=["tv", "radio"])
    assert np.allclose(est.mroi[:, 0], 3.0 - 0.5 * x[:, 0])
    assert est.method == ["quadratic", "borrowed"]
    assert np.allclose(est.mroi_se[:, 0], 0.0, atol=1e-9)  # 4 records, exact fit: zero residual
    # radio borrows tv's elasticity (the median of the identified slots): MROI = e * R / x.
    assert est.elasticity[1] == est.elasticity[0]
    assert np.allclose(est.mroi[:, 1], est.elasticity[0] * rets[:, 1] / 2.0)
    assert "MROI estimated from returns" in est.note and "radio: fewer than two distinct positive spends" in est.note
    # No slot identified at all: a square-root response is assumed.
    flat = estimate_mroi(np.full((3, 1), 2.0), np.full((3, 1), 3.0), unit=2.0)
    assert flat.method == ["borrowed"] and np.allclose(flat.mroi, 0.5 * 3.0 / 2.0)


def test_power_curve_from_two_records_is_exact():
    x = np.array([[1.0], [4.0]])
    est = estimate_mroi(x, 2.0 * np.sqrt(x), unit=2.5)
    assert est.method == ["power"]
    assert np.allclose(est.elasticity, [0.5]) and np.allclose(est.mroi[:, 0], 1.0 / np.sqrt(x[:, 0]))


def test_return_task_becomes_mroi_task_with_a_note():
    task = load_task({"budget": 6, "periods": 2, "labels": ["tv", "web"], "history": [
        {"allocation": [2, 4], "return": [3.0, 4.0]}, {"allocation": [4, 2], "return": [5.0, 2.5]}]})
    mtask, note = mroi_task(task)
    assert mtask.observes == "mroi" and [r.allocation for r in mtask.history] == [[2, 4], [4, 2]]
    assert note.startswith("MROI estimated from returns")
    same, none = mroi_task(mtask)
    assert same is mtask and none is None


def _plans(env, mroi):
    raw = propose_arrays("local-model", env.hist_alloc, mroi, env.budget, env.lower, env.upper)
    return project(raw, env.budget, env.lower, env.upper)


@pytest.mark.parametrize("family", ["quadratic", "exponential", "hill"])
def test_return_records_give_the_same_plan_direction_as_true_mroi(family):
    env = make_envs(family, 40, periods=4, budget=6.0, seed=11, history=3)
    returns = np.stack([env.slot_value(env.hist_alloc[:, h]) for h in range(env.history)], axis=1)
    est = np.empty_like(env.hist_mroi)
    for i in range(env.n):
        task = env.task(i).model_copy(update={"history": []})
        task = load_task({**task.model_dump(exclude_none=True), "history": [
            {"allocation": list(a), "return": list(r)} for a, r in zip(env.hist_alloc[i], returns[i])]})
        mtask, note = mroi_task(task)
        assert note and "estimated" in note
        est[i] = [r.mroi for r in mtask.history]
    current = env.hist_alloc[:, -1]
    d_true = _plans(env, env.hist_mroi) - current
    d_est = _plans(env, est) - current
    moved = np.abs(d_true) > 0.05 * (env.budget / env.periods)[:, None]
    agree = float((np.sign(d_true) == np.sign(d_est))[moved].mean())
    print(f"{family}: direction agreement on {moved.sum()} moved slots = {agree:.3f}")
    assert agree >= 0.95
