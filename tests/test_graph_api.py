"""Python API (run_episode), dara allocate's task errors, and the copilot example
(``tests/test_cli_allocate.py`` has the rest of dara allocate)."""

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
