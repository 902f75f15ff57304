"""``benchmarks/goal_beyond.py`` pairs DARA with ``local-model`` per environment."""

import json

import numpy as np
import pytest

from conftest import load_benchmark


def _cell(tmp_path, shift):
    """A 12-environment quadratic cell whose DARA episodes are local-model's regret + shift[i]."""
    from graph.commands.bench_numeric import run_numeric
    from tools.envs import make_envs

    config = {"family": "quadratic", "envs": 12, "rounds": 4, "seed": 7, "periods": 4, "budget": 4.0,
              "noise": 0.1, "window": 3, "llm_out": str(tmp_path / "episodes")}
    env = make_envs("quadratic", n=12, seed=7, noise=0.1, periods=4, budget=4.0)
    lm = run_numeric("local-model", env, 4, 3, 7)["regret"]
    eps = tmp_path / "episodes" / "quadratic" / "dara"
    eps.mkdir(parents=True)
    eps.joinpath("episodes.jsonl").write_text("".join(
        json.dumps({"id": f"e{i}", "env": {"index": i}, "regret": (lm[:, i] + shift[i]).tolist()}) + "\n"
        for i in reversed(range(12))))  # any order: paired by env index
    path = tmp_path / "cell.json"
    path.write_text(json.dumps({"config": config, "methods": {"local-model": {"regret": lm.mean(axis=1).tolist()}}}))
    return path


def test_a_steady_gap_is_significant_and_a_single_environment_is_not(tmp_path):
    gb = load_benchmark("goal_beyond")
    steady = gb.cell(_cell(tmp_path / "a", np.full(12, 0.001)))
    assert steady["significantly_above"] == [3, 4] and steady["mean_difference_from_r3"] == pytest.approx(0.001)
    one = gb.cell(_cell(tmp_path / "b", np.r_[0.05, np.zeros(11)]))
    assert one["above_in_mean"] == [3, 4] and one["significantly_above"] == []


def test_a_cell_run_on_other_local_model_settings_is_refused(tmp_path):
    gb = load_benchmark("goal_beyond")
    path = _cell(tmp_path, np.zeros(12))
    data = json.loads(path.read_text())
    data["methods"]["local-model"]["regret"][0] += 0.01
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="differ from the recorded"):
        gb.cell(path)


def test_a_dara_only_cell_takes_local_model_from_a_baseline_run_on_the_same_environments(tmp_path):
    gb = load_benchmark("goal_beyond")
    path = _cell(tmp_path, np.full(12, 0.001))
    data = json.loads(path.read_text())
    lm_row = data["methods"].pop("local-model")
    path.write_text(json.dumps(data))  # MODE=rl cells hold DARA only
    with pytest.raises(ValueError, match="--baselines"):
        gb.cell(path)
    base = tmp_path / "baselines"
    base.mkdir()
    base.joinpath("quadratic-T4.json").write_text(json.dumps({"config": data["config"],
                                                             "methods": {"local-model": lm_row}}))
    assert gb.cell(path, baselines=base)["significantly_above"] == [3, 4]
    other = {**data["config"], "noise": 0.0}
    base.joinpath("quadratic-T4.json").write_text(json.dumps({"config": other, "methods": {"local-model": lm_row}}))
    with pytest.raises(ValueError, match="noise differ"):
        gb.cell(path, baselines=base)


def test_a_data_family_baseline_file_is_named_without_a_slot_count(tmp_path):
    gb = load_benchmark("goal_beyond")
    config = {"family": "robyn", "envs": 3, "seed": 7, "noise": 0.1, "rounds": 2, "window": 3,
              "periods": None, "budget": None}
    base = tmp_path / "baselines"
    base.mkdir()
    base.joinpath("robyn.json").write_text(json.dumps({"config": config, "methods": {"heuristic": {}}}))
    with pytest.raises(ValueError, match="robyn.json has no local-model row"):
        gb.recorded_local_model(config, {"dara": {}}, base)
    base.joinpath("robyn.json").write_text(json.dumps({"config": config,
                                                       "methods": {"local-model": {"regret": [0.2, 0.1]}}}))
    assert gb.recorded_local_model(config, {"dara": {}}, base) == [0.2, 0.1]
