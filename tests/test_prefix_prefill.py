"""Prefilling the batch's common prefix once (policies.backends.prefix_prefill) gives the
tokens plain left-padded generation gives."""

from __future__ import annotations

import pytest
import torch

from policies.backends import prefix_prefill
from policies.backends.prefix_prefill import common_prefix_len, prefix_layout
from policies.models import tiny_random_model


def test_common_prefix_len_leaves_each_row_a_token():
    assert common_prefix_len([[1, 2, 3, 4], [1, 2, 3, 5, 6]]) == 3
    assert common_prefix_len([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter row keeps its last token
    assert common_prefix_len([[7, 2], [1, 2]]) == 0
    assert common_prefix_len([]) == 0


def test_prefix_layout_puts_padding_between_prefix_and_suffix():
    ids, mask = prefix_layout([[1, 2, 3, 4], [1, 2, 9]], 2, pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 4], [1, 2, 0, 9]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 1]]


@pytest.mark.parametrize("stop", [False, True])
def test_shared_prefix_generates_the_plain_tokens(stop):
    model, tok = tiny_random_model(seed=4)
    g = torch.Generator().manual_seed(1)
    head = torch.randint(5, 400, (40,), generator=g).tolist()
    seqs = [head + torch.randint(5, 400, (n,), generator=g).tolist() for n in (3, 11, 7)]
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    if stop:
        kw["eos_token_id"] = tok.eos_token_id
    with torch.inference_mode():
        plain, w0 = prefix_prefill.generate(model, seqs, tok.pad_token_id, share_prefix=False, **kw)
        shared, w1 = prefix_prefill.generate(model, seqs, tok.pad_token_id, share_prefix=True, **kw)
    assert w0 == w1 == max(len(s) for s in seqs)
    assert torch.equal(plain[:, w0:], shared[:, w1:])
    assert len({tuple(r) for r in plain[:, w0:].tolist()}) > 1  # rows differ: the test can tell them apart


@pytest.mark.parametrize("share", [False, True])
def test_separate_prompt_prefill_generates_the_plain_tokens(share):
    """The bf16-prefill path (the prompt but its last token run before ``generate``), taken
    in fp32: positions, mask and cache hand-over must give the plain tokens."""
    model, tok = tiny_random_model(seed=5)
    g = torch.Generator().manual_seed(2)
    head = torch.randint(5, 400, (30,), generator=g).tolist()
    seqs = [head + torch.randint(5, 400, (n,), generator=g).tolist() for n in (2, 9, 5)]
    kw = dict(max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
    with torch.inference_mode():
        plain, w0 = prefix_prefill.generate(model, seqs, tok.pad_token_id, share_prefix=False, **kw)
        sep, w1 = prefix_prefill.generate(model, seqs, tok.pad_token_id, share_prefix=share,
                                          prefill_dtype=torch.float32, **kw)
    assert w0 == w1
    assert torch.equal(plain[:, w0:], sep[:, w1:])
    assert len({tuple(r) for r in plain[:, w0:].tolist()}) > 1


def test_bf16_prefill_decodes_over_a_float32_cache():
    model, tok = tiny_random_model(seed=5)
    seqs = [list(range(10, 40)), list(range(10, 35)) + [50, 51]]
    with torch.inference_mode():
        out, w = prefix_prefill.generate(model, seqs, tok.pad_token_id, prefill_dtype=torch.bfloat16,
                                         max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (2, w + 4) and out.dtype == torch.long
    cache = model(input_ids=torch.tensor([seqs[0]]), use_cache=True).past_key_values
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache = model(input_ids=torch.tensor([[1, 2]]), past_key_values=cache, use_cache=True).past_key_values
    prefix_prefill.upcast_cache(cache)
    assert all(layer.keys.dtype == layer.values.dtype == torch.float32 for layer in cache.layers)
