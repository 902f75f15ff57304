"""Constrained decoding: even a random model always writes a parseable answer of length T."""

import pytest
import regex

from policies.base import DecisionRequest
from policies.constrained import answer_pattern
from policies.llm import LLMPolicy
from policies.prompts import DEFAULT_ENCODING, ParseError, error_code
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


@pytest.mark.parametrize("role,T,enc", [("reasoner", 1, None), ("reasoner", 4, None), ("optimizer", 6, None),
                                        ("optimizer", 3, "absolute"), ("reasoner", 5, "delta")])
def test_random_model_always_parses_when_constrained(tiny_chat, role, T, enc):
    task = Task(budget=T, periods=T, history=[Record(allocation=[1.0] * T, mroi=[0.5] * T)])
    reqs = [DecisionRequest(role, task, task.history)] * 3
    on = LLMPolicy(role, tiny_chat, encoding=enc)
    assert on.constrained  # the local backend supports it, so it is on by default
    signed = (enc or DEFAULT_ENCODING[role]) != "absolute"
    for d in on.propose(reqs):
        # unsigned numbers for absolute answers, cuts clipped to 0 for signed ones: every
        # constrained answer has the format and decodes, unless (signed only) its changes
        # would spend far from the budget -- a check on what it says, not on its format
        assert regex.fullmatch(answer_pattern(T, signed), d.text), d.text
        if d.error is not None and signed and error_code(d.error) == ParseError.NOT_A_CHANGE.value:
            continue
        assert d.error is None and len(d.allocation) == T, d.error
        assert all(a >= 0 for a in d.allocation)
        assert d.text.startswith("<answer>[") and d.text.endswith("</answer>")
    off = LLMPolicy(role, tiny_chat, constrained=False)
    assert all(d.error is not None for d in off.propose(reqs))  # a random model cannot write the format


def test_memoised_allowed_sets_match_the_regex_on_every_prefix(tiny_chat):
    """The processor memoises allowed tokens per regex state (digits written as 0); on
    every prefix of real answers the memo gives what checking each candidate gives."""
    import random

    from policies.constrained import AnswerFormatProcessor, _digit_blind

    tok = tiny_chat.tokenizer
    rng = random.Random(3)
    for T, signed in [(1, False), (4, True), (12, True)]:
        pattern = answer_pattern(T, signed)
        assert _digit_blind(pattern)
        pat = regex.compile(pattern)
        proc = AnswerFormatProcessor(tok, [pattern], prompt_len=0)
        for _ in range(5):
            nums = [f"{rng.uniform(-9.99 if signed else 0, 9.99):.2f}" for _ in range(T)]
            text = f"<answer>[{','.join(nums)}]</answer>"
            ids = tok(text, add_special_tokens=False)["input_ids"]
            for k in range(len(ids) + 1):
                prefix = tok.decode(ids[:k], skip_special_tokens=True)
                want = [proc.eos] if pat.fullmatch(prefix) else [
                    t for t, s in zip(proc.cand_ids, proc.cand_strs) if pat.fullmatch(prefix + s, partial=True)]
                assert proc.allowed(0, prefix) == want, (T, prefix)


def test_patterns_with_literal_digits_are_not_memoised_by_digit_class():
    from policies.constrained import _digit_blind

    assert not _digit_blind(r"<answer>1[0-9]</answer>")
    assert _digit_blind(r"-?[0-9]{1,2}\.[0-9]{2}")
