"""GRPO-A maths against naive per-token loops, and the trainer on the tiny random model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from training import common, grpo
from training.config import GRPOConfig, RolloutConfig


# ---------------------------------------------------------------------------------------
# maths vs naive loops
# ---------------------------------------------------------------------------------------
def test_group_advantages_match_loop():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 5, generator=g)
    r[2] = 1.5  # a constant group -> zero advantages
    got = grpo.group_advantages(r, eps=1e-4)
    for p in range(3):
        xs = r[p].tolist()
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
        for i, x in enumerate(xs):
            assert got[p, i].item() == pytest.approx((x - m) / (sd + 1e-4), rel=1e-5, abs=1e-6)
    assert torch.all(got[2] == 0)


def test_k3_kl_matches_loop_and_is_zero_when_equal():
    g = torch.Generator().manual_seed(1)
    a, b = -torch.rand(4, 6, generator=g) * 3, -torch.rand(4, 6, generator=g) * 3
    got = grpo.k3_kl(a, b)
    for i in range(4):
        for j in range(6):
            d = b[i, j].item() - a[i, j].item()
            assert got[i, j].item() == pytest.approx(math.exp(d) - d - 1, rel=1e-5, abs=1e-7)
    assert torch.all(got >= 0)
    assert torch.all(grpo.k3_kl(a, a.clone()) == 0)


def _naive_loss(logp, old, ref, adv, mask, beta, el, eh, agg):
    B, K = len(logp), len(logp[0])
    per_seq, tot, n, clipped = [], 0.0, 0, 0
    kls = []
    for i in range(B):
        s, c = 0.0, 0
        for t in range(K):
            if mask[i][t] == 0:
                continue
            ratio = math.exp(logp[i][t] - old[i][t])
            u = ratio * adv[i]
            cl = min(max(ratio, 1 - el), 1 + eh) * adv[i]
            d = ref[i][t] - logp[i][t]
            kl = math.exp(d) - d - 1
            kls.append(kl)
            lt = -min(u, cl) + beta * kl
            clipped += int(cl < u)
            s += lt
            c += 1
            tot += lt
            n += 1
        per_seq.append(s / max(c, 1))
    loss = tot / n if agg == "token" else sum(per_seq) / B
    return loss, sum(kls) / len(kls), clipped / n


@pytest.mark.parametrize("agg", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_naive_loop(agg, beta):
    g = torch.Generator().manual_seed(2)
    B, K = 6, 7
    logp = -torch.rand(B, K, generator=g) * 2
    old = logp + 0.3 * torch.randn(B, K, generator=g)  # ratios far from 1 -> clipping
    ref = logp + 0.2 * torch.randn(B, K, generator=g)
    adv = torch.randn(B, generator=g)
    mask = torch.ones(B, K)
    mask[0, 5:] = 0
    mask[3, 2:] = 0
    loss, stats = grpo.grpo_loss(logp, old, ref, adv, mask, beta, 0.1, 0.2, agg)
    n_loss, n_kl, n_clip = _naive_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(),
                                       mask.tolist(), beta, 0.1, 0.2, agg)
    assert loss.item() == pytest.approx(n_loss, rel=1e-5, abs=1e-6)
    assert stats["kl"] == pytest.approx(n_kl, rel=1e-5, abs=1e-7)
    assert stats["clip_frac"] == pytest.approx(n_clip)
    assert 0 < stats["clip_frac"] < 1


def test_gradient_at_ratio_one_is_policy_gradient():
    """mu = 1: old = logp.detach(), so d loss / d logp = -A / n_tokens (beta = 0)."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    adv = torch.tensor([1.0, -2.0])
    mask = torch.ones(2, 2)
    loss, _ = grpo.grpo_loss(logp, logp.detach(), None, adv, mask, 0.0, 0.2, 0.2)
    loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None].expand(2, 2) / 4)


