"""Batched generation that prefills the batch's common prompt prefix once.

Every DARA prompt of one role and encoding starts with the same chat-template header and
system prompt (about a third of a T = 6 Optimizer prompt). Plain batched ``generate``
left-pads the rows and runs that prefix once per row. Here the longest common token
prefix of the batch runs once (batch 1), its KV cache is repeated for the rows
(``Cache.batch_repeat_interleave``), and ``generate`` continues from it with the rows laid
out as ``prefix | padding | suffix``: the attention mask hides the padding and the
position ids (which ``generate`` derives from the mask) are the ones the unshared prompt
would have, so each row is the same computation as before (float rounding aside; the
tests compare greedy tokens).

:func:`left_pad` is the project's one left-padding helper (the trainers use it too).
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from typing import Any, Sequence

import torch

MIN_PREFIX = 16  # below this the extra forward call costs more than it saves


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad to one length: ``(input_ids, attention_mask)``, on ``device`` (built on
    CPU row by row, then moved in one copy)."""
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, L - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, L - len(s):] = 1
    return ids.to(device), mask.to(device)


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix every row shares, leaving each row at least one
    token of its own (the first generated token is predicted from the row's last token)."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def prefix_layout(seqs: Sequence[Sequence[int]], n: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with rows laid out ``prefix | padding | suffix``:
    the shared ``n`` tokens first, then each row's own tokens right-aligned."""
    sfx_ids, sfx_mask = left_pad([list(s[n:]) for s in seqs], pad_id)
    prefix = torch.tensor([list(seqs[0][:n])] * len(seqs), dtype=torch.long)
    return torch.cat([prefix, sfx_ids], 1), torch.cat([torch.ones_like(prefix), sfx_mask], 1)


def generate(model, seqs: Sequence[Sequence[int]], pad_id: int, share_prefix: bool = True,
             prefill_dtype: torch.dtype | None = None, **gen_kw: Any) -> tuple[torch.Tensor, int]:
    """``model.generate`` over token lists ``seqs``; returns ``(sequences, prompt_width)``
    (new tokens start at column ``prompt_width``). With ``share_prefix`` and a common
    prefix of at least :data:`MIN_PREFIX` tokens in a batch of several rows, the prefix
    is prefilled once (module doc); otherwise the rows are plainly left-padded.

    ``prefill_dtype`` (``torch.bfloat16``) runs every prompt token but the last under CPU
    autocast to that dtype (the prompt is most of the work, and bf16 matmuls are about
    twice as fast on CPUs with AVX512-BF16), upcasts the KV cache and decodes in fp32
    (bf16 autocast slows token-by-token decoding there). Greedy answers can then differ
    from fp32 at near-ties. ``torch.float32`` takes the same path without autocast (tests)."""
    n = common_prefix_len(seqs) if share_prefix and len(seqs) > 1 else 0
    n = n if n >= MIN_PREFIX else 0
    ids, mask = prefix_layout(seqs, n, pad_id) if n else left_pad(seqs, pad_id)
    if not n and prefill_dtype is None:  # nothing to run before generate
        return model.generate(input_ids=ids, attention_mask=mask, **gen_kw), ids.shape[1]
    low = prefill_dtype not in (None, torch.float32)
    amp = torch.autocast("cpu", dtype=prefill_dtype) if low else nullcontext()
    with amp:
        cache = None
        if n:
            cache = model(input_ids=ids[:1, :n], attention_mask=mask[:1, :n], use_cache=True,
                          logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(len(seqs))
        if prefill_dtype is not None and ids.shape[1] - 1 > n:  # the rest of the prompt but its last token
            pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, n:-1]
            cache = model(input_ids=ids[:, n:-1], attention_mask=mask[:, :-1], position_ids=pos,
                          past_key_values=cache, use_cache=True, logits_to_keep=1).past_key_values
    if low:
        upcast_cache(cache)
    return model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, **gen_kw), ids.shape[1]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX, as torch's
    cpuinfo reports them): only there is the bf16 prefill faster; elsewhere it is emulated."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def upcast_cache(cache) -> None:
    """Make every key/value tensor of ``cache`` float32 in place (the decode runs in fp32)."""
    for layer in getattr(cache, "layers", []):
        if getattr(layer, "keys", None) is not None:
            layer.keys, layer.values = layer.keys.float(), layer.values.float()
            layer.dtype = torch.float32
