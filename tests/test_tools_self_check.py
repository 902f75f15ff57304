"""The self-check flags plans that contradict the records, and passes sound ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies.baselines import propose_arrays
from tools.budget import project
from tools.envs import make_envs
from tools.self_check import Flag, check_plan
from tools.task import load_task

LABELS = ["tv", "search", "social"]
HISTORY = [
    {"allocation": [40000, 30000, 30000], "mroi": [0.9, 2.8, 1.6]},
    {"allocation": [50000, 25000, 25000], "mroi": [0.7, 3.0, 1.8]},
    {"allocation": [45000, 27000, 28000], "mroi": [0.8, 2.6, 1.7]},
]


def _task(history=HISTORY):
    return load_task({"budget": 100000, "periods": 3, "labels": LABELS, "history": history})


def test_sound_plan_passes_and_harmful_plan_is_flagged():
    task = _task()
    assert check_plan(task, [25000, 47000, 28000]) == []
    flags = check_plan(task, [65000, 7000, 28000])  # from search (MROI ~2.8) into tv (~0.8)
    kinds = [f.kind for f in flags]
    assert kinds == ["against_evidence", "lower_return"]
    assert flags[0].slots == ["search", "tv"] and flags[0].numbers["search.change"] == -20000
    assert "out of search" in flags[0].message and "into tv" in flags[0].message
    assert flags[1].numbers["expected_change"] < 0
    json.dumps([f.model_dump() for f in flags])  # JSON-able for graph state and --json


def test_a_gap_smaller_than_the_noise_is_not_flagged():
    # tv's MROI is 0.1 above search's; moving 5,000 from tv to search contradicts exact records
    # but not records whose noise is larger than the gap.
    def hist(noise):
        return [dict(r, mroi=[1.1 + n, 1.0 - n, 1.0 + n]) for r, n in zip(HISTORY, noise)]
    plan = [40000, 32000, 28000]
    exact = check_plan(_task(hist((0.0, 0.0, 0.0))), plan)
    assert "against_evidence" in [f.kind for f in exact]
    noisy = check_plan(_task(hist((0.3, 0.1, -0.3))), plan)
    assert "against_evidence" not in [f.kind for f in noisy]


def test_slot_whose_spend_never_varied_is_reported_not_judged():
    hist = [dict(r, allocation=[r["allocation"][0], r["allocation"][1] + r["allocation"][2] - 28000, 28000])
            for r in HISTORY]
    flags = check_plan(_task(hist), [45000, 17000, 38000])
    assert flags[0].kind == "unchecked"
    assert flags[0].slots == ["social"] and "never varied" in flags[0].message
    assert not any(f.kind == "against_evidence" and "social" in f.slots for f in flags)


def test_bad_plan_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="plan: expected 3 finite numbers"):
        check_plan(_task(), [1.0, 2.0])
    with pytest.raises(ValueError, match="history"):
        check_plan(load_task({"budget": 6, "periods": 2}, require_history=False), [3, 3])


@pytest.mark.parametrize("family", ["quadratic", "exponential", "hill"])
def test_flag_rates_on_synthetic_tasks(family):
    """The local-model baseline's plans pass; moving half the best slot's spend to the
    worst slot is caught."""
    env = make_envs(family, 50, periods=4, budget=6.0, seed=5, noise=0.0)
    plans = project(propose_arrays("local-model", env.hist_alloc, env.hist_mroi, env.budget, env.lower,
                                   env.upper), env.budget, env.lower, env.upper)
    flagged = harmful_caught = 0
    for i in range(env.n):
        task = env.task(i)
        flagged += any(f.kind != "unchecked" for f in check_plan(task, plans[i]))
        cur, r = env.hist_alloc[i, -1], env.hist_mroi[i, -1]
        bad = cur.copy()
        best, worst = int(np.argmax(r)), int(np.argmin(r))
        bad[best] -= 0.5 * cur[best]
        bad[worst] += 0.5 * cur[best]
        harmful_caught += any(f.kind == "against_evidence" for f in check_plan(task, bad))
    print(f"{family}: local-model flagged {flagged}/50, harmful caught {harmful_caught}/50")
    assert flagged <= 2 and harmful_caught >= 48


def test_flag_model_fields():
    f = Flag(kind="lower_return", slots=["tv"], numbers={"expected_change": -1.0, "se": None}, message="m")
    assert set(f.model_dump()) == {"kind", "slots", "numbers", "message"}