def test_completion_mask():
    eos, pad = 2, 0
    ids = torch.tensor([[5, 6, 2, 2, 2], [5, 6, 7, 8, 9], [5, 0, 0, 0, 0], [2, 2, 2, 2, 2]])
    m = grpo.completion_mask(ids, eos, pad)
    assert m.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]
    m2 = grpo.completion_mask(ids, 2, 2)  # pad == eos (SmolLM2)
    assert m2[0].tolist() == [1, 1, 1, 0, 0]


# ---------------------------------------------------------------------------------------
# the trainer on tiny-random
# ---------------------------------------------------------------------------------------
def _cfg(tmp_path, **kw) -> GRPOConfig:
    base = dict(role="optimizer", base="tiny-random", out=str(tmp_path / "run"), steps=4, seed=0,
                prompts_per_step=2, group_size=3, max_new_tokens=6, lr=5e-2, beta=0.04,
                ref_sync_every=2, save_every=1, bf16=False,
                rollout=RolloutConfig(families=["quadratic"], env_pool=32, max_rounds=4))
    base.update(kw)
    return GRPOConfig(**base)




def _rows(path):
    return [json.loads(x) for x in open(path).read().splitlines()]


def test_step_moves_lora_not_base_and_kl_follows_refresh(tmp_path, fake_reward):
    cfg = _cfg(tmp_path)
    model, tok, opt, params = grpo.setup(cfg)
    base0 = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" not in k}
    pol0 = {k: v.detach().clone() for k, v in common.adapter_params(model, "policy").items()}
    ref0 = {k: v.detach().clone() for k, v in common.adapter_params(model, "ref").items()}
    assert params and all("lora_" in n and ".policy." in n
                          for n, p in model.named_parameters() if p.requires_grad)
    grpo.train(cfg, progress=False, model_bundle=(model, tok, opt, params))
    rows = _rows(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # base weights untouched, LoRA moved
    for k, v in model.named_parameters():
        if "lora_" not in k:
            assert torch.equal(v, base0[k]), k
    pol = common.adapter_params(model, "policy")
    assert any(not torch.equal(pol[k], pol0[k]) for k in pol0)
    # KL: 0 on step 1 (ref = initial policy) and on step 3 (ref refreshed at end of step 2)
    assert rows[0]["train/kl"] == 0.0 and rows[2]["train/kl"] == 0.0
    assert rows[1]["train/kl"] > 0 and rows[3]["train/kl"] > 0
    assert [r["ref_refreshed"] for r in rows] == [False, True, False, True]
    ref = common.adapter_params(model, "ref")
    assert all(torch.equal(ref[k], pol[k]) for k in pol)  # refreshed at the end of step 4
    assert any(not torch.equal(ref[k], ref0[k]) for k in ref0)
    for key in ("train/reward", "train/reward_std", "train/clip_frac", "train/completion_len",
                "train/parse_error_rate", "train/reward/env", "train/reward/format", "train/s_per_step"):
        assert key in rows[0] and np.isfinite(rows[0][key])
    assert all("train/env_gain" in r for r in rows)  # nan only when no answer parsed
    # the adapter is a plain PEFT directory
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_never_never_refreshes(tmp_path, fake_reward):
    cfg = _cfg(tmp_path, ref_sync_every=0, steps=3)
    model, tok, opt, params = grpo.setup(cfg)
    ref0 = {k: v.detach().clone() for k, v in common.adapter_params(model, "ref").items()}
    grpo.train(cfg, progress=False, model_bundle=(model, tok, opt, params))
    rows = _rows(tmp_path / "run" / "log.jsonl")
    assert not any(r["ref_refreshed"] for r in rows)
    ref = common.adapter_params(model, "ref")
    assert all(torch.equal(ref[k], ref0[k]) for k in ref0)
    assert rows[0]["train/kl"] == 0.0 and rows[2]["train/kl"] > 0


def test_ema_refresh_mixes(tmp_path, fake_reward):
    cfg = _cfg(tmp_path, ref_sync_every=1, ref_sync_alpha=0.5, steps=1)
    model, tok, opt, params = grpo.setup(cfg)
    ref0 = {k: v.detach().clone() for k, v in common.adapter_params(model, "ref").items()}
    grpo.train(cfg, progress=False, model_bundle=(model, tok, opt, params))
    pol, ref = common.adapter_params(model, "policy"), common.adapter_params(model, "ref")
    for k in ref0:
        assert torch.allclose(ref[k], 0.5 * pol[k] + 0.5 * ref0[k], atol=1e-7)


def test_resume_reproduces_next_step(tmp_path, fake_reward):
    straight = _cfg(tmp_path / "a", steps=3, mu=2)
    grpo.train(straight, progress=False)
    first = _cfg(tmp_path / "b", steps=2, mu=2)
    grpo.train(first, progress=False)
    resumed = _cfg(tmp_path / "b", steps=3, mu=2, resume=True)
    grpo.train(resumed, progress=False)
    ra, rb = _rows(tmp_path / "a" / "run" / "log.jsonl"), _rows(tmp_path / "b" / "run" / "log.jsonl")
    assert [r["step"] for r in rb] == [1, 2, 3]
    for key in ("train/reward", "train/kl", "train/loss", "train/clip_frac", "train/completion_len"):
        assert rb[2][key] == pytest.approx(ra[2][key], rel=1e-5, abs=1e-7), key
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "a" / "run" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "run" / "adapter" / "adapter_model.safetensors"))
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


