"""Constrained decoding of the answer format (structured output for the local backend).

A small model trained for a few minutes on CPU learns *which* numbers to write long
before it reliably writes *exactly T* of them with both tags closed (after 50 SFT steps
the embedded model's Reasoner wrote 7 numbers for T=6). The format itself is not
something a model should have to guess: it is fixed by the prompt. This module masks
the logits at every step so the completion can only be a prefix of

    <answer>[N,N,...,N]</answer>      (exactly T numbers; N = d.dd, -d.dd when signed)

and ends (EOS) as soon as the closing tag is written. The model still chooses every
digit; only the punctuation and the count are enforced. ``delta`` answers are signed,
``absolute`` answers are not. This is the same idea as vLLM's / Outlines' guided
decoding, implemented as a transformers ``LogitsProcessor`` with the ``regex``
package's partial matching (a candidate token is allowed when the text so far plus the
token can still be completed to a full match).

Only tokens made of the format's characters are ever candidates (a few hundred of
SmolLM2's 49k). Checking all of them by regex cost 2.7 ms per sequence per step on a
2-core Xeon, about 10% of a batched decision's time, so the allowed set is memoised per
regex state: the pattern treats every digit alike (``[0-9]``), so a completion and the same
completion with each digit written as ``0`` allow the same next tokens, and an answer has
only a few dozen such states.
"""

from __future__ import annotations

from functools import lru_cache

import regex

ALLOWED_CHARS = set("<>/answer[]0123456789.,-")


def answer_pattern(periods: int, signed: bool) -> str:
    """The full-match regex of an answer with exactly ``periods`` numbers."""
    if periods < 1:
        raise ValueError(f"periods must be >= 1, got {periods}")
    num = r"-?[0-9]{1,2}\.[0-9]{2}" if signed else r"[0-9]{1,2}\.[0-9]{2}"
    rest = f"(?:,{num}){{{periods - 1}}}" if periods > 1 else ""
    return rf"<answer>\[{num}{rest}\]</answer>"


@lru_cache(maxsize=32)
def _compiled(pattern: str):
    return regex.compile(pattern)


_DIGITS_TO_ZERO = str.maketrans("123456789", "000000000")


@lru_cache(maxsize=64)
def _digit_blind(pattern: str) -> bool:
    """True when digits occur in ``pattern`` only as ``[0-9]`` classes and quantifier
    counts, so any digit of a text stands for any other (the memo's premise)."""
    import re

    return not any(c.isdigit() for c in re.sub(r"\[0-9\]|\{\d+(?:,\d*)?\}", "", pattern))


_STATE_MEMO: dict[tuple[str, str, int], tuple[int, ...]] = {}  # (pattern, state, candidates) -> ids
_STATE_MEMO_MAX = 200_000


def _allowed_for_state(pattern: str, state: str, candidates: tuple[tuple[int, str], ...], cand_key: int,
                       eos: int) -> tuple[int, ...]:
    key = (pattern, state, cand_key)
    hit = _STATE_MEMO.get(key)
    if hit is None:
        pat = _compiled(pattern)
        if pat.fullmatch(state):
            hit = (eos,)
        else:
            hit = tuple(tid for tid, s in candidates if pat.fullmatch(state + s, partial=True))
        if len(_STATE_MEMO) >= _STATE_MEMO_MAX:
            _STATE_MEMO.clear()
        _STATE_MEMO[key] = hit
    return hit


def _candidates(tokenizer) -> tuple[list[int], list[str]]:
    """Token ids (and their strings) made only of the answer format's characters."""
    cache = getattr(tokenizer, "_dara_answer_candidates", None)
    if cache is not None:
        return cache
    ids, strs = [], []
    for tid in range(len(tokenizer)):
        s = tokenizer.decode([tid], skip_special_tokens=True)
        if s and all(c in ALLOWED_CHARS for c in s):
            ids.append(tid)
            strs.append(s)
    cache = (ids, strs)
    try:
        tokenizer._dara_answer_candidates = cache
    except Exception:  # pragma: no cover - exotic tokenizer objects
        pass
    return cache


def _candidate_pairs(tokenizer, eos: int) -> tuple[tuple[tuple[int, str], ...], int]:
    """(id, string) candidate pairs and their memo key, built once per tokenizer (a
    processor is made per generate call)."""
    cache = getattr(tokenizer, "_dara_candidate_pairs", None)
    if cache is None:
        ids, strs = _candidates(tokenizer)
        pairs = tuple(zip(ids, strs))
        cache = (pairs, hash((pairs, eos)))
        try:
            tokenizer._dara_candidate_pairs = cache
        except Exception:  # pragma: no cover - exotic tokenizer objects
            pass
    return cache


class AnswerFormatProcessor:
    """A transformers logits processor enforcing :func:`answer_pattern` per sequence.

    ``prompt_len`` is the (left-padded) prompt length: everything after it is the
    completion so far. ``patterns`` holds one regex per row (rows may differ in T).
    """

    def __init__(self, tokenizer, patterns: list[str], prompt_len: int):
        self.tok = tokenizer
        self.patterns = list(patterns)
        self.blind = [_digit_blind(p) for p in self.patterns]
        self.prompt_len = prompt_len
        self.cand_ids, self.cand_strs = _candidates(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.candidates, self.cand_key = _candidate_pairs(tokenizer, self.eos)

    def allowed(self, row: int, text: str) -> list[int]:
        """Token ids that keep ``text`` a prefix of row ``row``'s pattern."""
        state = text.translate(_DIGITS_TO_ZERO) if self.blind[row] else text
        return list(_allowed_for_state(self.patterns[row], state, self.candidates, self.cand_key, self.eos))

    def __call__(self, input_ids, scores):
        import torch

        rows: list[int] = []
        cols: list[int] = []
        for b in range(input_ids.shape[0]):
            text = self.tok.decode(input_ids[b, self.prompt_len:], skip_special_tokens=True)
            ok = self.allowed(b, text) or [self.eos]  # [] cannot happen for a valid prefix
            rows.extend([b] * len(ok))
            cols.extend(ok)
        # one full-size write (the -inf fill), then copy back the few allowed scores
        out = torch.full_like(scores, float("-inf"))
        r, c = torch.tensor(rows), torch.tensor(cols)
        out[r, c] = scores[r, c]
        return out
