"""An adapter declares the prompt encoding it was trained on; every entry point reads it."""

import json

import pytest

from policies.adapter_meta import ADAPTER_META, declared_encoding, encoding_for, write_adapter_meta


def test_explicit_then_declared_then_role_default(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    assert declared_encoding(a) is None
    assert encoding_for("reasoner", a) == "absolute"  # nothing declared: the role's default
    write_adapter_meta(a, "reasoner", "delta-hint", run="x")
    assert json.loads((a / ADAPTER_META).read_text())["encoding"] == "delta-hint"
    assert encoding_for("reasoner", a) == "delta-hint"
    assert encoding_for("reasoner", a, "delta") == "delta"  # an explicit choice wins
    assert encoding_for("optimizer", None) == "delta" and encoding_for("optimizer", "none") == "delta"


def test_a_training_runs_adapter_reads_its_run_config(tmp_path):
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"mode": "sft", "role": "optimizer", "encoding": "delta-slope"}))
    assert declared_encoding(run / "adapter") == "delta-slope"
    other = tmp_path / "other"
    (other / "adapter").mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"encoding": "absolute"}))  # not a DARA run
    assert declared_encoding(other / "adapter") is None


def test_a_bad_declaration_is_named(tmp_path):
    (tmp_path / ADAPTER_META).write_text(json.dumps({"role": "reasoner", "encoding": "csv"}))
    with pytest.raises(ValueError, match="dara_adapter.json.*'csv'"):
        encoding_for("reasoner", tmp_path)
    with pytest.raises(ValueError, match="encoding must be one of"):
        write_adapter_meta(tmp_path, "reasoner", "csv")


def test_make_policy_uses_the_declared_encoding(tmp_path):
    from peft import LoraConfig, get_peft_model

    from policies import make_policy
    from policies.models import load_base

    model, _ = load_base("tiny-random", cache=False)
    ad = tmp_path / "lora"
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")).save_pretrained(str(ad))
    write_adapter_meta(ad, "optimizer", "delta-hint")
    pol = make_policy("llm", "optimizer", base="tiny-random", adapter=ad)
    assert pol.encoding == "delta-hint"


def test_trained_periods_from_the_adapter_or_its_run(tmp_path):
    from policies import shipped_adapter
    from policies.adapter_meta import trained_periods

    a = tmp_path / "run" / "adapter"
    a.mkdir(parents=True)
    assert trained_periods(a) is None and trained_periods(None) is None and trained_periods("none") is None
    (tmp_path / "run" / "config.json").write_text(json.dumps({"mode": "sft", "rollout": {"periods_range": [2, 16]}}))
    assert trained_periods(a) == (2, 16)
    write_adapter_meta(a, "reasoner", "delta-hint", periods_range=[6, 6])
    assert trained_periods(a) == (6, 6)  # the adapter's own file wins
    for role in ("reasoner", "optimizer"):  # the shipped pair declares its range
        assert trained_periods(shipped_adapter(role)) == (2, 16)


def test_a_plan_warns_when_the_task_has_more_slots_than_the_adapters_saw(tmp_path):
    """One home for dara allocate and graph.api.plan: graph.provenance.range_warnings."""
    from graph.provenance import range_warnings
    from graph.context import Context
    from tools.task import load_task

    a = tmp_path / "adapter"
    a.mkdir()
    write_adapter_meta(a, "reasoner", "delta-hint", periods_range=[2, 16])
    hist = [{"allocation": [1.0] * 24, "mroi": [1.0] * 24}]
    task = load_task({"budget": 24.0, "periods": 24, "history": hist})
    ctx = Context(reasoner="llm", reasoner_adapter=str(a))
    (w,) = range_warnings(task.periods, ctx, ["reasoner"])
    assert w.startswith("the reasoner adapter was trained on 2 to 16 slots and this task has 24")
    assert range_warnings(task.periods, ctx, []) == []  # no model role ran
    assert range_warnings(task.periods, Context(reasoner="local-model", reasoner_adapter=str(a)), ["reasoner"]) == []
    assert range_warnings(6, ctx, ["reasoner"]) == []


def test_the_graph_state_carries_the_range_warning_for_studio(tmp_path):
    """Studio shows the state: setup writes the warning there for every model role that
    will run (the Optimizer only when there is a round 2)."""
    import dataclasses

    from langgraph.runtime import Runtime

    from graph.context import Context
    from graph.nodes import setup

    a = tmp_path / "adapter"
    a.mkdir()
    write_adapter_meta(a, "reasoner", "delta-hint", periods_range=[2, 16])
    task = {"budget": 24.0, "periods": 24, "history": [{"allocation": [1.0] * 24, "mroi": [1.0] * 24}]}
    ctx = Context(reasoner="llm", reasoner_adapter=str(a), optimizer="llm", optimizer_adapter=str(a),
                  feedback="live", max_rounds=1)
    (w,) = setup({"task": task}, Runtime(context=ctx))["warnings"]
    assert w.startswith("the reasoner adapter was trained on 2 to 16 slots and this task has 24")
    two = setup({"task": task}, Runtime(context=dataclasses.replace(ctx, max_rounds=3)))["warnings"]
    assert [x.split(" adapter")[0] for x in two] == ["the reasoner", "the optimizer"]
    small = dict(task, budget=6.0, periods=6, history=[{"allocation": [1.0] * 6, "mroi": [1.0] * 6}])
    assert setup({"task": small}, Runtime(context=ctx))["warnings"] == []


def test_trained_periods_of_a_fixed_t_run_and_of_a_config_that_is_not_a_run(tmp_path):
    from policies.adapter_meta import trained_periods

    a = tmp_path / "run" / "adapter"
    a.mkdir(parents=True)
    cfg = tmp_path / "run" / "config.json"
    cfg.write_text(json.dumps({"mode": "grpo", "rollout": {"periods": 6, "periods_range": []}}))
    assert trained_periods(a) == (6, 6)
    cfg.write_text(json.dumps({"rollout": {"periods_range": [2, 16]}}))  # no mode: not a DARA run's config
    assert trained_periods(a) is None
