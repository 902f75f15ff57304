"""``training.format_mass``: the policy's own mass on the answer format under constrained GRPO."""

import json

import numpy as np
import pytest
import torch

from training import grpo
from training.config import GRPOConfig, RolloutConfig
from training.format_mass import allowed_index, log_allowed_mass


def test_log_allowed_mass_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 11, generator=g)
    sets = [[[1, 4], [0], [2, 3, 9]], [[10], [5, 6, 7, 8], []]]
    A = 4
    index = torch.zeros(2, 3, A, dtype=torch.long)
    valid = torch.zeros(2, 3, A, dtype=torch.bool)
    for b in range(2):
        for k in range(3):
            index[b, k, :len(sets[b][k])] = torch.tensor(sets[b][k], dtype=torch.long)
            valid[b, k, :len(sets[b][k])] = True
    got = log_allowed_mass(logits, index, valid)
    for b in range(2):
        for k in range(3):
            p = torch.softmax(logits[b, k], -1)
            want = float(torch.log(p[sets[b][k]].sum())) if sets[b][k] else 0.0
            assert float(got[b, k]) == pytest.approx(want, abs=1e-5), (b, k)


def _cfg(tmp_path, **kw) -> GRPOConfig:
    base = dict(role="optimizer", base="tiny-random", out=str(tmp_path / "run"), steps=3, seed=0,
                prompts_per_step=2, group_size=2, max_new_tokens=10, lr=5e-2, beta=0.0,
                ref_sync_every=0, save_every=10, bf16=False,
                rollout=RolloutConfig(families=["quadratic"], env_pool=8, max_rounds=3, periods=2))
    base.update(kw)
    return GRPOConfig(**base)


def test_allowed_sets_are_the_constraint_that_sampled_the_completion(tmp_path):
    """Every sampled token lies in its rebuilt set, and the first set is the processor's own."""
    from policies.constrained import AnswerFormatProcessor, answer_pattern
    from policies.prompts import encode

    cfg = _cfg(tmp_path)
    model, tok, _, _ = grpo.setup(cfg)
    reqs = grpo.PromptSource(cfg.rollout, "optimizer", seed=0).batch(2, 1).requests
    p_ids = grpo.common.prompt_ids(tok, [encode(r, "delta") for r in reqs])
    formats = [(2, True)] * 2
    _, _, comp, cmask, texts = grpo.sample(model, tok, p_ids, cfg, [1, 2], formats, 10)
    index, valid = allowed_index(tok, comp, cmask, formats)
    assert valid[:, 0].any(-1).all() and not valid[cmask == 0].any()
    for b in range(2):
        for k in range(int(cmask[b].sum())):
            assert int(comp[b, k]) in set(index[b, k][valid[b, k]].tolist()), (b, k, texts[b])
    first = AnswerFormatProcessor(tok, [answer_pattern(2, True)], 0).allowed(0, "")
    assert sorted(index[0, 0][valid[0, 0]].tolist()) == sorted(first)
    with pytest.raises(ValueError, match="2 answer formats for 3"):
        allowed_index(tok, torch.zeros(3, 4, dtype=torch.long), torch.ones(3, 4), formats)


def _mass(tmp_path, weight):
    cfg = _cfg(tmp_path / f"w{weight}", format_mass_weight=weight)
    grpo.train(cfg, progress=False)
    rows = [json.loads(x) for x in open(tmp_path / f"w{weight}" / "run" / "log.jsonl")]
    return [r["train/format_mass"] for r in rows]


def test_the_format_term_raises_the_policys_own_mass_on_the_format(tmp_path, fake_reward):
    """Same seed and samples' rewards; with the term on, the random model's mass on the
    allowed tokens grows step after step; the mass is logged either way."""
    on, off = _mass(tmp_path, 5.0), _mass(tmp_path, 0.0)
    assert on[0] == pytest.approx(off[0]) and 0 < on[0] < 1  # step 1: same model, same samples
    assert on[-1] > 2 * on[0] and on[-1] > off[-1]
    assert all(np.isfinite(off))


def test_unconstrained_runs_log_no_format_mass(tmp_path, fake_reward):
    cfg = _cfg(tmp_path, steps=1, constrained=False)
    grpo.train(cfg, progress=False)
    row = json.loads(open(tmp_path / "run" / "log.jsonl").readline())
    assert row["train/format_mass"] is None


def test_a_negative_weight_is_refused():
    with pytest.raises(ValueError, match="format_mass_weight"):
        _cfg(__import__("pathlib").Path("/tmp"), format_mass_weight=-1).validate()