def test_step_with_the_real_reward(tmp_path):
    """One step scored by ``training.rewards.score`` itself: constrained sampling makes
    even a random model's absolute answers parse, so every term is live and the format is
    full (its signed answers are changes that spend far from the budget: not_a_change)."""
    cfg = _cfg(tmp_path, steps=1, max_new_tokens=None, encoding="absolute")
    model, tok, opt, params = grpo.setup(cfg)
    src = grpo.PromptSource(cfg.rollout, cfg.role, seed=cfg.seed)
    row = grpo.train_step(model, tok, opt, params, src, cfg, 1)
    assert row["train/parse_error_rate"] == 0.0
    assert row["train/reward/format"] == pytest.approx(1.0)
    assert row["train/reward/env"] < 0 and np.isfinite(row["train/env_gain"])
    parts = sum(row[f"train/reward/{k}"] for k in ("env", "constraint", "bonus", "format"))
    assert row["train/reward"] == pytest.approx(parts)
    assert row["train/reward_std"] > 0  # distinct samples, distinct rewards: a learning signal


def test_adapter_loads_in_local_backend(tmp_path, fake_reward):
    cfg = _cfg(tmp_path, steps=1)
    grpo.train(cfg, progress=False)
    from policies.backends.local import LocalChatModel

    chat = LocalChatModel(base="tiny-random", adapters={"optimizer": str(tmp_path / "run" / "adapter")},
                          max_new_tokens=3, coalesce=False)
    out = chat.generate_texts([[{"role": "user", "content": "hi"}]], adapter="optimizer")
    assert len(out) == 1 and isinstance(out[0], str)


def test_row_seeded_sampling_does_not_depend_on_batch_composition(tmp_path):
    """Each row's completion depends on its own seed only: the rows sampled in one batch
    equal the same rows sampled in two halves (what data-parallel ranks do)."""
    from policies.prompts import encode

    cfg = _cfg(tmp_path, max_new_tokens=8)
    model, tok, _, _ = grpo.setup(cfg)
    src = grpo.PromptSource(cfg.rollout, cfg.role, seed=0)
    prompts = src.batch(2, 1).repeat(2)
    p_ids = common.prompt_ids(tok, [encode(r, cfg.resolved_encoding) for r in prompts.requests])
    seeds = grpo.row_seeds(0, 1, range(4))
    whole = grpo.sample(model, tok, p_ids, cfg, seeds)[4]
    halves = grpo.sample(model, tok, p_ids[:2], cfg, seeds[:2])[4] + grpo.sample(model, tok, p_ids[2:], cfg, seeds[2:])[4]
    assert whole == halves
    assert len(set(whole)) > 1  # the same prompt with two seeds gives two completions
    other = grpo.sample(model, tok, p_ids, cfg, grpo.row_seeds(0, 2, range(4)))[4]
    assert other != whole


