"""`dara bench` with numeric policies: JSON schema, ordering sanity, plot, bad input."""

import json

import pytest

from graph.commands.bench import main


def test_bench_json_schema_and_ordering(tmp_path, capsys):
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    rc = main(["--family", "quadratic", "--envs", "200", "--rounds", "4", "--seed", "3",
               "--policies", "uniform,heuristic,local-model", "--json", str(out), "--plot", str(png)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["config"]["envs"] == 200 and data["config"]["rounds"] == 4
    methods = data["methods"]
    assert set(methods) == {"uniform", "heuristic", "local-model", "oracle"}
    for res in methods.values():
        for m in ("regret", "mroi_var", "dispersion"):
            assert len(res[m]) == 4
            assert len(res[f"{m}_ci95"]) == 4
            assert all(lo <= v <= hi for v, (lo, hi) in zip(res[m], res[f"{m}_ci95"]))
    assert max(methods["oracle"]["regret"]) < 1e-6
    # the uniform split never changes; the heuristic improves every round
    assert len(set(round(v, 12) for v in methods["uniform"]["regret"])) == 1
    h = methods["heuristic"]["regret"]
    assert all(a > b for a, b in zip(h, h[1:]))
    assert methods["local-model"]["regret"][-1] < h[-1] < methods["uniform"]["regret"][0]
    assert png.stat().st_size > 1000
    table = capsys.readouterr().out
    assert "| heuristic |" in table and "r4" in table


def test_bench_rejects_unknown_method(capsys):
    assert main(["--policies", "uniform,magic", "--envs", "5"]) == 2
    assert "magic" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["exponential", "hill"])
def test_bench_other_families(family, tmp_path):
    out = tmp_path / "o.json"
    assert main(["--family", family, "--envs", "50", "--rounds", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["methods"]
    assert res["local-model"]["regret"][-1] <= res["uniform"]["regret"][-1] + 1e-9
