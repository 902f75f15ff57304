"""``benchmarks/rl_compare.py``: runs paired by episode id, Wilcoxon per round."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wilcoxon

from conftest import load_benchmark


def _load():
    return load_benchmark("rl_compare")


def _write(root: Path, run: str, cell: str, regrets: dict[str, list[float]]) -> None:
    d = root / f"rl-{run}-{cell}" / cell.split("-")[0] / "dara"
    d.mkdir(parents=True)
    with open(d / "episodes.jsonl", "w") as f:
        for eid, reg in regrets.items():
            f.write(json.dumps({"id": eid, "status": "ok", "regret": reg, "rounds": [{}] * len(reg)}) + "\n")


def test_runs_pair_by_episode_and_are_tested_per_round(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.1, size=(12, 3))
    b = a + rng.uniform(0.0, 0.05, size=(12, 3))  # worse everywhere
    ids = [f"quadratic-s7-{i:05d}" for i in range(12)]
    _write(tmp_path, "grpo", "quadratic-T6", {i: list(r) for i, r in zip(ids, a)})
    # the other run wrote its episodes in another order, plus one the first lacks
    _write(tmp_path, "grpo-fixed-ref", "quadratic-T6", {i: list(r) for i, r in zip(ids, b)})  # a prefixed name
    _write(tmp_path, "sft", "quadratic-T6", {**{i: list(r) for i, r in reversed(list(zip(ids, b)))},
                                              "quadratic-s7-00099": [0.0, 0.0, 0.0]})
    out = tmp_path / "rl.json"
    png = tmp_path / "rl.png"
    assert _load().main([str(tmp_path), "--runs", "grpo", "sft", "--json", str(out), "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000
    cells = json.loads(out.read_text())["cells"]
    assert list(cells) == ["quadratic-T6"]
    res = cells["quadratic-T6"]
    assert res["envs"] == 12
    np.testing.assert_allclose(res["regret"]["sft"], b.mean(0))
    for k in range(3):
        assert res["wilcoxon_p"]["sft"][k] == pytest.approx(wilcoxon(a[:, k], b[:, k]).pvalue)
        assert res["wins"]["sft"][k] == 12 and res["losses"]["sft"][k] == 0
    half = 2.201 * b.std(0, ddof=1) / np.sqrt(12)  # t(0.975, 11)
    np.testing.assert_allclose(res["ci95"]["sft"], half, rtol=1e-3)
    assert "p vs sft" in capsys.readouterr().out


def test_identical_runs_give_p_one_and_a_missing_run_is_named(tmp_path):
    reg = {f"m-{i}": [0.1, 0.05] for i in range(5)}
    _write(tmp_path, "x", "media-T16", reg)
    _write(tmp_path, "y", "media-T16", reg)
    mod = _load()
    assert mod.compare_cell(tmp_path, ["x", "y"], "media-T16")["wilcoxon_p"]["y"] == [1.0, 1.0]
    with pytest.raises(SystemExit, match="rl-z-media-T16"):
        mod.compare_cell(tmp_path, ["x", "z"], "media-T16")


def test_one_round_across_cells_is_one_table(tmp_path, capsys):
    """The Reasoner comparison has one round: ``--round 1`` prints a row per cell."""
    rng = np.random.default_rng(1)
    for cell in ("robyn", "quadratic-T6"):
        a = rng.uniform(0, 0.3, size=8)
        ids = [f"{cell}-{i}" for i in range(8)]
        _write(tmp_path, "shipped", cell, {i: [float(x)] for i, x in zip(ids, a)})
        _write(tmp_path, "wide", cell, {i: [float(x) - 0.01] for i, x in zip(ids, a)})
    assert _load().main([str(tmp_path), "--runs", "shipped", "wide", "--round", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| robyn") or line.startswith("| quadratic-T6")]
    assert len(rows) == 2 and all("| 0/8 |" in r for r in rows)  # shipped higher on all 8, paired
    assert "**robyn**" not in out  # no per-cell tables
