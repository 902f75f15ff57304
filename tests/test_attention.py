"""``sdpa_gqa`` (policies.attention) computes what transformers' ``sdpa`` computes."""

from __future__ import annotations

import torch

from policies.attention import NAME, use_gqa_attention
from policies.models import load_base, tiny_random_model
from training.common import left_pad


def _padded_batch(tok):
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(5, 400, (n,), generator=g).tolist() for n in (12, 5, 9)]
    return left_pad(rows, tok.pad_token_id)


def test_load_base_switches_grouped_models_to_sdpa_gqa():
    model, _ = load_base("tiny-random", cache=False)
    assert model.config._attn_implementation == NAME


def test_logits_and_greedy_tokens_match_sdpa():
    ref, tok = tiny_random_model(seed=2)
    gqa, _ = tiny_random_model(seed=2)
    assert ref.config._attn_implementation == "sdpa"
    use_gqa_attention(gqa)
    assert gqa.config._attn_implementation == NAME
    ids, mask = _padded_batch(tok)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask).logits
        b = gqa(input_ids=ids, attention_mask=mask).logits
        real = mask.bool()
        assert torch.allclose(a[real], b[real], atol=1e-5), (a - b)[real].abs().max()
        kw = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        assert torch.equal(ref.generate(input_ids=ids, **kw), gqa.generate(input_ids=ids, **kw))


def test_models_without_grouped_heads_are_left_alone():
    model, _ = tiny_random_model(seed=0)
    model.config.num_key_value_heads = model.config.num_attention_heads
    use_gqa_attention(model)
    assert model.config._attn_implementation == "sdpa"
