"""langchain-core tools: schemas, invocation, JSON results, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tools.envs import make_envs
from tools.langchain_tools import make_tools
from tools.oracle import oracle_allocation


def test_tools_invoke_bound_and_by_spec():
    e = make_envs("quadratic", 5, noise=0.1, seed=2)
    q, eb, o = make_tools(e)
    assert [t.name for t in (q, eb, o)] == ["query_mroi", "enforce_budget", "oracle_allocation"]
    assert "allocation" in q.args and "proposal" in eb.args
    a = q.invoke({"allocation": [1.0] * 6, "index": 2, "seed": 1})
    b = q.invoke({"allocation": [1.0] * 6, "index": 2, "seed": 1, "spec": json.loads(json.dumps(e.spec))})
    assert a == b and len(a["mroi"]) == 6
    json.dumps(a)
    orc = make_tools()[2].invoke({"index": 3, "spec": e.spec})
    assert np.allclose(orc["allocation"], oracle_allocation(e)[3])
    rep = eb.invoke({"proposal": [2, -1, 1, 1, 1, 1.5], "task": e.task(0).model_dump()})
    assert rep["changed"] and any("negative spend in slot2" in r for r in rep["reasons"])
    assert abs(sum(rep["allocation"]) - 6) < 1e-9
    rep = eb.invoke({"proposal": None, "task": e.task(0).model_dump(), "fallback": [1] * 6})
    assert rep["used_fallback"]


def test_tool_errors_are_clear():
    e = make_envs("quadratic", 2)
    q, eb, o = make_tools(e)
    with pytest.raises(ValueError, match="expected periods=6"):
        q.invoke({"allocation": [1.0] * 5})
    with pytest.raises(ValueError, match="out of range"):
        q.invoke({"allocation": [1.0] * 6, "index": 9})
    with pytest.raises(ValueError, match="no environment"):
        make_tools()[0].invoke({"allocation": [1.0] * 6})
    with pytest.raises(Exception, match="budget"):
        eb.invoke({"proposal": [1.0], "task": {"budget": -1, "periods": 1}})


def test_enforce_budget_tool_checks_the_task_units_as_the_graph_does():
    """A copilot that sends the budget in thousands and the records in units gets the same
    one-line error the graph's setup gives, not a plan in the wrong units."""
    _, eb, _ = make_tools()
    task = {"budget": 500.0, "periods": 2,
            "history": [{"allocation": [250_000.0, 250_000.0], "mroi": [1.2, 0.8]}]}
    with pytest.raises(ValueError, match="budget") as err:
        eb.invoke({"proposal": [300.0, 200.0], "task": task})
    assert "\n" not in str(err.value)
    ok = eb.invoke({"proposal": [300_000.0, 200_000.0], "task": dict(task, budget=500_000.0)})
    assert abs(sum(ok["allocation"]) - 500_000.0) < 1e-6
