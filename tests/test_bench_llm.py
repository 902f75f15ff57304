"""LLM methods of `dara bench`: method table, the context of each method, parse-error accounting."""

import json

import numpy as np
import pytest

import graph.commands.bench_llm as bl
from graph.commands.bench_llm import METHODS, method_context, read_episodes, run_llm_method
from graph.context import Context
from tools.envs import make_envs

CTX = Context(max_rounds=4, window=3, seed=7, backend="local", base="embedded")


def test_method_context_maps_roles_and_adapters(tmp_path, monkeypatch):
    import policies

    monkeypatch.setattr(policies, "shipped_adapter", lambda role: tmp_path)
    monkeypatch.setattr(bl, "_check_adapter", lambda *a: None)
    a = method_context("optimizer-only", CTX)
    assert (a.reasoner, a.optimizer, a.tolerance) == ("uniform", "llm", 0.0)
    assert (a.max_rounds, a.window, a.seed, a.base) == (4, 3, 7, "embedded")
    b = method_context("base", CTX)
    assert b.reasoner_adapter == "none" and b.optimizer_adapter == "none"
    assert method_context("reasoner-only", CTX).optimizer == "hold"
    assert method_context("dara-grpo-a", CTX).optimizer_adapter.endswith("gen-grpo-optimizer-hint/adapter")
    assert method_context("dara-sft", CTX).optimizer_adapter.endswith("gen-sft-optimizer-hint/adapter")
    # overrides replace adapters, never the base model of `base`
    over = Context(reasoner_adapter="R", optimizer_adapter="O", reasoner_encoding="absolute",
                   optimizer_encoding="delta-slope", tolerance=0.5)
    o = method_context("dara", over)
    assert (o.reasoner_adapter, o.optimizer_adapter) == ("R", "O")
    assert (o.reasoner_encoding, o.optimizer_encoding, o.tolerance) == ("absolute", "delta-slope", 0.0)
    b2 = method_context("base", over)
    assert b2.reasoner_adapter == "none" and b2.optimizer_adapter == "none"
    with pytest.raises(ValueError, match="unknown LLM method"):
        method_context("gpt", CTX)
    assert set(METHODS) == {"dara", "reasoner-only", "optimizer-only", "base", "dara-grpo-a", "dara-sft"}


def test_llm_method_uses_the_context_seed_for_feedback_noise(tmp_path, monkeypatch):
    """Regression: the seed given for the LLM rows was dropped and the environments' seed
    used instead; the episodes must run with the context's seed (the noise seed)."""
    import graph.commands.episodes as episodes

    seen = {}

    def fake_run_episodes(context, eps, out, concurrency, resume=False, **kw):
        seen.update(context=context, episodes=eps, concurrency=concurrency)
        raise RuntimeError("stop here")

    monkeypatch.setattr(episodes, "run_episodes", fake_run_episodes)
    monkeypatch.setattr(bl, "_check_adapter", lambda *a: None)
    env = make_envs("quadratic", 3, seed=7, noise=0.1)
    with pytest.raises(RuntimeError, match="stop here"):
        run_llm_method("optimizer-only", env, Context(seed=99, max_rounds=2), concurrency=5, out_dir=tmp_path)
    assert seen["context"].seed == 99 and seen["concurrency"] == 5
    assert [eid for eid, _ in seen["episodes"]] == [f"quadratic-s7-{i:05d}" for i in range(3)]
    assert all(inp["env"]["seed"] == 7 and inp["env"]["noise"] == 0.1 for _, inp in seen["episodes"])


def _episode(i, errors, carried=0):
    rounds = [{"round": k + 1, "error": e, "source": "fallback" if e else "optimizer"} for k, e in enumerate(errors)]
    rounds += [{"round": len(errors) + c + 1, "error": None, "source": "carried"} for c in range(carried)]
    n = len(rounds)
    return {"id": f"e{i}", "rounds": rounds, "regret": [0.1 * i] * n, "mroi_var": [0.0] * n, "dispersion": [1.0] * n}


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


def test_read_episodes_does_not_count_carried_rounds(tmp_path):
    """Regression: records mark carried rounds with ``source``, not a ``carried`` key, so
    rounds repeated after an early stop were counted as (error-free) LLM decisions."""
    p = tmp_path / "episodes.jsonl"
    p.write_text(json.dumps(_episode(1, [None, "missing_tags: x"], carried=2)) + "\n")
    _, stats = read_episodes(p, 4, (True, True))
    assert stats["llm_decisions"] == 2
    assert stats["parse_error_rate"] == pytest.approx(1 / 2)
    assert stats["parse_error_rate_by_round"] == [0.0, 1.0, None, None]


def test_read_episodes_refuses_failed_episodes(tmp_path):
    p = tmp_path / "episodes.jsonl"
    p.write_text(json.dumps({"id": "x", "status": "error", "error": "boom", "rounds": []}) + "\n")
    with pytest.raises(RuntimeError, match="boom"):
        read_episodes(p, 3)


def test_missing_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        method_context("optimizer-only", Context(optimizer_adapter=str(tmp_path)))


def test_fallback_rate_counts_every_plan_not_from_the_model(tmp_path):
    """``fallback_rate`` next to ``parse_error_rate``: parse errors and plans
    replaced by another policy (any source but the role's own) both count."""
    ep = _episode(1, [None, "missing_tags: x", None])
    ep["rounds"][2]["source"] = "self-check:local-model"  # replaced by the self-check: no parse error
    p = tmp_path / "episodes.jsonl"
    p.write_text(json.dumps(ep) + "\n")
    _, stats = read_episodes(p, 3, (True, True))
    assert stats["parse_error_rate"] == pytest.approx(1 / 3)
    assert stats["fallback_rate"] == pytest.approx(2 / 3)
    assert stats["fallback_rate_by_round"] == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("round_, counted", [
    ({"source": "reasoner", "no_plan": False}, False),
    ({"source": "optimizer", "no_plan": False}, False),
    ({"source": "carried", "no_plan": False}, False),
    ({"source": "fallback", "no_plan": True}, True),  # unusable answer, current plan held
    ({"source": "fallback:local-model", "no_plan": False}, True),  # unusable answer, numeric plan
    ({"source": "self-check:gradient", "no_plan": False}, True),  # flagged plan replaced
])
def test_fallback_counting_knows_every_source_the_graph_writes(round_, counted):
    from graph.commands.summaries import fallback_counts, is_fallback

    assert is_fallback(round_) is counted
    carried = {"source": "carried", "no_plan": False}
    assert fallback_counts([{"rounds": [round_, carried]}]) == (int(counted), 0, 0 if round_ == carried else 1)


def test_a_resampled_decision_is_the_policys_not_a_fallback():
    from graph.commands.summaries import fallback_counts, is_fallback, is_resampled

    resampled = {"source": "optimizer", "error": None, "rejected_answers": [{"text": "x", "error": "e", "seed": None}]}
    never = {"source": "fallback", "no_plan": True, "error": "e", "rejected_answers": [{"text": "y", "error": "e", "seed": 1}]}
    assert is_resampled(resampled) and not is_fallback(resampled)
    assert not is_resampled(never) and is_fallback(never)
    assert fallback_counts([{"rounds": [resampled, never]}]) == (1, 1, 2)
