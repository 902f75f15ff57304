"""The graph's trust features: self-check flags and replacement, no-plan rounds and the
numeric fallback, change limits around the current plan, edited plans' adjustments,
return observations, and unknown context keys. Numeric policies only: fast."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graph.graph import build_graph, graph
from policies.base import Decision
from policies.llm import LLMPolicy

# Three channels, four records around the current plan; tv clearly returns most per extra
# unit, social least (noise-free linear MROI, so the evidence is unambiguous).
SLOPE = -0.05
TASK = {"budget": 30.0, "periods": 3, "labels": ["tv", "search", "social"], "history": [
    {"allocation": a, "mroi": [round(base + SLOPE * (x - 10), 6) for base, x in zip((1.6, 1.0, 0.5), a)]}
    for a in ([10, 10, 10], [12, 9, 9], [9, 11, 10], [11, 10, 9])]}


class MoveBestToWorst:
    """A deliberately harmful policy: moves 40 % of the best slot's spend (highest last
    MROI) to the worst slot."""

    name = "best-to-worst"

    def propose(self, requests):
        out = []
        for q in requests:
            last = q.window[-1]
            b = np.array(last.allocation, float)
            best, worst = int(np.argmax(last.mroi)), int(np.argmin(last.mroi))
            moved = 0.4 * b[best]
            b[best] -= moved
            b[worst] += moved
            out.append(Decision(allocation=[float(x) for x in b], text="moved best to worst"))
        return out


class AllIntoFirst:
    """Proposes the whole budget in the first slot (the budget tool must cut it back)."""

    name = "all-into-first"

    def propose(self, requests):
        return [Decision(allocation=[q.task.budget] + [0.0] * (q.task.periods - 1), text="")
                for q in requests]


def _live(task, ctx, thread):
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": thread}}
    out = g.invoke({"task": task}, cfg, context={"feedback": "live", **ctx})
    return g, cfg, out


def test_harmful_plan_is_flagged_and_warned_by_default(register_policy):
    register_policy("best-to-worst", MoveBestToWorst())
    g, cfg, out = _live(TASK, {"reasoner": "best-to-worst", "optimizer": "gradient", "max_rounds": 1}, "warn")
    pending = g.get_state(cfg).values["pending"]
    assert pending["source"] == "reasoner" and pending["replaced"] is None
    kinds = [f["kind"] for f in pending["flags"]]
    assert "against_evidence" in kinds and "lower_return" in kinds
    flag = next(f for f in pending["flags"] if f["kind"] == "against_evidence")
    assert flag["slots"] == ["tv", "social"] and "tv" in flag["message"]
    assert out["__interrupt__"][0].value["flags"] == pending["flags"]  # the caller sees them too
    out = g.invoke(Command(resume={"mroi": [1.0, 1.0, 1.0]}), cfg, context={"feedback": "live", "max_rounds": 1,
                                                                          "reasoner": "best-to-worst"})
    assert out["rounds"][0]["flags"] == pending["flags"]


def test_harmful_plan_is_replaced_when_on_flag_names_a_policy(register_policy):
    register_policy("best-to-worst", MoveBestToWorst())
    ctx = {"reasoner": "best-to-worst", "optimizer": "gradient", "max_rounds": 1, "on_flag": "local-model"}
    g, cfg, out = _live(TASK, ctx, "replace")
    pending = g.get_state(cfg).values["pending"]
    assert pending["source"] == "self-check:local-model" and not pending["no_plan"]
    original = pending["replaced"]
    assert original["source"] == "reasoner" and original["proposal"] is not None
    assert "against_evidence" in [f["kind"] for f in original["flags"]]
    assert not any(f["kind"] == "against_evidence" for f in pending["flags"])
    assert pending["text"] == "moved best to worst"  # the model's text stays available
    assert out["__interrupt__"][0].value["apply"] == pending["allocation"]
    cur = np.array(TASK["history"][-1]["allocation"])
    assert pending["allocation"][0] > cur[0] and pending["allocation"][2] < cur[2]  # towards tv, away from social
    assert sum(pending["allocation"]) == pytest.approx(30.0)


def test_simulated_optimizer_rounds_are_checked_against_the_pool(register_policy):
    register_policy("best-to-worst", MoveBestToWorst())
    ctx = {"reasoner": "local-model", "optimizer": "best-to-worst", "max_rounds": 3}
    warned = graph.invoke({"env": {"family": "quadratic", "seed": 4}}, context=ctx)
    flagged = [r for r in warned["rounds"][1:] if r["flags"]]
    assert flagged and all(r["source"] == "optimizer" for r in warned["rounds"][1:])
    fixed = graph.invoke({"env": {"family": "quadratic", "seed": 4}}, context={**ctx, "on_flag": "gradient"})
    srcs = [r["source"] for r in fixed["rounds"]]
    assert "self-check:gradient" in srcs and all("flags" in r for r in fixed["rounds"])


def _fake(role, replies):
    return LLMPolicy(role, FakeListChatModel(responses=replies), encoding="absolute")


def test_unusable_answer_is_no_plan_or_a_marked_numeric_plan(register_policy):
    register_policy("fake-bad", _fake("reasoner", ["I cannot say."]))
    g, cfg, _ = _live(TASK, {"reasoner": "fake-bad", "optimizer": "gradient", "max_rounds": 1}, "noplan")
    held = g.get_state(cfg).values["pending"]
    assert held["source"] == "fallback" and held["no_plan"] is True
    assert held["error"].startswith("missing_tags") and held["text"] == "I cannot say."
    assert held["allocation"] == TASK["history"][-1]["allocation"] and held["flags"] == []
    g, cfg, _ = _live(TASK, {"reasoner": "fake-bad", "optimizer": "gradient", "max_rounds": 1,
                             "fallback": "local-model"}, "numeric")
    numeric = g.get_state(cfg).values["pending"]
    assert numeric["source"] == "fallback:local-model" and numeric["no_plan"] is False
    assert numeric["error"].startswith("missing_tags") and numeric["replaced"]["proposal"] is None
    assert numeric["allocation"] != held["allocation"] and sum(numeric["allocation"]) == pytest.approx(30.0)


def test_change_limits_are_relative_to_the_current_plan(register_policy):
    """Regression: the budget tool's ``max_change`` window was always centred on the last
    history allocation, so round 2 could undo round 1's limited move."""
    register_policy("all-into-first", AllIntoFirst())
    task = {**TASK, "max_change": 0.1}
    ctx = {"reasoner": "all-into-first", "optimizer": "all-into-first", "max_rounds": 2}
    g, cfg, out = _live(task, ctx, "limits")
    r1 = out["__interrupt__"][0].value["apply"]
    assert r1[0] == pytest.approx(11 * 1.1)
    out = g.invoke(Command(resume={"mroi": [1.0, 1.0, 0.5]}), cfg, context={"feedback": "live", **ctx})
    r2 = out["__interrupt__"][0].value["apply"]
    assert r2[0] == pytest.approx(r1[0] * 1.1)
    adj = out["__interrupt__"][0].value["budget"]["adjustments"]
    assert {a["label"]: a["why"] for a in adj}["tv"] == "change limit"


