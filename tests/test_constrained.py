"""Constrained decoding: even a random model always writes a parseable answer of length T."""

import pytest
import regex

from policies.base import DecisionRequest
from policies.constrained import answer_pattern
from policies.llm import LLMPolicy
from tools.task import Record, Task


def test_pattern_counts_numbers_and_signs():
    p = answer_pattern(3, signed=False)
    assert regex.fullmatch(p, "<answer>[1.00,0.50,1.50]</answer>")
    assert not regex.fullmatch(p, "<answer>[1.00,0.50]</answer>")
    assert not regex.fullmatch(p, "<answer>[1.00,-0.50,1.50]</answer>")
    assert regex.fullmatch(answer_pattern(3, signed=True), "<answer>[1.00,-0.50,1.50]</answer>")
    assert regex.fullmatch(p, "<answer>[1.0", partial=True)
    with pytest.raises(ValueError):
        answer_pattern(0, True)


@pytest.fixture(scope="module")
def tiny_chat():
    from policies.backends.local import LocalChatModel

    return LocalChatModel(base="tiny-random", max_new_tokens=60)


@pytest.mark.parametrize("role,T", [("reasoner", 1), ("reasoner", 4), ("optimizer", 6)])
def test_random_model_always_parses_when_constrained(tiny_chat, role, T):
    task = Task(budget=T, periods=T, history=[Record(allocation=[1.0] * T, mroi=[0.5] * T)])
    reqs = [DecisionRequest(role, task, task.history)] * 3
    on = LLMPolicy(role, tiny_chat)
    assert on.constrained  # the local backend supports it, so it is on by default
    for d in on.propose(reqs):
        assert d.error is None or d.error.startswith("negative"), d.error
        assert d.text.startswith("<answer>[") and d.text.endswith("</answer>")
    off = LLMPolicy(role, tiny_chat, constrained=False)
    assert all(d.error is not None for d in off.propose(reqs))  # a random model cannot write the format
