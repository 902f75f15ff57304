"""The task contract: strict numbers, one-line errors naming field, value and expectation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from tools.task import Record, Task, TaskError, load_task


def ok(**kw):
    d = {"budget": 6.0, "periods": 2, "history": [{"allocation": [3, 3], "mroi": [0.5, 0.4]}]}
    d.update(kw)
    return d


def rec(alloc, **obs):
    return {"allocation": alloc, **obs}


NAN = float("nan")

BAD = [
    # (changes, exact one-line message)
    ({"periods": True}, "periods = true: expected a whole number"),
    ({"periods": 2.0}, "periods = 2.0: expected a whole number"),
    ({"periods": 0}, "periods = 0: expected a whole number >= 1"),
    ({"budget": "300"}, 'budget = "300": expected a number'),
    ({"budget": True}, "budget = true: expected a number"),
    ({"budget": NAN}, "budget = NaN: expected a finite number"),
    ({"budget": float("inf")}, "budget = Infinity: expected a finite number"),
    ({"budget": -1}, "budget = -1: expected a number > 0"),
    ({"history": []}, "history = []: expected at least one record: a plan needs evidence"),
    ({"history": "abc"}, 'history = "abc": expected a list'),
    ({"history": [rec([3, 3], mroi=[0.5, NAN])]}, "history[0].mroi[1] = NaN: expected a finite number"),
    ({"history": [rec([3, NAN], mroi=[0.5, 0.4])]}, "history[0].allocation[1] = NaN: expected a finite number >= 0"),
    ({"history": [rec([3, -3], mroi=[0.5, 0.4])]}, "history[0].allocation[1] = -3: expected a number >= 0"),
    ({"history": [rec([3, 3], mroi=[0.5, 0.4]), rec([3, 3], mroi=[0.5, False])]},
     "history[1].mroi[1] = false: expected a number"),
    ({"history": [rec([3, 3], mroi=[0.5])]}, "history[0].mroi: has 1 entries but allocation has 2"),
    ({"history": [rec([3, 3, 0], mroi=[0.5, 0.4, 0.1])]},
     "history[0].allocation: has 3 entries, expected periods = 2"),
    ({"history": [rec([3, 3])]}, "history[0]: expected exactly one of mroi or return"),
    ({"history": [rec([3, 3], mroi=[1, 1], **{"return": [1, 1]})]},
     "history[0]: expected exactly one of mroi or return"),
    ({"history": [rec([3, 3], **{"return": [1, 1]}), rec([3, 3], mroi=[1, 1])]},
     "history: mixes mroi and return records; use one kind"),
    ({"history": [rec([3, 3], mroi=[1, 1], roi=[1, 1])]},
     "history[0].roi: unknown field (known: allocation, mroi, return)"),
    ({"bugdet": 6}, "bugdet: unknown field (known: budget, periods, history, lower, upper, labels, max_change)"),
    ({"lower": [1.0]}, "lower: has 1 entries, expected periods = 2"),
    ({"lower": [2.0, 1.0], "upper": [1.0, 5.0]}, "lower[0] = 2: exceeds upper[0] = 1"),
    ({"lower": [4.0, 4.0]}, "lower: bounds cannot sum to budget: their minimum total 8 > budget = 6"),
    ({"upper": [1.0, 1.0]}, "upper: bounds cannot sum to budget: their maximum total 2 < budget = 6"),
    ({"upper": [NAN, 1.0]}, "upper[0] = NaN: expected a finite number >= 0"),
    ({"labels": ["a"]}, "labels: has 1 entries, expected periods = 2"),
    ({"max_change": True}, "max_change = true: expected a number >= 0 (0.3 = +-30%)"),
    ({"max_change": [0.1, "x"]}, 'max_change[1] = "x": expected a number >= 0 (0.3 = +-30%)'),
    ({"max_change": -0.1}, "max_change = -0.1: expected a finite number >= 0 (0.3 = +-30%)"),
    ({"max_change": [0.1]}, "max_change: has 1 entries, expected periods = 2"),
    ({"max_change": 0.1, "lower": [0, 3.5]},
     "max_change = 0.1: slot2 may move only within [2.7, 3.3] of its current 3, outside its bounds [3.5, inf]"),
]


@pytest.mark.parametrize("kw, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_task_is_one_line_naming_field_value_and_expectation(kw, message):
    with pytest.raises(TaskError) as e:
        load_task(ok(**kw))
    text = str(e.value)
    assert text == message
    assert "\n" not in text and "pydantic" not in text and "np.float64" not in text


def test_error_counts_further_problems_and_names_the_file(tmp_path):
    with pytest.raises(TaskError, match=r"^budget = true: expected a number \(and 1 more problem\)$"):
        load_task(ok(budget=True, periods=True))
    f = tmp_path / "t.json"
    f.write_text(json.dumps(ok(periods=True)))
    with pytest.raises(TaskError, match=r"t.json: periods = true"):
        Task.from_file(f)
    with pytest.raises(TaskError, match="is a directory"):
        load_task(tmp_path)
    with pytest.raises(TaskError, match="file not found"):
        load_task(tmp_path / "missing.json")
    f.write_text("{bad")
    with pytest.raises(TaskError, match="not valid JSON"):
        load_task(str(f))


def test_model_still_raises_validation_error_naming_the_field():
    # Direct model use (graph state) keeps pydantic's error type; the field is still named.
    with pytest.raises(ValidationError, match="sum to budget"):
        Task.model_validate(ok(lower=[4.0, 4.0]))
    assert isinstance(TaskError("f", None, "x"), ValueError)


def test_empty_history_accepted_by_model_and_from_file_rejected_for_planning(tmp_path):
    t = Task.model_validate(ok(history=[]))
    assert t.history == [] and t.observes is None
    f = tmp_path / "t.json"
    f.write_text(json.dumps(ok(history=[])))
    assert Task.from_file(f).history == []
    assert load_task(ok(history=[]), require_history=False).history == []


def test_return_records_roundtrip_by_alias():
    t = load_task(ok(history=[rec([3, 3], **{"return": [1.5, 1.0]})]))
    assert t.observes == "return" and t.history[0].return_ == [1.5, 1.0] and t.history[0].mroi is None
    data = t.model_dump(exclude_none=True)
    assert data["history"][0] == {"allocation": [3.0, 3.0], "return": [1.5, 1.0]}
    assert Task.model_validate_json(t.to_json()) == t
    assert Record(allocation=[1.0], return_=[2.0]).kind == "return"


def test_numpy_scalars_are_numbers_and_roundtrip():
    t = Task(budget=np.float64(6), periods=np.int64(2),
             history=[Record(allocation=[np.float32(3), 3], mroi=[0.5, 0.4])])
    assert t.periods == 2 and type(t.periods) is int
    t = Task.model_validate(ok(labels=["tv", "web"]))
    assert Task.model_validate_json(t.to_json()) == t
    assert t.unit == 3.0


def test_max_change_limits_are_relative_to_last_history_allocation():
    t = load_task(ok(max_change=0.3, history=[rec([1, 1], mroi=[1, 1]), rec([2, 4], mroi=[1, 1])]))
    lo, hi = t.limits()
    assert np.allclose(lo, [1.4, 2.8]) and np.allclose(hi, [2.6, 5.2])
    lo, hi = load_task(ok(max_change=[0.0, 1.0], lower=[0, 1])).limits()
    assert np.allclose(lo, [3, 1]) and np.allclose(hi, [3, 6])
    assert np.allclose(t.limits([1, 1])[1], [1.3, 1.3])
    with pytest.raises(TaskError, match="^max_change: max_change limits .* maximum total 5.2 < budget = 6"):
        load_task(ok(max_change=0.3, history=[rec([2, 2], mroi=[1, 1])]))
    with pytest.raises(TaskError, match="^max_change = 0.3: needs a history"):
        load_task(ok(max_change=0.3, history=[]), require_history=False)


@pytest.mark.parametrize("change, message", [
    ({"labels": ["tv", "tv"]}, 'labels[1] = "tv": duplicates labels[0]: slot names must be distinct'),
    ({"labels": ["tv", " "]}, 'labels[1] = " ": expected a non-empty slot name'),
    ({"budget": 1e13}, "budget = 10000000000000.0: expected a number <= 1,000,000,000,000: amounts above lose cents in floating point; "
                       "write the task in thousands or millions"),
    ({"history": [rec([3, 1e308], mroi=[0.5, 0.4])]}, "history[0].allocation[1] = 1e+308: expected a number <= 1,000,000,000,000"),
])
def test_labels_and_amounts_that_a_plan_cannot_show(change, message):
    with pytest.raises(TaskError) as e:
        load_task(ok(**change))
    assert str(e.value).startswith(message)


def test_a_budget_in_other_units_than_the_records_is_refused():
    """Budget 250 (thousands) beside records of 250,000 (units) would be planned as a 99.9%
    cut of every channel; it is refused, naming the factor and the records' totals."""
    hist = [rec([125000, 125000], mroi=[1.0, 2.0]), rec([100000, 140000], mroi=[1.1, 1.9])]
    with pytest.raises(TaskError) as e:
        load_task(ok(budget=250.0, history=hist))
    assert str(e.value) == ("budget = 250.0: is 0.00104 times the records' total spend (240,000 to 250,000 per "
                            "record): the budget and the records look to be in different units (e.g. thousands "
                            "and units); write them in the same unit")
    with pytest.raises(TaskError, match="is 1,000 times"):
        load_task(ok(budget=2.5e8, history=hist))
    for budget in (5000.0, 125000.0, 2e7):  # within 100x of some record: a real budget change
        assert load_task(ok(budget=budget, history=hist)).budget == budget
    zero_last = [hist[0], rec([0, 0], mroi=[1.0, 2.0])]  # all-zero records say nothing about units
    assert load_task(ok(budget=250.0 * 1000, history=zero_last)).budget == 250000.0


def test_a_window_file_in_any_units_is_read(tmp_path):
    """A window file has no budget of its own: the units check is for tasks, not windows."""
    from policies.propose import _read_window

    f = tmp_path / "w.json"
    f.write_text(json.dumps([rec([60000, 60000], mroi=[1.0, 2.0]), rec([50000, 70000], mroi=[1.1, 1.9])]))
    assert [r.allocation for r in _read_window(f)] == [[60000, 60000], [50000, 70000]]
