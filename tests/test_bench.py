"""`dara bench` with numeric policies: JSON schema, ordering sanity, plot, bad input, and
noise paired with the graph's episodes."""

import json

import numpy as np
import pytest

from graph.commands.bench import main
from tools.envs import make_envs


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


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_numeric_rows_see_the_graph_episodes_noise(noise):
    """Regression: at noise > 0 the numeric rows drew observation noise from one generator
    over all environments while the graph's episodes (the LLM rows) draw it per
    (seed, environment, round), so the comparison was not paired. The same policy must now
    give the same per-round regret both ways."""
    from graph.commands.bench_numeric import run_numeric
    from graph.commands.episode_sources import batch_episodes
    from graph.graph import graph

    env = make_envs("quadratic", 4, seed=5, noise=noise)
    numeric = run_numeric("local-model", env, 4, 2, 5)
    ctx = {"reasoner": "local-model", "optimizer": "local-model", "max_rounds": 4, "window": 2, "seed": 5}
    for i, (_, inp) in enumerate(batch_episodes(env)):
        rounds = graph.invoke(inp, context=ctx)["rounds"]
        np.testing.assert_allclose([r["metrics"]["regret"] for r in rounds], numeric["regret"][:, i],
                                   rtol=1e-6, atol=1e-9)


def test_first_round_parameters_change_round_one_only():
    """``run_numeric(first_round=...)`` measures a separate Reasoner-step setting (the
    planning-slope benchmark's ``a/b`` shifts): round 1 is the one run with z = 0, and
    the rounds after it match a z = 0 run only through the history round 1 left them."""
    from graph.commands.bench_numeric import run_numeric

    env = make_envs("quadratic", 20, seed=3, noise=0.1)
    plain = run_numeric("local-model", env, 3, 3, 3, z=0.0)["regret"]
    steep = run_numeric("local-model", env, 3, 3, 3, z=1.0)["regret"]
    mixed = run_numeric("local-model", env, 3, 3, 3, z=1.0, first_round={"z": 0.0})["regret"]
    np.testing.assert_array_equal(mixed[0], plain[0])
    assert not np.array_equal(mixed[0], steep[0])
    assert not np.array_equal(mixed[1], plain[1])  # round 2 plans on z = 1


def test_ci95_is_the_student_t_interval():
    """One home for 95% intervals: t(0.975, n-1), not the normal 1.96 (4-15% too narrow at n = 10-30)."""
    import numpy as np

    from graph.commands.summaries import ci95, ci95_half

    x = np.array([[1.0, 3.0]])  # n = 2: t(0.975, 1) = 12.706
    assert abs(ci95_half(x, axis=1)[0] - 12.7062 * np.sqrt(2) / np.sqrt(2)) < 1e-3
    (lo, hi), = ci95(x)
    assert abs((hi - lo) / 2 - ci95_half(x, axis=1)[0]) < 1e-12 and abs((lo + hi) / 2 - 2.0) < 1e-12
    assert ci95_half(np.ones((3, 1)), axis=1).tolist() == [0.0, 0.0, 0.0]
