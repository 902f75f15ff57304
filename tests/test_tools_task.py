"""The task contract names the bad field and value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tools.task import Task


def ok(**kw):
    d = {"budget": 6.0, "periods": 2, "history": [{"allocation": [3, 3], "mroi": [0.5, 0.4]}]}
    d.update(kw)
    return d


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"budget": -1.0}, "budget"),
        ({"budget": float("inf")}, "budget"),
        ({"history": [{"allocation": [3, 3, 0], "mroi": [0.5, 0.4, 0.1]}]}, "history[0].allocation"),
        ({"history": [{"allocation": [3, 3], "mroi": [0.5]}]}, "mroi"),
        ({"history": [{"allocation": [3, float("nan")], "mroi": [0.5, 0.4]}]}, "allocation[1]"),
        ({"history": [{"allocation": [3, 3], "mroi": [float("inf"), 0.4]}]}, "mroi[0]"),
        ({"lower": [1.0]}, "lower"),
        ({"lower": [2.0, 1.0], "upper": [1.0, 5.0]}, "lower[0]"),
        ({"lower": [4.0, 4.0]}, "sum(lower)"),
        ({"upper": [1.0, 1.0]}, "sum(upper)"),
        ({"labels": ["a"]}, "labels"),
    ],
)
def test_task_errors_name_the_field(kw, needle):
    with pytest.raises(ValidationError) as e:
        Task.model_validate(ok(**kw))
    assert needle in str(e.value)


def test_task_roundtrip():
    t = Task.model_validate(ok(labels=["tv", "web"]))
    assert Task.model_validate_json(t.to_json()) == t
    assert t.unit == 3.0
