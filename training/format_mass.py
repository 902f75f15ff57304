"""The answer format's probability mass under the policy, for constrained GRPO.

Rollouts sampled with the answer format enforced (``policies.constrained``) only ever
contain allowed tokens, and the GRPO loss scores the policy's own, unconstrained
log-probs of them. Nothing in that objective lowers the probability of the tokens the
mask hides, so with a reference that keeps moving (GRPO-A) mass can drift onto them: the
adapter then scores well under constrained decoding but no longer writes the format by
itself (docs/training.md, "Constrained sampling").

This module measures that mass at every sampled position and turns it into a loss:

- :func:`allowed_index` rebuilds, from the sampled tokens, the set of tokens the
  constraint allowed at each completion position (the same
  :class:`policies.constrained.AnswerFormatProcessor` rule that masked the sampler, so it
  works for hf and vLLM rollouts alike);
- :func:`log_allowed_mass` is ``log sum_{a allowed} p(a | prefix)`` per position from the
  policy's logits (0 when the policy puts all its mass on the format);
- the trainer logs its mean (``train/format_mass``, the share of the policy's mass on the
  allowed tokens) and, with ``format_mass_weight`` > 0, adds
  ``-weight * mean(log_allowed_mass)`` to the loss: the format stays the policy's own
  choice, not only the mask's.
"""

from __future__ import annotations

from typing import Sequence

import torch


def allowed_index(tok, comp: torch.Tensor, cmask: torch.Tensor,
                  formats: Sequence[tuple[int, bool]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index (B, K, A), valid (B, K, A))``: the token ids the answer-format constraint
    allowed at each of the ``K`` completion positions of each row (padded to the largest
    set ``A``; ``valid`` marks real entries; positions outside ``cmask`` get none)."""
    from policies.constrained import AnswerFormatProcessor, answer_pattern

    if len(formats) != comp.shape[0]:
        raise ValueError(f"allowed_index: {len(formats)} answer formats for {comp.shape[0]} completions")
    proc = AnswerFormatProcessor(tok, [answer_pattern(T, s) for T, s in formats], prompt_len=0)
    sets: list[list[list[int]]] = []
    seen: dict[tuple[tuple[int, bool], str], list[int]] = {}  # a group's rows share prefixes
    for b in range(comp.shape[0]):
        n = int(cmask[b].sum())
        ids = comp[b, :n].tolist()
        rows = []
        for k in range(n):
            key = (tuple(formats[b]), tok.decode(ids[:k], skip_special_tokens=True))
            if key not in seen:
                seen[key] = proc.allowed(b, key[1]) or [proc.eos]
            rows.append(seen[key])
        sets.append(rows)
    A = max((len(s) for rows in sets for s in rows), default=1)
    index = torch.zeros(comp.shape + (A,), dtype=torch.long)
    valid = torch.zeros(comp.shape + (A,), dtype=torch.bool)
    for b, rows in enumerate(sets):
        for k, s in enumerate(rows):
            index[b, k, :len(s)] = torch.tensor(s, dtype=torch.long)
            valid[b, k, :len(s)] = True
    return index.to(comp.device), valid.to(comp.device)


def log_allowed_mass(logits: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``log sum_{a allowed} softmax(logits)[a]`` per position, ``(B, K)``, from logits
    ``(B, K, V)`` and :func:`allowed_index`'s ``(B, K, A)``; 0 where nothing is allowed
    (positions outside the completion)."""
    sel = logits.gather(-1, index).masked_fill(~valid, float("-inf"))
    out = torch.logsumexp(sel, dim=-1) - torch.logsumexp(logits, dim=-1)
    return torch.where(valid.any(-1), out, torch.zeros_like(out))