def test_sampling_with_one_prefill_per_prompt_draws_the_same_completions(tmp_path):
    """hf rollouts with ``group``: each distinct prompt is prefilled once and its cache
    repeated for its rows; every row's tokens are those of the plain left-padded batch."""
    from policies.prompts import encode

    cfg = _cfg(tmp_path, max_new_tokens=10, bf16=False)
    model, tok, _, _ = grpo.setup(cfg)
    src = grpo.PromptSource(cfg.rollout, cfg.role, seed=0)
    prompts = src.batch(2, 3).repeat(3)  # 2 prompts x 3 rows each
    p_ids = common.prompt_ids(tok, [encode(r, cfg.resolved_encoding) for r in prompts.requests])
    p_ids = p_ids[:3] + [ids[7:] for ids in p_ids[3:]]  # a shorter second prompt: left padding is exercised
    seeds = grpo.row_seeds(0, 3, range(6))
    plain = grpo.sample(model, tok, p_ids, cfg, seeds)
    shared = grpo.sample(model, tok, p_ids, cfg, seeds, group=3)
    assert torch.equal(plain[2], shared[2]) and torch.equal(plain[3], shared[3])
    assert plain[4] == shared[4] and len(set(plain[4])) > 1


def test_row_seeded_sampler_draws_from_softmax():
    """Gumbel-max with temperature: empirical frequencies match softmax(logits / T)."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    s = grpo.RowSeededSampler([7], temperature=0.7, top_p=1.0)
    n = 20000
    counts = torch.zeros(4)
    for _ in range(n):
        counts[int(s(None, logits.clone()).argmax())] += 1
    want = torch.softmax(logits[0] / 0.7, -1)
    assert torch.allclose(counts / n, want, atol=0.015)
    top = grpo.RowSeededSampler([7], temperature=1.0, top_p=0.5)  # nucleus keeps only the top token
    assert all(int(top(None, logits.clone()).argmax()) == 0 for _ in range(200))


def test_keep_groups_prefers_groups_with_a_signal():
    std = np.array([0.0, 0.3, 0.0, 1.2, 0.5])
    assert grpo.keep_groups(std, 2).tolist() == [1, 3]
    assert grpo.keep_groups(std, 4).tolist() == [0, 1, 3, 4]  # filled up in draw order
    assert grpo.keep_groups(np.zeros(3), 2).tolist() == [0, 1]


def test_extra_prompts_train_on_the_groups_whose_rewards_differ(tmp_path, monkeypatch):
    """Dynamic sampling: 4 groups drawn, the first two score alike; the step trains on the
    other two (their rewards reach the advantages) and logs the drawn zero-std share."""
    from conftest import fake_score

    G = 3

    def score(texts, requests, *a, **kw):
        total, terms, p = fake_score(texts, requests, *a, **kw)
        total[:2 * G] = 1.0  # groups 0 and 1: no signal
        return total, {k: v.copy() for k, v in terms.items()}, p

    seen = []
    adv = grpo.group_advantages
    monkeypatch.setattr(grpo, "score", score)
    monkeypatch.setattr(grpo, "group_advantages", lambda r, eps: (seen.append(r.clone()), adv(r, eps))[1])
    cfg = _cfg(tmp_path, steps=1, group_size=G, extra_prompts=2)
    grpo.train(cfg, progress=False)
    row = _rows(tmp_path / "run" / "log.jsonl")[0]
    assert row["train/frac_groups_zero_std_drawn"] == 0.5 and row["train/frac_groups_zero_std"] == 0.0
    assert seen[0].shape == (2, G) and bool((seen[0].std(dim=1) > 0).all())


def test_extra_prompts_need_hf_rollouts():
    with pytest.raises(ValueError, match="extra_prompts .* needs rollout_engine hf"):
        GRPOConfig(role="optimizer", extra_prompts=2, rollout_engine="vllm").validate()
