"""``benchmarks/matrix_summary.py``: per-cell wins, ties and losses against the heuristic."""

import json

from conftest import load_benchmark


def _cell(dara, heur, lm=None, fallback=0.0, noise=0.1):
    methods = {"dara": {"regret": dara, "envs": 20, "fallback_rate": fallback, "parse_error_rate": 0.0},
               "heuristic": {"regret": heur}}
    if lm is not None:
        methods["local-model"] = {"regret": lm}
    return {"config": {"noise": noise}, "methods": methods}


def test_rounds_are_won_tied_or_lost_and_ties_need_both_under_the_level():
    ms = load_benchmark("matrix_summary")
    r = ms.cell_summary(_cell([0.10, 0.004, 0.003, 0.02], [0.20, 0.004, 0.006, 0.01],
                              lm=[0.05, 0.01, 0.002, 0.015]))
    assert (r["wins"], r["ties"], r["losses"]) == (2, 1, 1)  # r3: 0.3% vs 0.6% is a win, not a tie; r3 vs local-model: both under 0.5%, a tie
    assert r["lost_rounds"] == [4] and not r["beats_heuristic"]
    assert r["rounds_above_local_model"] == [4] and not r["at_or_below_local_model_from_r3"]
    assert ms.cell_summary(_cell([0.1], [0.2], fallback=0.02))["fallbacks_ok"] is False


def test_cli_prints_the_table_and_names_a_bad_file(tmp_path, capsys):
    ms = load_benchmark("matrix_summary")
    good = tmp_path / "quadratic-T6-n0.1.json"
    good.write_text(json.dumps(_cell([0.1, 0.05], [0.2, 0.1], lm=[0.1, 0.01])))
    assert ms.main([str(good), "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "| quadratic-T6-n0.1 | 20 | 10.00 → 5.00 | 20.00 → 10.00 | 2/0/0 | yes |" in out
    assert (tmp_path / "m.png").stat().st_size > 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {}, "methods": {"heuristic": {"regret": [0.1]}}}))
    assert ms.main([str(bad)]) == 2
    assert "bad.json: the cell has no 'dara' method" in capsys.readouterr().err


def test_against_an_earlier_matrix_prints_before_and_now(tmp_path, capsys):
    ms = load_benchmark("matrix_summary")
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    (old / "media-T6-n0.1.json").write_text(json.dumps(_cell([0.3, 0.2, 0.04, 0.02], [0.4, 0.3, 0.2, 0.1],
                                                             lm=[0.3, 0.2, 0.03, 0.01])))
    (new / "media-T6-n0.1.json").write_text(json.dumps(_cell([0.3, 0.2, 0.02, 0.01], [0.4, 0.3, 0.2, 0.1],
                                                             lm=[0.3, 0.2, 0.02, 0.01], fallback=0.005)))
    (new / "robyn-n0.1.json").write_text(json.dumps(_cell([0.3, 0.2, 0.1, 0.05], [0.4, 0.3, 0.2, 0.1],
                                                          lm=[0.3, 0.2, 0.1, 0.05])))  # no earlier cell: left out
    assert ms.main([str(new / "media-T6-n0.1.json"), str(new / "robyn-n0.1.json"), "--against", str(old)]) == 0
    out = capsys.readouterr().out
    assert "| media-T6-n0.1 | 3.00 → 1.50 | 2.00 → 1.00 | 2.00 → 1.50 | 0.0% → 0.5% |" in out
    assert "| robyn-n0.1 |" not in out.split("before → now")[1]
