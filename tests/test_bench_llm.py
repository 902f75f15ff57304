"""LLM methods of `dara bench`: method table, `dara run` arguments, parse-error accounting."""

import json

import numpy as np
import pytest

from graph.bench_llm import METHODS, method_args, read_episodes
from tools.envs import make_envs


def test_method_args_map_roles_and_adapters(tmp_path, monkeypatch):
    import graph.bench_llm as bl
    import policies

    env = make_envs("quadratic", 5, seed=7)
    monkeypatch.setattr(policies, "shipped_adapter", lambda role: tmp_path)
    monkeypatch.setattr(bl, "_check_adapter", lambda *a: None)
    a = method_args("optimizer-only", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path))
    assert a[a.index("--reasoner") + 1] == "uniform" and a[a.index("--optimizer") + 1] == "llm"
    assert a[a.index("--episodes") + 1] == "5" and a[a.index("--tolerance") + 1] == "0"
    b = method_args("base", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path))
    assert b[b.index("--reasoner-adapter") + 1] == "none" and b[b.index("--optimizer-adapter") + 1] == "none"
    r = method_args("reasoner-only", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path))
    assert r[r.index("--optimizer") + 1] == "hold"
    f = method_args("dara-fixed-ref", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path))
    assert f[f.index("--optimizer-adapter") + 1].endswith("optimizer-fixed-ref")
    # overrides replace adapters, never the base model of `base`
    o = method_args("dara", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path), reasoner_adapter="R",
                    optimizer_adapter="O", reasoner_encoding="absolute", optimizer_encoding="delta-slope")
    assert o[o.index("--reasoner-adapter") + 1] == "R" and o[o.index("--optimizer-adapter") + 1] == "O"
    assert o[o.index("--optimizer-encoding") + 1] == "delta-slope"
    assert o[o.index("--reasoner-encoding") + 1] == "absolute"
    b2 = method_args("base", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path), reasoner_adapter="R",
                     optimizer_adapter="O")
    assert b2[b2.index("--reasoner-adapter") + 1] == "none" and b2[b2.index("--optimizer-adapter") + 1] == "none"
    with pytest.raises(ValueError, match="unknown LLM method"):
        method_args("gpt", env, 4, 3, 7, "local", "embedded", 8, str(tmp_path))
    assert set(METHODS) == {"dara", "reasoner-only", "optimizer-only", "base", "dara-fixed-ref"}


def _episode(i, errors):
    rounds = [{"round": k + 1, "error": e, "source": "fallback" if e else "optimizer"} for k, e in enumerate(errors)]
    return {"id": f"e{i}", "rounds": rounds, "regret": [0.1 * i] * 3, "mroi_var": [0.0] * 3, "dispersion": [1.0] * 3}


def test_read_episodes_counts_only_llm_decisions(tmp_path):
    p = tmp_path / "episodes.jsonl"
    p.write_text("\n".join(json.dumps(e) for e in [
        _episode(1, [None, "missing_tags: x", None]),
        _episode(2, ["wrong_length: y", None, None]),
    ]) + "\n")
    per_round, stats = read_episodes(p, 3, (True, True))
    assert per_round["regret"].shape == (3, 2)
    np.testing.assert_allclose(per_round["regret"][:, 1], 0.2)
    assert stats["parse_error_rate"] == pytest.approx(2 / 6)
    assert stats["parse_error_rate_by_round"] == [0.5, 0.5, 0.0]
    _, stats = read_episodes(p, 3, (False, True))  # uniform Reasoner: round 1 is not an LLM decision
    assert stats["parse_error_rate_by_round"][0] is None and stats["llm_decisions"] == 4


def test_read_episodes_refuses_failed_episodes(tmp_path):
    p = tmp_path / "episodes.jsonl"
    p.write_text(json.dumps({"id": "x", "status": "error", "error": "boom", "rounds": []}) + "\n")
    with pytest.raises(RuntimeError, match="boom"):
        read_episodes(p, 3)


def test_missing_adapter_is_a_clear_error(tmp_path):
    env = make_envs("quadratic", 2, seed=7)
    with pytest.raises(ValueError, match="adapter_config.json"):
        method_args("optimizer-only", env, 2, 3, 7, "local", "embedded", 2, str(tmp_path), optimizer_adapter=str(tmp_path))
