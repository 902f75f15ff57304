"""Log-probs of a GRPO step's completions with ONE prefill per distinct prompt.

A GRPO step scores G completions of each of its prompts. The prompt (~420 tokens for a
``delta-hint`` window) is several times longer than a completion (~60), so the plain pass
(:func:`training.common.token_logprobs` over ``prompt + completion`` rows) spends most of
its time running the same prompt G times. Here each distinct prompt runs once, its KV
cache is repeated for the G rows of its group (``Cache.batch_repeat_interleave``) and only
the last prompt token and the completion tokens run on top of it. Sampling (hf rollouts)
uses the same :func:`shared_prefill`: ``generate`` continues from the repeated cache.

The result is the same quantity as the plain pass (equal up to float rounding: the
attention sums the same terms in another grouping). Autograd flows through the repeat
into the prompt positions, so the policy-gradient pass gets the same gradients; the
tests (``tests/test_training_shared_prompts.py``) check log-probs and LoRA gradients
against the plain pass on a tiny model.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from policies.backends.prefix_prefill import upcast_cache
from training.common import autocast, with_format_mass


def distinct_prompts(ids: torch.Tensor, mask: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first row of each group of ``group`` consecutive rows (``ids``/``mask`` are the
    step's left-padded prompts, prompt 0 x G, prompt 1 x G, ...). Raises if a group's rows
    differ: sharing one prefill would then score the wrong prompt."""
    B = ids.shape[0]
    if group < 1 or B % group:
        raise ValueError(f"shared prompts: {B} rows do not split into groups of {group}")
    u_ids, u_mask = ids[::group], mask[::group]
    same = (ids.view(B // group, group, -1) == u_ids[:, None]).all() and \
           (mask.view(B // group, group, -1) == u_mask[:, None]).all()
    if not bool(same):
        raise ValueError("shared prompts: the rows of a group are not one prompt repeated")
    return u_ids, u_mask


def shared_token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, comp: torch.Tensor,
                          cmask: torch.Tensor, group: int, bf16: bool = True, allowed=None):
    """Log-probs ``(B, K)`` of the completion tokens ``comp`` given their prompts.

    ``ids``/``mask`` ``(B, P)``: left-padded prompts, each repeated ``group`` times in a
    row; ``comp``/``cmask`` ``(B, K)``: the sampled completions and their real-token mask.
    On top of :func:`shared_prefill` (every prompt token but the last) run the last prompt
    token and the completion's first K - 1 tokens: their K logits predict ``comp``.
    Positions follow the attention mask exactly as in the plain pass, so left padding and
    padding after a stop string do not shift them. With ``allowed`` (the answer format's
    ``(index, valid)``, :func:`training.format_mass.allowed_index`) also returns the log
    of the mass the policy puts on the allowed tokens per position: ``(log-probs, log mass)``.
    """
    step_mask = torch.cat([mask[:, -1:], cmask[:, :-1].to(mask.dtype)], dim=1)  # last column is real
    pos = mask.sum(-1, keepdim=True) - 2 + step_mask.cumsum(-1)
    with autocast(bf16, ids.device):
        cache = shared_prefill(model, ids, mask, group)
        out = model(input_ids=torch.cat([ids[:, -1:], comp[:, :-1]], dim=1),
                    attention_mask=torch.cat([mask[:, :-1], step_mask], dim=1), position_ids=pos,
                    past_key_values=cache, use_cache=True)
    return with_format_mass(out.logits.float(), comp, allowed)


def shared_prefill(model, ids: torch.Tensor, mask: torch.Tensor, group: int):
    """KV cache of every row's prompt but its last token, computed once per distinct prompt
    and repeated for its ``group`` rows: ``model.generate(input_ids=ids, attention_mask=mask,
    past_key_values=<this>)`` then runs only each row's last prompt token and the new
    tokens. Positions follow the mask, as ``generate`` derives them."""
    u_ids, u_mask = distinct_prompts(ids, mask, group)
    head, head_mask = u_ids[:, :-1], u_mask[:, :-1]
    pos = (head_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=head, attention_mask=head_mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(group)
    return cache


def sampling_prefill(model, ids: torch.Tensor, mask: torch.Tensor, group: int, bf16: bool,
                     fp32_decode: bool = True):
    """``(cache, decode_context)`` for sampling a step's rows: run ``model.generate`` with
    ``past_key_values=cache`` inside ``decode_context``.

    The prompt runs under bf16 autocast when ``bf16``. On CPU with ``fp32_decode`` the KV
    cache is then upcast and the decode runs in fp32: under CPU autocast every decoded
    token re-casts every weight to bf16 and runs bf16 matrix-vector products, which made
    the decode the slowest part of a GRPO step (benchmarks/grpo_rollouts.py). Elsewhere
    the decode stays under autocast. ``cache`` is ``None`` (``generate`` prefills) when
    there is nothing to share and nothing to split."""
    split = bf16 and fp32_decode and ids.device.type == "cpu"
    if group <= 1 and not split:
        return None, autocast(bf16, ids.device)
    with autocast(bf16, ids.device):
        cache = shared_prefill(model, ids, mask, max(group, 1))
    if split:
        upcast_cache(cache)
        return cache, nullcontext()
    return cache, autocast(bf16, ids.device)
