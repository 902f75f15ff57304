"""Asking again, sampling, when the decoder rejects an answer (``LLMPolicy(resample=n)``,
``context.resample``): the plan then comes from the model, and the rejected answers are
kept on the decision, the round and the episode log."""

from __future__ import annotations

import pytest

from policies.llm import RESAMPLE_TEMPERATURE, LLMPolicy
from policies.prompts import error_code, make_request
from tests.test_prompts import make_task

RESTATED = "<answer>[0.00,5.00,0.00,0.00,0.00,1.00]</answer>"  # an allocation written as a change
CHANGE = "<answer>[0.10,-0.10,0.00,0.00,0.00,0.00]</answer>"


class Scripted:
    """A backend whose answer depends on the sampling seed: ``good_from`` and later seeds
    answer with a change, greedy and earlier seeds restate an allocation."""

    def __init__(self, good_from: int | None):
        self.good_from = good_from
        self.calls: list[tuple[int, float | None, int | None]] = []

    def generate_texts(self, prompts, adapter=None, answer_format=None, max_new_tokens=None,
                       temperature=None, seed=None):
        self.calls.append((len(prompts), temperature, seed))
        good = self.good_from is not None and seed is not None and seed >= self.good_from
        return [CHANGE if good else RESTATED] * len(prompts)


def _delta_request():
    return make_request("optimizer", make_task())


def test_a_rejected_answer_is_asked_again_until_one_decodes():
    backend = Scripted(good_from=3)
    d = LLMPolicy("optimizer", backend, encoding="delta", resample=8).propose([_delta_request()])[0]
    assert d.error is None and d.text == CHANGE and d.meta["resample_seed"] == 3
    assert [(a["seed"], error_code(a["error"])) for a in d.meta["rejected_answers"]] == [
        (None, "not_a_change"), (1, "not_a_change"), (2, "not_a_change")]
    assert backend.calls == [(1, None, None), (1, RESAMPLE_TEMPERATURE, 1), (1, RESAMPLE_TEMPERATURE, 2),
                             (1, RESAMPLE_TEMPERATURE, 3)]


def test_only_rejected_answers_are_asked_again_and_never_more_than_resample_times():
    class Mixed(Scripted):
        def generate_texts(self, prompts, **kw):
            out = super().generate_texts(prompts, **kw)
            return [CHANGE, *out[1:]] if kw.get("seed") is None else out  # the first prompt is fine greedy

    backend = Mixed(good_from=None)
    first, second = LLMPolicy("optimizer", backend, encoding="delta", resample=4).propose(
        [_delta_request(), _delta_request()])
    assert first.error is None and "rejected_answers" not in first.meta
    assert error_code(second.error) == "not_a_change" and second.text == RESTATED  # the first answer stands
    assert [a["seed"] for a in second.meta["rejected_answers"]] == [1, 2, 3, 4]
    assert [n for n, _, _ in backend.calls] == [2, 1, 1, 1, 1]


def test_resample_zero_and_backends_without_sampling_ask_once():
    backend = Scripted(good_from=1)
    d = LLMPolicy("optimizer", backend, encoding="delta", resample=0).propose([_delta_request()])[0]
    assert error_code(d.error) == "not_a_change" and len(backend.calls) == 1
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    assert LLMPolicy("optimizer", FakeListChatModel(responses=[RESTATED]), resample=8).resample == 0
    with pytest.raises(ValueError, match="resample"):
        LLMPolicy("optimizer", backend, resample=-1)


def test_a_backend_failure_while_resampling_keeps_the_first_answer():
    class FailsWhenSampling(Scripted):
        def generate_texts(self, prompts, **kw):
            if kw.get("seed") is not None:
                raise ConnectionError("server down")
            return super().generate_texts(prompts, **kw)

    d = LLMPolicy("optimizer", FailsWhenSampling(None), encoding="delta", resample=3).propose([_delta_request()])[0]
    assert error_code(d.error) == "not_a_change" and d.text == RESTATED
    assert d.meta["rejected_answers"] == [{"text": "", "error": "backend: ConnectionError: server down", "seed": 1}]


def test_the_round_and_the_bench_rates_keep_the_rejected_answers(tmp_path):
    """Through the graph: the resampled round is the Optimizer's plan (no error, no
    fallback) and lists the rejected answers; the bench counts it as resampled."""
    import dataclasses

    from graph.commands.bench_llm import read_episodes
    from graph.commands.episode_sources import family_episodes
    from graph.commands.episodes import run_episodes
    from graph.context import Context
    from graph.policy_registry import register_policy, unregister_policy

    register_policy("scripted-llm", LLMPolicy("optimizer", Scripted(good_from=2), encoding="delta", resample=8))
    try:
        ctx = Context(reasoner="uniform", optimizer="scripted-llm", max_rounds=3)
        run_episodes(dataclasses.replace(ctx), family_episodes("quadratic", 2, periods=6), tmp_path / "ep",
                     concurrency=1)
    finally:
        unregister_policy("scripted-llm")
    _, stats = read_episodes(tmp_path / "ep" / "episodes.jsonl", 3, llm_roles=(False, True))
    assert stats["resample_rate"] == 1.0 and stats["parse_error_rate"] == 0.0 and stats["fallback_rate"] == 0.0
    import json

    rounds = [r for line in (tmp_path / "ep" / "episodes.jsonl").read_text().splitlines()
              for r in json.loads(line)["rounds"] if r["round"] > 1]
    assert all(r["source"] == "optimizer" and [a["seed"] for a in r["rejected_answers"]] == [None, 1]
               for r in rounds)
