"""Python API (run_episode), dara allocate's task errors, and the copilot example
(``tests/test_cli_allocate.py`` has the rest of dara allocate)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graph.api import build_graph, make_tools, run_episode
from graph.commands.allocate import main as allocate_main
from policies.baselines import make_baseline
from tools.envs import make_envs

REPO = Path(__file__).resolve().parents[1]
TASK = {"budget": 6, "periods": 3,
        "history": [{"allocation": [2, 2, 2], "mroi": [0.8, 0.5, 0.3]},
                    {"allocation": [2.5, 2, 1.5], "mroi": [0.7, 0.5, 0.4]}],
        "lower": [0, 0, 0.5], "upper": [4, 4, 4], "labels": ["tv", "search", "social"]}


def test_run_episode_with_names_and_policy_objects(clean_policies):
    env = make_envs("hill", 1, periods=4, budget=100.0, seed=3)
    out = run_episode(env.task(0), env_spec={**env.spec, "index": 0}, reasoner="local-model",
                      optimizer=make_baseline("gradient"), max_rounds=3)
    assert [r["source"] for r in out["rounds"]] == ["reasoner", "optimizer", "optimizer"]
    assert sum(out["allocation"]) == pytest.approx(100.0)
    out2 = run_episode(env_spec={"family": "exponential", "seed": 1}, reasoner="uniform",
                       optimizer="gradient", max_rounds=2)
    assert len(out2["rounds"]) == 2
    with pytest.raises(ValueError, match="build_graph"):
        run_episode(TASK, feedback="live", reasoner="uniform")
    assert build_graph().checkpointer is None
    assert {t.name for t in make_tools()} >= {"query_mroi", "enforce_budget", "oracle_allocation"}


def test_allocate_bad_task_file_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "task.json"
    p.write_text(json.dumps({**TASK, "budget": -1}))
    assert allocate_main(["--task", str(p), "--reasoner", "uniform"]) == 2
    assert "budget = -1: expected a number > 0" in capsys.readouterr().err


def test_copilot_example_runs():
    r = subprocess.run([sys.executable, "examples/copilot_example.py"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "simulated episode" in r.stdout and "final plan" in r.stdout
    assert "one plan" in r.stdout and "(source reasoner)" in r.stdout
    assert "round 3: apply" in r.stdout and "(max_rounds)" in r.stdout


# ---- plan() and LiveSession -------------------------------------------------------------------
def _sqrt_task(observe: str) -> dict:
    """Three channels with returns R_t = a_t * sqrt(x): MROI a_t / (2 sqrt(x))."""
    a = (6.0, 4.0, 2.0)
    allocs = ([10, 10, 10], [12, 9, 9], [9, 11, 10], [10, 9, 11])
    history = []
    for x in allocs:
        obs = ([ai * xi ** 0.5 for ai, xi in zip(a, x)] if observe == "return"
               else [ai / (2 * xi ** 0.5) for ai, xi in zip(a, x)])
        history.append({"allocation": x, observe: obs})
    return {"budget": 30.0, "periods": 3, "labels": ["tv", "search", "social"], "history": history}


def test_plan_with_return_records_moves_the_same_way_as_with_true_mroi():
    from graph.api import PlanResult, plan

    true = plan(_sqrt_task("mroi"), reasoner="local-model")
    est = plan(_sqrt_task("return"), reasoner="local-model")
    assert isinstance(true, PlanResult) and true.source == "reasoner"
    d_true = np.sign(np.round(np.array(true.plan) - true.current, 2))
    d_est = np.sign(np.round(np.array(est.plan) - est.current, 2))
    assert d_true.tolist() == d_est.tolist() == [1, 1, -1]  # into tv and search, out of social
    assert est.notes and est.notes[0].startswith("MROI estimated from returns") and not true.notes
    assert sum(est.plan) == pytest.approx(30.0, abs=1e-9)
    assert [c.label for c in est.changes] == ["tv", "search", "social"] and est.reason.startswith("moved")
    assert est.provenance["policies"] == {"reasoner": "local-model"} and est.provenance["model"] is None
    json.loads(est.model_dump_json())


def test_plan_raises_on_an_unusable_answer_unless_a_numeric_fallback_is_named(register_policy):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from graph.api import NoPlanError, plan
    from policies.llm import LLMPolicy

    register_policy("fake-silent", LLMPolicy("reasoner", FakeListChatModel(responses=["no idea"])))
    with pytest.raises(NoPlanError, match=r"no new plan: the reasoner's answer could not be used \(missing_tags") as e:
        plan(TASK, reasoner="fake-silent")
    assert e.value.record["no_plan"] and e.value.record["text"] == "no idea"
    result = plan(TASK, reasoner="fake-silent", fallback="local-model")
    assert result.source == "fallback:local-model" and result.error.startswith("missing_tags")
    assert result.raw_text == "no idea" and sum(result.plan) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="unknown context field"):
        plan(TASK, reasoner="local-model", max_round=2)
    with pytest.raises(ValueError, match="plan\\(\\) sets context.max_rounds"):
        plan(TASK, reasoner="local-model", max_rounds=2)
    with pytest.raises(ValueError, match="history = \\[\\]"):
        plan({**TASK, "history": []}, reasoner="local-model")


def test_provenance_hashes_the_adapter_weights(tmp_path):
    from graph.context import Context
    from graph.provenance import provenance

    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    p = provenance(Context(reasoner_adapter=str(tmp_path), seed=3), roles=("reasoner",))
    assert p["model"] == "embedded" and p["seed"] == 3 and p["version"]
    assert p["adapters"]["reasoner"] == {"path": str(tmp_path), "sha256": hashlib.sha256(b"weights").hexdigest()[:12]}
    assert provenance(Context(reasoner_adapter="none"), roles=("reasoner",))["adapters"]["reasoner"]["sha256"] is None


def test_live_session_round_trip():
    from graph.api import LiveSession

    s = LiveSession(TASK, reasoner="local-model", optimizer="gradient", max_rounds=2)
    assert not s.done and s.record["round"] == 1 and s.record["source"] == "reasoner"
    first = s.proposal
    assert sum(first) == pytest.approx(6.0) and first[2] >= 0.5
    with pytest.raises(ValueError, match="mroi has 2 values, expected periods = 3"):
        s.observe(mroi=[0.5, 0.4])
    with pytest.raises(ValueError, match="exactly one"):
        s.observe()
    s.observe(returns=[2.0, 1.0, 0.5])  # turned into MROI (elasticity 0.5: no return history)
    r1 = s.rounds[0]
    assert r1["observed_return"] == [2.0, 1.0, 0.5]
    assert r1["mroi"] == pytest.approx([0.5 * v / x for v, x in zip([2.0, 1.0, 0.5], first)])
    assert s.record["round"] == 2 and s.record["window"][-1] == "round 1"
    s.observe(mroi=[0.6, 0.55, 0.5])
    assert s.done and s.proposal is None and [r["source"] for r in s.rounds] == ["reasoner", "optimizer"]
    assert s.allocation == s.rounds[-1]["allocation"]
    with pytest.raises(RuntimeError, match="done"):
        s.observe(mroi=[1, 1, 1])


@pytest.mark.slow
def test_plan_with_a_real_tiny_model_never_presents_a_held_plan_as_new():
    """The tiny random model writes garbage: plan() must say so (NoPlanError), or, with a
    numeric fallback, return that policy's plan marked as such, with the model's provenance."""
    from graph.api import NoPlanError, plan

    llm = {"reasoner": "llm", "base": "tiny-random", "reasoner_adapter": "none"}
    try:
        result = plan(TASK, **llm)
        assert result.source == "reasoner" and result.error is None
    except NoPlanError as e:
        assert e.record["source"] == "fallback" and e.record["error"]
    result = plan(TASK, **llm, fallback="local-model")
    assert result.source in ("reasoner", "fallback:local-model")
    assert result.provenance["model"] == "tiny-random" and result.provenance["adapters"]["reasoner"]["path"] is None


def test_a_plan_after_a_rejected_answer_lists_it(register_policy):
    """The greedy answer is not even in tags; the first sample is a change: the result is
    the Reasoner's plan and keeps the rejected answer."""
    from graph.api import plan
    from policies.llm import LLMPolicy

    class SamplesAChange:
        def generate_texts(self, prompts, seed=None, **kw):
            return [f"<answer>[{','.join(['0.00'] * TASK['periods'])}]</answer>" if seed else "no idea"] * len(prompts)

    register_policy("fake-resampled", LLMPolicy("reasoner", SamplesAChange(), encoding="delta", resample=2))
    result = plan(TASK, reasoner="fake-resampled")
    assert result.source == "reasoner" and result.error is None
    assert [(a["text"], a["seed"]) for a in result.rejected_answers] == [("no idea", None)]
    assert json.loads(result.model_dump_json())["rejected_answers"][0]["error"].startswith("missing_tags")