def test_edited_plan_reports_exactly_what_the_budget_tool_changed():
    task = {**TASK, "lower": [0, 0, 5], "upper": [15, 20, 20]}
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "edit"}}
    ctx = {"reasoner": "local-model", "optimizer": "gradient", "feedback": "live", "approval": True,
           "max_rounds": 1}
    g.invoke({"task": task}, cfg, context=ctx)
    out = g.invoke(Command(resume={"allocation": [18, 10, 2]}), cfg, context=ctx)  # tv > 15, social < 5
    assert out["__interrupt__"][0].value["apply"] == pytest.approx([15, 10, 5])
    out = g.invoke(Command(resume={"mroi": [1, 1, 1]}), cfg, context=ctx)
    review = out["rounds"][0]["review"]
    adj = {a["label"]: (a["proposed"], a["applied"], a["why"]) for a in review["budget"]["adjustments"]}
    assert adj == {"tv": (18, 15, "upper bound"), "social": (2, 5, "lower bound")}  # search untouched
    assert "flags" in review and out["rounds"][0]["flags"] == review["flags"]


def test_return_records_are_planned_from_estimated_mroi():
    returns = {**TASK, "history": [{"allocation": r["allocation"],
                                    "return": [round(3 * x ** 0.5 * w, 4) for x, w in zip(r["allocation"], (3, 2, 1))]}
                                   for r in TASK["history"]]}
    g, cfg, out = _live(returns, {"reasoner": "local-model", "optimizer": "gradient", "max_rounds": 2}, "ret")
    values = g.get_state(cfg).values
    est = values["mroi_estimate"]
    assert est["note"].startswith("MROI estimated from returns") and len(est["history_mroi"]) == 4
    assert "return" in values["task"]["history"][0]  # the input as given
    out = g.invoke(Command(resume={"return": [30.0, 12.0, 3.0]}), cfg,
                   context={"feedback": "live", "reasoner": "local-model", "optimizer": "gradient", "max_rounds": 2})
    r1 = g.get_state(cfg).values["rounds"][0]
    assert r1["observed_return"] == [30.0, 12.0, 3.0] and all(m > 0 for m in r1["mroi"])
    bad = g.invoke(Command(resume={"return": [1, -2, 3]}), cfg,
                   context={"feedback": "live", "reasoner": "local-model", "optimizer": "gradient", "max_rounds": 2})
    assert "return[1] = -2" in bad["__interrupt__"][0].value["error"]


def test_unknown_context_key_is_rejected_with_the_known_ones():
    """Regression: LangGraph builds the context as Context(**dict), which raised a bare
    TypeError naming only the bad key."""
    with pytest.raises(ValueError, match=r"unknown context field\(s\) max_round; known: approval, backend"):
        graph.invoke({"env": {"family": "quadratic", "seed": 1}}, context={"max_round": 2})
    from graph.graph import studio_graph

    class Runtime:
        context = {"reasoner": "uniform", "max_round": 2}

    with pytest.raises(ValueError, match="max_round"):
        studio_graph(Runtime())
    assert studio_graph(object()) is graph


@pytest.mark.parametrize("field,value,match", [
    ("fallback", "llm", "context.fallback = 'llm'; choose a numeric policy"),
    ("on_flag", "replace", "context.on_flag = 'replace'; choose warn or a numeric policy"),
])
def test_fallback_and_on_flag_must_be_numeric_policies(field, value, match):
    from graph.context import Context

    with pytest.raises(ValueError, match=match):
        Context(**{field: value})
    assert Context(fallback="", on_flag="warn").fallback is None
