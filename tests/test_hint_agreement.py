"""``benchmarks/hint_agreement.py`` rebuilds each Optimizer prompt's hint as the graph does."""

import json

import numpy as np

from policies.observations import window_hint
from tools.envs import env_from_spec
from tools.task import Record

from conftest import load_benchmark


def _load():
    return load_benchmark("hint_agreement")


def test_answers_pair_with_the_hint_of_their_window(tmp_path, capsys):
    spec = {"family": "quadratic", "n": 2, "periods": 4, "budget": 4.0, "seed": 7, "noise": 0.0,
            "history": 3, "kw": {}, "index": 1}
    task = env_from_spec(spec, 1).task(0)
    r1 = {"round": 1, "source": "reasoner", "allocation": [1.2, 0.8, 1.0, 1.0], "mroi": [0.5, 0.7, 0.6, 0.6],
          "text": "<answer>[0.20,-0.20,0.00,0.00]</answer>"}
    win = (list(task.history) + [Record(allocation=r1["allocation"], mroi=r1["mroi"])])[-3:]
    hint = np.round(window_hint(win, task, win[-1].allocation), 2)
    off = hint.copy()
    off[0] += 0.7
    fmt = lambda v: "<answer>[" + ",".join(f"{x:.2f}" for x in v) + "]</answer>"  # noqa: E731
    episodes = [{"id": f"e{i}", "status": "ok", "env": spec, "rounds": [
        r1, {"round": 2, "source": "optimizer", "allocation": r1["allocation"], "mroi": None, "text": fmt(a)}]}
        for i, a in enumerate([hint, off])]
    path = tmp_path / "episodes.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in episodes) + "\n")
    rows = _load().answers_and_hints(path, window=3)
    assert [(eid, k) for eid, k, _, _ in rows] == [("e0", 2), ("e1", 2)]
    np.testing.assert_allclose(rows[0][3], rows[0][2], atol=1e-9)
    assert abs(np.abs(rows[1][3] - rows[1][2]).max() - 0.7) < 0.006
    assert _load().main([str(path)]) == 0
    assert "equal to the rounded hint: 0.50" in capsys.readouterr().out


def test_recorded_requests_keep_their_own_window_when_collected(tmp_path):
    """The Reasoner's request is the history alone, also when every request is collected
    first (it once aliased the records pool, which later rounds extend)."""
    spec = {"family": "quadratic", "n": 2, "periods": 4, "budget": 4.0, "seed": 7, "noise": 0.0,
            "history": 3, "kw": {}, "index": 1}
    rounds = [{"round": k, "source": "reasoner" if k == 1 else "optimizer", "allocation": [1.0] * 4,
               "mroi": [0.5] * 4, "text": ""} for k in (1, 2, 3)]
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps({"id": "e0", "status": "ok", "env": spec, "rounds": rounds}) + "\n")
    requests = [req for _, _, req in _load().recorded_requests(path, 3)]
    assert [len(r.window) for r in requests] == [3, 3, 3]
    assert requests[0].window == list(env_from_spec(spec, 1).task(0).history)
