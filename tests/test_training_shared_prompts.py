"""One prefill per distinct prompt (training.shared_prompts) gives the plain pass's
log-probs and LoRA gradients, on the tiny random model with two adapters."""

from __future__ import annotations

import pytest
import torch

from training import common
from training.common import POLICY
from training.config import LoraConfig
from training.shared_prompts import distinct_prompts, shared_token_logprobs


def _batch(tok, group: int):
    """Three prompts of different lengths, each repeated ``group`` times, and completions
    of different lengths (one stops early: padding after its end is masked)."""
    g = torch.Generator().manual_seed(3)
    V = min(int(tok.vocab_size), 400)
    prompts = [torch.randint(5, V, (n,), generator=g).tolist() for n in (9, 14, 6)]
    rows = [p for p in prompts for _ in range(group)]
    ids, mask = common.left_pad(rows, tok.pad_token_id)
    K = 7
    comp = torch.randint(5, V, (len(rows), K), generator=g)
    cmask = torch.ones(len(rows), K)
    cmask[1, 4:] = 0  # stopped after 4 tokens
    cmask[5, 2:] = 0
    return ids, mask, comp, cmask


@pytest.fixture(scope="module")
def tiny():
    model, tok = common.load_model("tiny-random", LoraConfig(top_layers=0), adapters=(POLICY,), seed=1)
    # LoRA B starts at zero; give it weights so the adapter changes the outputs
    with torch.no_grad():
        for k, p in model.named_parameters():
            if "lora_B" in k:
                p.normal_(0, 0.05)
    model.eval()
    return model, tok


def _plain(model, ids, mask, comp, cmask):
    full_ids = torch.cat([ids, comp], 1)
    full_mask = torch.cat([mask, cmask.long()], 1)
    return common.token_logprobs(model, full_ids, full_mask, comp.shape[1], bf16=False)


def test_shared_prefill_matches_the_plain_pass(tiny):
    model, tok = tiny
    ids, mask, comp, cmask = _batch(tok, group=4)
    with torch.no_grad():
        plain = _plain(model, ids, mask, comp, cmask)
        shared = shared_token_logprobs(model, ids, mask, comp, cmask, group=4, bf16=False)
    real = cmask.bool()
    assert shared.shape == plain.shape
    assert torch.allclose(shared[real], plain[real], atol=1e-4), (shared - plain)[real].abs().max()


def test_shared_prefill_gives_the_same_lora_gradients(tiny):
    model, tok = tiny
    ids, mask, comp, cmask = _batch(tok, group=3)
    w = torch.randn(comp.shape, generator=torch.Generator().manual_seed(5))
    params = [p for p in model.parameters() if p.requires_grad]
    assert params

    def grads(fn):
        for p in params:
            p.grad = None
        ((fn() * w * cmask).sum()).backward()
        return torch.cat([p.grad.flatten() for p in params])

    g_plain = grads(lambda: _plain(model, ids, mask, comp, cmask))
    g_shared = grads(lambda: shared_token_logprobs(model, ids, mask, comp, cmask, group=3, bf16=False))
    assert g_plain.abs().max() > 0
    rel = (g_shared - g_plain).norm() / g_plain.norm()
    assert rel < 1e-4, rel


def test_single_token_completions(tiny):
    model, tok = tiny
    ids, mask, comp, cmask = _batch(tok, group=2)
    comp, cmask = comp[:, :1], cmask[:, :1]
    with torch.no_grad():
        plain = _plain(model, ids, mask, comp, cmask)
        shared = shared_token_logprobs(model, ids, mask, comp, cmask, group=2, bf16=False)
    assert torch.allclose(shared, plain, atol=1e-4)


def test_groups_that_are_not_one_prompt_are_refused(tiny):
    _, tok = tiny
    ids, mask, _, _ = _batch(tok, group=2)
    with pytest.raises(ValueError, match="not one prompt repeated"):
        distinct_prompts(ids, mask, group=3)
    with pytest.raises(ValueError, match="do not split"):
        distinct_prompts(ids, mask, group=4)


def test_sampling_prefill_decodes_in_fp32_on_cpu_under_bf16(tiny):
    """bf16 training on CPU: the prompt's cache comes back float32 and the decode runs
    outside autocast; without bf16 and without groups there is nothing to prefill."""
    from training.shared_prompts import sampling_prefill

    model, tok = tiny
    ids, mask, _, _ = _batch(tok, group=2)
    with torch.no_grad():
        cache, ctx = sampling_prefill(model, ids, mask, 2, bf16=True)
        assert cache.get_seq_length() == ids.shape[1] - 1
        assert all(layer.keys.dtype == torch.float32 for layer in cache.layers)
        with ctx:
            assert not torch.is_autocast_enabled("cpu")
        cache, ctx = sampling_prefill(model, ids, mask, 2, bf16=True, fp32_decode=False)
        with ctx:
            assert torch.is_autocast_enabled("cpu")
        cache, _ = sampling_prefill(model, ids, mask, 1, bf16=False)
        assert cache is None
