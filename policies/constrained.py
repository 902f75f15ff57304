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
SmolLM2's 49k), so the check costs about a millisecond per sequence per step.
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


class AnswerFormatProcessor:
    """A transformers logits processor enforcing :func:`answer_pattern` per sequence.

    ``prompt_len`` is the (left-padded) prompt length: everything after it is the
    completion so far. ``patterns`` holds one regex per row (rows may differ in T).
    """

    def __init__(self, tokenizer, patterns: list[str], prompt_len: int):
        self.tok = tokenizer
        self.patterns = [_compiled(p) for p in patterns]
        self.prompt_len = prompt_len
        self.cand_ids, self.cand_strs = _candidates(tokenizer)
        self.eos = tokenizer.eos_token_id

    def allowed(self, row: int, text: str) -> list[int]:
        """Token ids that keep ``text`` a prefix of row ``row``'s pattern."""
        pat = self.patterns[row]
        if pat.fullmatch(text):
            return [self.eos]
        return [tid for tid, s in zip(self.cand_ids, self.cand_strs) if pat.fullmatch(text + s, partial=True)]

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for b in range(input_ids.shape[0]):
            text = self.tok.decode(input_ids[b, self.prompt_len:], skip_special_tokens=True)
            ok = self.allowed(b, text)
            if not ok:  # cannot happen for a valid prefix; let the model end the sequence
                ok = [self.eos]
            mask[b, ok] = 0.0
        return scores + mask
