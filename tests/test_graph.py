"""The DARA graph: routing, windows, termination, fallbacks, live feedback, approval.

Policies are numeric baselines, small recording/raising stubs, and a scripted fake chat
model (langchain-core ``FakeListChatModel``) behind ``policies.llm.LLMPolicy``, so these
tests need no model and run in a few seconds.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graph.context import Context
from graph.graph import build_graph, graph
from policies.llm import LLMPolicy
from policies.prompts import format_target, make_request
from tools.envs import make_envs
from tools.task import Task

ENV = {"family": "quadratic", "seed": 11, "index": 2}
BASE = {"reasoner": "heuristic", "optimizer": "local-model"}


def _task_of(env=ENV) -> Task:
    return make_envs(env["family"], env["index"] + 1, seed=env["seed"]).task(env["index"])


class Recorder:
    """A policy that records the windows it sees and answers with the gradient rule."""

    def __init__(self, name):
        from policies.baselines import make_baseline

        self.name = name
        self.inner = make_baseline("gradient")
        self.seen = []

    def propose(self, requests):
        self.seen.extend([[(list(r.allocation), list(r.mroi)) for r in q.window] for q in requests])
        return self.inner.propose(requests)


class Boom:
    name = "boom"

    def propose(self, requests):
        raise RuntimeError("backend exploded")


def test_baselines_run_k_rounds_and_state_is_json():
    out = graph.invoke({"env": ENV}, context={**BASE, "max_rounds": 4})
    rounds = out["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert [r["source"] for r in rounds] == ["reasoner", "optimizer", "optimizer", "optimizer"]
    assert out["done"] and out["stop_reason"] == "max_rounds"
    task = Task.model_validate(out["task"])
    for r in rounds:
        assert sum(r["allocation"]) == pytest.approx(task.budget)
        assert len(r["mroi"]) == task.periods and r["metrics"]["regret"] >= -1e-9
    # regret falls from round 1 to the last round on this env
    assert rounds[-1]["metrics"]["regret"] < rounds[0]["metrics"]["regret"]
    assert out["allocation"] == rounds[-1]["allocation"]
    json.loads(json.dumps(out))  # plain JSON only


@pytest.mark.parametrize("w", [1, 2, 3, 5])
def test_window_is_last_w_records(w, register_policy):
    rec = Recorder(f"rec-w{w}")
    register_policy(rec.name, rec)
    out = graph.invoke({"env": ENV}, context={"reasoner": "heuristic", "optimizer": rec.name,
                                              "max_rounds": 4, "window": w})
    task = Task.model_validate(out["task"])
    pool = [(r.allocation, r.mroi) for r in task.history]
    labels = [f"history[{i}]" for i in range(len(task.history))]
    for r in out["rounds"]:
        if r["source"] == "optimizer":
            assert r["window"] == labels[-w:]
        pool.append((r["allocation"], r["mroi"]))
        labels.append(f"round {r['round']}")
    # what the optimizer saw at round k = last w records of history + rounds 1..k-1
    assert len(rec.seen) == 3
    for k, seen in zip((2, 3, 4), rec.seen):
        n_pool = len(task.history) + (k - 1)
        assert seen == [(list(a), list(m)) for a, m in pool[:n_pool][-w:]]
    assert out["rounds"][0]["window"] == [f"history[{i}]" for i in range(3)]


def test_tolerance_stops_early_and_carries_forward():
    out = graph.invoke({"env": ENV}, context={**BASE, "max_rounds": 5, "tolerance": 1e6})
    rounds = out["rounds"]
    assert out["stop_reason"] == "converged"
    assert [r["source"] for r in rounds] == ["reasoner"] + ["carried"] * 4
    assert all(r["allocation"] == rounds[0]["allocation"] for r in rounds)
    assert all(r["metrics"] == rounds[0]["metrics"] for r in rounds)
    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]


def test_tolerance_between_rounds():
    full = graph.invoke({"env": ENV}, context={**BASE, "max_rounds": 6})
    disp = [r["dispersion"] for r in full["rounds"]]
    tol = (disp[1] + disp[2]) / 2 if disp[2] < disp[1] else None
    assert tol is not None and disp[0] >= tol
    out = graph.invoke({"env": ENV}, context={**BASE, "max_rounds": 6, "tolerance": tol})
    srcs = [r["source"] for r in out["rounds"]]
    k = next(i for i, d in enumerate(disp) if d < tol)  # first round under tolerance
    assert srcs[: k + 1] == ["reasoner"] + ["optimizer"] * k
    assert srcs[k + 1:] == ["carried"] * (5 - k)
    assert len(srcs) == 6


def test_tolerance_zero_never_stops():
    out = graph.invoke({"env": ENV}, context={**BASE, "max_rounds": 3, "tolerance": 0})
    assert "carried" not in [r["source"] for r in out["rounds"]]


def _fake_llm(role, replies, encoding="absolute"):
    return LLMPolicy(role, FakeListChatModel(responses=replies), encoding=encoding)


def test_fake_llm_with_malformed_replies_falls_back(register_policy):
    task = _task_of()
    good1 = [task.budget / task.periods] * task.periods
    good1[0] += 0.5
    good1[1] -= 0.5
    req = make_request("reasoner", task)
    r1 = format_target(req, good1)
    reasoner = _fake_llm("reasoner", [r1])
    optimizer = _fake_llm("optimizer", [
        "I would move budget to slot 2.",                # no tags
        "<answer>[1, 2, 3]</answer>",                    # wrong length
        "<answer>[" + ", ".join(["1.0"] * task.periods) + "]</answer>",  # valid: uniform
    ])
    register_policy("fake-reasoner", reasoner)
    register_policy("fake-optimizer", optimizer)
    out = graph.invoke({"env": ENV}, context={"reasoner": "fake-reasoner", "optimizer": "fake-optimizer",
                                              "max_rounds": 4})
    r = out["rounds"]
    assert [x["source"] for x in r] == ["reasoner", "fallback", "fallback", "optimizer"]
    assert r[0]["allocation"] == pytest.approx(good1, abs=0.01)
    assert r[0]["error"] is None and r[0]["text"] == r1
    # fallbacks hold the previous applied allocation, keep the text and the typed error
    assert r[1]["allocation"] == pytest.approx(r[0]["allocation"])
    assert r[1]["text"] == "I would move budget to slot 2." and r[1]["error"].startswith("missing_tags")
    assert r[1]["proposal"] is None and r[1]["budget"]["used_fallback"]
    assert r[2]["error"].startswith("wrong_length") and r[2]["allocation"] == pytest.approx(r[0]["allocation"])
    assert r[3]["allocation"] == pytest.approx([task.unit] * task.periods)
    assert out["stop_reason"] == "max_rounds"


def test_round_one_fallback_holds_last_historical_allocation(register_policy):
    register_policy("fake-bad", _fake_llm("reasoner", ["no idea"]))
    out = graph.invoke({"env": ENV}, context={"reasoner": "fake-bad", "optimizer": "gradient", "max_rounds": 2})
    task = Task.model_validate(out["task"])
    r1 = out["rounds"][0]
    assert r1["source"] == "fallback" and r1["error"].startswith("missing_tags")
    assert r1["allocation"] == pytest.approx(task.history[-1].allocation)
    assert out["rounds"][1]["source"] == "optimizer"


def test_policy_exception_is_recorded_not_fatal(register_policy):
    register_policy("boom", Boom())
    out = graph.invoke({"env": ENV}, context={"reasoner": "heuristic", "optimizer": "boom", "max_rounds": 3})
    r = out["rounds"]
    assert [x["source"] for x in r] == ["reasoner", "fallback", "fallback"]
    assert "backend exploded" in r[1]["error"]
    assert r[2]["allocation"] == pytest.approx(r[0]["allocation"])


def test_budget_tool_report_is_kept(register_policy):
    task = _task_of()
    over = [2 * task.unit] * task.periods  # sums to 2B
    register_policy("fake-over", _fake_llm("reasoner", [format_target(make_request("reasoner", task), over)]))
    out = graph.invoke({"env": ENV}, context={"reasoner": "fake-over", "optimizer": "gradient", "max_rounds": 1})
    r1 = out["rounds"][0]
    assert r1["source"] == "reasoner" and r1["budget"]["changed"]
    assert any("sum was" in s for s in r1["budget"]["reasons"])
    assert sum(r1["allocation"]) == pytest.approx(task.budget)


def test_live_feedback_interrupt_and_resume():
    task = _task_of()
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "live-1"}}
    ctx = {**BASE, "feedback": "live", "max_rounds": 2}
    out = g.invoke({"task": task.model_dump()}, cfg, context=ctx)
    (intr,) = out["__interrupt__"]
    assert intr.value["round"] == 1 and len(intr.value["apply"]) == task.periods
    assert sum(intr.value["apply"]) == pytest.approx(task.budget)
    # bad answers re-ask with a clear error, never crash
    out = g.invoke(Command(resume={"mroi": [0.5, 0.4]}), cfg, context=ctx)
    (intr,) = out["__interrupt__"]
    assert "mroi has 2 values, expected periods = 6" in intr.value["error"]
    out = g.invoke(Command(resume={"mroi": ["x"] * task.periods}), cfg, context=ctx)
    assert "mroi[0] = 'x' is not a number" in out["__interrupt__"][0].value["error"]
    obs1 = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    out = g.invoke(Command(resume={"mroi": obs1}), cfg, context=ctx)
    (intr,) = out["__interrupt__"]
    assert intr.value["round"] == 2 and "error" not in intr.value
    obs2 = [0.6] * 6
    out = g.invoke(Command(resume={"mroi": obs2}), cfg, context=ctx)
    assert "__interrupt__" not in out and out["done"]
    assert [r["mroi"] for r in out["rounds"]] == [obs1, obs2]
    assert out["rounds"][0]["metrics"] is None and out.get("oracle") is None
    # the optimizer's window included the live round-1 record
    assert out["rounds"][1]["window"][-1] == "round 1"


def test_approval_and_edit_before_apply():
    task = _task_of()
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "review-1"}}
    ctx = {**BASE, "approval": True, "max_rounds": 2}
    out = g.invoke({"env": ENV}, cfg, context=ctx)
    (intr,) = out["__interrupt__"]
    assert intr.value["round"] == 1 and "review" in intr.value and intr.value["text"]
    out = g.invoke(Command(resume={"allocation": [1, 2]}), cfg, context=ctx)
    assert "periods = 6" in out["__interrupt__"][0].value["error"]
    edit = [2.0, 2.0, 2.0, 0.0, 0.0, 1.0]  # sums to 7: the budget tool fixes it
    out = g.invoke(Command(resume={"allocation": edit}), cfg, context=ctx)
    (intr,) = out["__interrupt__"]
    assert intr.value["round"] == 2
    out = g.invoke(Command(resume=True), cfg, context=ctx)
    r = out["rounds"]
    assert r[0]["review"]["edited"] and r[0]["review"]["proposal"] == edit
    assert sum(r[0]["allocation"]) == pytest.approx(task.budget)
    assert r[0]["allocation"][3] == 0.0 and r[0]["review"]["budget"]["changed"]
    assert r[1]["review"] == {"approved": True, "edited": False}


def test_input_and_context_errors_are_clear():
    with pytest.raises(ValueError, match="'task'.*or an 'env'"):
        graph.invoke({}, context=BASE)
    with pytest.raises(ValueError, match="simulator feedback needs an 'env'"):
        graph.invoke({"task": _task_of().model_dump()}, context=BASE)
    with pytest.raises(ValueError, match="context.reasoner = 'nope'"):
        graph.invoke({"env": ENV}, context={"reasoner": "nope"})
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        Context(window=0)
    with pytest.raises(ValueError, match="unknown context field"):
        Context.from_dict({"rounds": 3})
    with pytest.raises(ValueError, match="env needs a 'family'"):
        graph.invoke({"env": {"seed": 1}}, context=BASE)


def test_task_without_history_uses_uniform_plan():
    task = {"budget": 3.0, "periods": 3, "history": []}
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "nohist"}}
    out = g.invoke({"task": task}, cfg, context={**BASE, "feedback": "live", "max_rounds": 1})
    assert out["__interrupt__"][0].value["apply"] == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.slow
def test_tiny_random_llm_through_graph_is_recorded_not_fatal():
    """A real (tiny, random) chat model on the local backend: garbage answers are
    recorded as fallbacks with their text, and the episode completes."""
    out = graph.invoke({"env": ENV}, context={"reasoner": "llm", "optimizer": "llm", "base": "tiny-random",
                                              "reasoner_adapter": "none", "optimizer_adapter": "none",
                                              "max_rounds": 2})
    r = out["rounds"]
    assert len(r) == 2 and out["done"]
    for x in r:
        assert x["source"] in ("reasoner", "optimizer", "fallback")
        if x["source"] == "fallback":
            assert x["error"] and isinstance(x["text"], str)
        assert sum(x["allocation"]) == pytest.approx(6.0)


def test_delta_cut_below_zero_is_clipped_and_reported(register_policy):
    """A ``delta`` answer that cuts a slot by more than its spend is clipped to 0 (then
    projected onto sum = B like any proposal) and the round's budget report says so; the
    round is the Optimizer's, not a fallback."""
    task = _task_of()
    register_policy("fake-r-keep", _fake_llm("reasoner", [format_target(make_request("reasoner", task),
                                                                         [task.unit] * task.periods)]))
    cut = "<answer>[" + ", ".join(["-9"] + ["0"] * (task.periods - 1)) + "]</answer>"
    register_policy("fake-o-cut", _fake_llm("optimizer", [cut], encoding="delta"))
    out = graph.invoke({"env": ENV}, context={"reasoner": "fake-r-keep", "optimizer": "fake-o-cut",
                                              "max_rounds": 2})
    r2 = out["rounds"][1]
    assert r2["source"] == "optimizer" and r2["error"] is None
    # clipped to 0, then the budget projection spreads the freed budget over all slots
    assert r2["allocation"][0] < 0.25 * out["rounds"][0]["allocation"][0]
    assert sum(r2["allocation"]) == pytest.approx(task.budget)
    assert r2["budget"]["changed"] and r2["budget"]["reasons"][0].startswith("the answer cut slot1 below zero")


