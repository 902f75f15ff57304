"""Python API (run_episode), dara allocate, and the copilot example."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

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


def test_allocate_plan_only(tmp_path):
    p = tmp_path / "task.json"
    p.write_text(json.dumps(TASK))
    out = io.StringIO()
    assert allocate_main(["--task", str(p), "--reasoner", "local-model", "--optimizer", "gradient",
                          "--json", str(tmp_path / "o.json")], stdout=out) == 0
    text = out.getvalue()
    assert "round 1 (reasoner)" in text and "plan: tv=" in text
    plan = json.loads((tmp_path / "o.json").read_text())["plan"]
    assert sum(plan) == pytest.approx(6.0) and plan[2] >= 0.5


def test_allocate_live_reasks_on_bad_input(tmp_path):
    p = tmp_path / "task.json"
    p.write_text(json.dumps(TASK))
    stdin = io.StringIO("0.6 0.5\n0.6, 0.5, abc\n0.6 0.55 0.5\n0.55 0.55 0.54\n")
    out = io.StringIO()
    assert allocate_main(["--task", str(p), "--live", "--rounds", "2", "--reasoner", "local-model",
                          "--optimizer", "gradient", "--json", str(tmp_path / "o.json")],
                         stdin=stdin, stdout=out) == 0
    text = out.getvalue()
    assert "got 2 numbers, expected 3" in text and "'abc' is not a number" in text
    state = json.loads((tmp_path / "o.json").read_text())
    assert [r["mroi"] for r in state["rounds"]] == [[0.6, 0.55, 0.5], [0.55, 0.55, 0.54]]
    assert "round 2 (optimizer)" in text and state["stop_reason"] == "max_rounds"


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