class _Stub:
    name = "stub"

    def propose(self, requests):
        return [Decision(allocation=None, text="", error="stub") for _ in requests]


def test_sampling_policy_is_built_per_seed(monkeypatch):
    """Regression: the policy cache key left out the seed, although an 'llm' policy that
    samples (temperature > 0) is built with it, so a second run in the same process with
    another seed reused the first seed's policy."""
    import policies
    from graph.policy_registry import PolicyRegistry

    built = []
    monkeypatch.setattr(policies, "make_policy", lambda kind, role, **kw: (built.append(kw.get("seed")), _Stub())[1])
    registry = PolicyRegistry()
    for seed in (1, 2, 2):
        registry.get(Context(temperature=0.7, seed=seed), "optimizer")
    assert built == [1, 2]
    for seed in (1, 2):  # greedy decoding ignores the seed: one policy
        registry.get(Context(temperature=0.0, seed=seed), "optimizer")
    assert built == [1, 2, None]
    assert Context(temperature=0.7, seed=1).policy_key("reasoner") != Context(temperature=0.7, seed=2).policy_key("reasoner")
    assert Context(seed=1).policy_key("reasoner") == Context(seed=2).policy_key("reasoner")


def test_register_and_unregister_policy(register_policy):
    from graph.api import unregister_policy
    from graph.policy_registry import registered_policies

    register_policy("stub-a", _Stub())
    assert "stub-a" in registered_policies()
    assert Context(optimizer="stub-a").optimizer == "stub-a"
    unregister_policy("stub-a")
    assert "stub-a" not in registered_policies()
    with pytest.raises(ValueError, match="context.optimizer = 'stub-a' is not a policy"):
        Context(optimizer="stub-a")
    with pytest.raises(KeyError, match="stub-a"):
        unregister_policy("stub-a")
    with pytest.raises(ValueError, match="reserved"):
        register_policy("llm", _Stub())
    with pytest.raises(ValueError, match="built-in baseline"):
        register_policy("gradient", _Stub())


def test_context_literal_fields_keep_their_errors():
    with pytest.raises(ValueError, match=r"context.backend = 'tpu'; choose local, vllm or openai"):
        Context(backend="tpu")
    with pytest.raises(ValueError, match=r"context.feedback = 'email'; choose simulator or live"):
        Context(feedback="email")
    with pytest.raises(ValueError, match=r"context.optimizer_encoding = 'rle'; choose absolute or delta"):
        Context(optimizer_encoding="rle")
    assert Context.from_dict({"reasoner_encoding": "", "optimizer_adapter": " "}).reasoner_encoding is None
    schema = graph.get_context_jsonschema()["properties"]
    assert schema["backend"]["enum"] == ["local", "vllm", "openai"]
    assert schema["feedback"]["enum"] == ["simulator", "live"]
