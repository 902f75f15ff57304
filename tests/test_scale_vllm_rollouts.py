"""GRPO-A with vLLM rollouts (``rollout_engine vllm``, ``training.vllm_rollouts``).

Fast tests (no vLLM): the mismatch statistic, per-step adapter naming and versions, how
engine outputs become the trainer's tensors (EOS / stop / padding exactly as
``training.grpo.completion_mask``), and that a run shuts its engine down and removes
the published adapters also when a step fails (a stand-in engine).

Slow tests (~1-1.5 min each on 2 shared cores: ~25-40 s vLLM start-up, then a few
seconds per step): real GRPO-A runs on the tiny random model with a real vLLM engine on
CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import require
from training import common, grpo, vllm_rollouts
from training.config import GRPOConfig, RolloutConfig




def _cfg(tmp_path, **kw) -> GRPOConfig:
    base = dict(role="optimizer", base="tiny-random", out=str(tmp_path / "run"), steps=4, seed=0,
                prompts_per_step=2, group_size=3, max_new_tokens=None, lr=5e-2, beta=0.04,
                ref_sync_every=2, save_every=10, bf16=False, rollout_engine="vllm",
                rollout=RolloutConfig(families=["quadratic"], env_pool=32, max_rounds=4))
    base.update(kw)
    return GRPOConfig(**base)


def _rows(path):
    return [json.loads(x) for x in open(path).read().splitlines()]


# ---------------------------------------------------------------------------------------
# fast
# ---------------------------------------------------------------------------------------
def test_lp_mismatch_counts_only_completion_tokens():
    engine = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]])
    trainer = torch.tensor([[-1.05, -2.5, -9.0], [-0.5, -7.0, -7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    got = vllm_rollouts.lp_mismatch(engine, trainer, mask, tol=0.1)
    assert got["train/vllm_lp_mismatch"] == pytest.approx(1 / 3)
    assert got["train/vllm_lp_maxdiff"] == pytest.approx(0.5)
    assert got["train/vllm_lp_meandiff"] == pytest.approx(0.55 / 3)
    assert vllm_rollouts.lp_mismatch(engine, trainer, mask, tol=1.0)["train/vllm_lp_mismatch"] == 0.0
    assert vllm_rollouts.lp_mismatch(engine, trainer, torch.zeros_like(mask), 0.1)["train/vllm_lp_maxdiff"] == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        vllm_rollouts.lp_mismatch(engine[:, :2], trainer, mask, 0.1)


def test_config_checks_engine_and_vllm_fields(tmp_path):
    with pytest.raises(ValueError, match="rollout_engine must be one of hf, vllm, got 'sglang'"):
        _cfg(tmp_path, rollout_engine="sglang").validate()
    cfg = _cfg(tmp_path)
    cfg.vllm.dtype = "float16"
    with pytest.raises(ValueError, match="vllm.dtype"):
        cfg.validate()
    from training.config import build_train_config

    cfg = build_train_config("grpo", flags={"rollout_engine": "vllm", "vllm.lp_tol": 0.05})
    assert cfg.rollout_engine == "vllm" and cfg.vllm.lp_tol == 0.05
    assert GRPOConfig().rollout_engine == "hf"  # default: today's behaviour


class _StandInEngine:
    """Answers ``generate_ids`` with fixed token rows; records every request."""

    def __init__(self, rows, fail_at: int | None = None):
        self.rows = rows  # [(token_ids, logprobs)], cycled over the prompts
        self.calls: list[dict] = []
        self.closed = False
        self.fail_at = fail_at

    def generate_ids(self, prompt_ids, lora, max_new_tokens, temperature, top_p, seeds, **kw):
        from pathlib import Path

        self.calls.append({"lora": dict(lora), "files": sorted(p.name for p in Path(lora["path"]).iterdir()),
                           "n": len(prompt_ids), "seeds": list(seeds), "cap": max_new_tokens, **kw})
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("engine fell over")
        out = []
        for i in range(len(prompt_ids)):
            ids, lps = self.rows[i % len(self.rows)]
            out.append({"token_ids": list(ids), "logprobs": list(lps), "text": "", "finish_reason": "stop"})
        return out

    def close(self):
        self.closed = True


def test_sample_builds_trainer_tensors_and_versions_adapters(tmp_path):
    cfg = _cfg(tmp_path)
    model, tok, _, _ = grpo.setup(cfg)
    eos, fill = tok.eos_token_id, grpo.filler_id(tok)
    a, b = 100, 200
    assert fill not in (a, b, 17, 18, 19, 20, 21, 22) and eos not in (a, b, 17, 18, 19, 20, 21, 22)
    rows = [([a, 17, b], [-0.1, -0.2, -0.3]),           # ended by a stop string: no EOS
            ([17, 18, eos], [-1.0, -2.0, -3.0]),         # sampled EOS: EOS is a completion token
            ([19, 20, 21, 22], [-0.5, -0.5, -0.5, -0.5])]  # hit the cap
    eng = _StandInEngine(rows)
    r = vllm_rollouts.VLLMRollouts(cfg, engine=eng)
    p_ids = [[1, 2, 3], [4, 5], [6]]
    ids, mask, comp, cmask, texts = r.sample(model, tok, p_ids, cfg, [11, 12, 13], [(6, True)] * 3, 9, step=7)
    assert comp.tolist() == [[a, 17, b, fill], [17, 18, eos, fill], [19, 20, 21, 22]]
    assert torch.equal(cmask, grpo.completion_mask(comp, eos, fill))
    assert cmask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert ids.shape == (3, 3) and mask.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    assert texts[0] == tok.decode([a, 17, b], skip_special_tokens=True)
    call = eng.calls[0]
    assert call["seeds"] == [11, 12, 13] and call["cap"] == 9 and call["stop"] == ["</answer>"]
    assert call["answer_formats"] == [(6, True)] * 3
    assert call["lora"] == {"name": "policy-step000007-v1", "id": 1, "path": str(r.root / "policy-step000007")}
    assert "adapter_model.safetensors" in call["files"] and call["drop_lora_ids"] == []
    got = r.compare(torch.tensor([[-0.1, -0.2, -0.3, 0.0], [-1.0, -2.0, -3.5, 0.0], [-0.5] * 4]), cmask)
    assert got["rollout_engine"] == "vllm" and got["train/vllm_completions"] == 3
    assert got["train/vllm_lp_mismatch"] == pytest.approx(1 / 10) and got["train/vllm_lp_maxdiff"] == pytest.approx(0.5)
    # the next step: a new version and id, the old one unloaded and its directory gone
    r.sample(model, tok, p_ids, cfg, [1, 2, 3], None, 9, step=8)
    call = eng.calls[1]
    assert call["lora"]["id"] == 2 and call["lora"]["name"] == "policy-step000008-v2"
    assert call["drop_lora_ids"] == [1] and call["answer_formats"] is None
    assert sorted(p.name for p in r.root.iterdir()) == ["policy-step000008"]
    # the published adapter is the policy's current weights
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(r.root / "policy-step000008" / "adapter_model.safetensors"))
    want = get_peft_model_state_dict(model, adapter_name="policy")
    assert saved.keys() == want.keys() and all(torch.equal(saved[k], want[k].float()) for k in want)
    r.close()
    assert eng.closed and not r.root.exists()


def test_run_closes_engine_and_cleans_up_on_error(tmp_path, monkeypatch, fake_reward):
    cfg = _cfg(tmp_path, steps=3, max_new_tokens=4)
    engines = []

    def start(self, first_adapter):
        self.engine = _StandInEngine([([17, 18, 19, 20], [-1.0] * 4)], fail_at=2)
        engines.append(self.engine)

    monkeypatch.setattr(vllm_rollouts.VLLMRollouts, "_start", start)
    with pytest.raises(RuntimeError, match="engine fell over"):
        grpo.train(cfg, progress=False)
    assert len(engines) == 1 and engines[0].closed  # one engine per run, closed on error
    assert not (tmp_path / "run" / vllm_rollouts.ADAPTER_DIR).exists()
    rows = _rows(tmp_path / "run" / "log.jsonl")
    assert len(rows) == 1 and rows[0]["rollout_engine"] == "vllm" and rows[0]["train/vllm_completions"] == 6


def test_adapter_dir_name():
    assert vllm_rollouts.adapter_dir_name(7) == "policy-step000007"
    assert vllm_rollouts.adapter_dir_name(123456) == "policy-step123456"


# ---------------------------------------------------------------------------------------
# slow: a real vLLM engine on CPU
# ---------------------------------------------------------------------------------------
def _run_and_check(tmp_path, monkeypatch, cfg):
    """Run ``cfg`` through ``grpo.train``; return the log rows after the common checks."""
    from policies.backends import common as backend_common

    model, tok, opt, params = grpo.setup(cfg)
    pol0 = {k: v.detach().clone() for k, v in common.adapter_params(model, "policy").items()}
    started = []
    real_start = vllm_rollouts.VLLMRollouts._start

    def start(self, first_adapter):
        real_start(self, first_adapter)
        started.append(self.engine.pid)

    monkeypatch.setattr(vllm_rollouts.VLLMRollouts, "_start", start)
    grpo.train(cfg, progress=False, model_bundle=(model, tok, opt, params))
    rows = _rows(tmp_path / "run" / "log.jsonl")
    assert len(started) == 1, "one engine per run"
    assert not backend_common.group_alive(started[0]), "the vLLM engine outlived the run"
    assert not (tmp_path / "run" / vllm_rollouts.ADAPTER_DIR).exists()
    assert [r["step"] for r in rows] == list(range(1, cfg.steps + 1))
    for i, r in enumerate(rows, 1):  # the completions came from vLLM
        assert r["rollout_engine"] == "vllm" and r["train/vllm_completions"] == i * cfg.batch_completions
        for key in ("train/vllm_lp_mismatch", "train/vllm_lp_maxdiff", "train/vllm_lp_meandiff"):
            assert np.isfinite(r[key]), (key, r)
    pol = common.adapter_params(model, "policy")
    assert any(not torch.equal(pol[k], pol0[k]) for k in pol0), "the policy adapter did not move"
    return model, rows


@pytest.mark.slow
def test_grpo_with_vllm_rollouts_constrained(tmp_path, monkeypatch, fake_reward):
    """Constrained sampling (the answer-format logits processor inside vLLM), fp32 on both
    sides, a refresh every 2 steps: vLLM's log-probs equal the trainer's to float
    precision at every step, which they could not if vLLM served an older adapter."""
    require("vllm")
    cfg = _cfg(tmp_path, encoding="absolute")  # a random model's signed answers are not_a_change
    model, rows = _run_and_check(tmp_path, monkeypatch, cfg)
    print("\n" + "\n".join(f"step {r['step']}: mismatch {r['train/vllm_lp_mismatch']:.3f} "
                           f"max {r['train/vllm_lp_maxdiff']:.2e} mean {r['train/vllm_lp_meandiff']:.2e} "
                           f"gen {r['train/s_generate']:.1f}s step {r['train/s_per_step']:.1f}s" for r in rows))
    assert all(r["train/parse_error_rate"] == 0.0 for r in rows)  # the format was enforced
    assert all(r["train/vllm_lp_mismatch"] == 0.0 and r["train/vllm_lp_maxdiff"] < 1e-3 for r in rows)
    assert [r["ref_refreshed"] for r in rows] == [False, True, False, True]
    assert rows[2]["train/kl"] == 0.0 and rows[1]["train/kl"] > 0 and rows[3]["train/kl"] > 0
    pol, ref = common.adapter_params(model, "policy"), common.adapter_params(model, "ref")
    assert all(torch.equal(ref[k], pol[k]) for k in pol)  # refreshed at the end of step 4


@pytest.mark.slow
def test_grpo_with_vllm_rollouts_unconstrained_bf16(tmp_path, monkeypatch, fake_reward):
    """Free sampling (vLLM's own sampled-token log-probs are compared) with the trainer
    in bf16 autocast against fp32 vLLM: differences are bf16-sized, not adapter-sized."""
    require("vllm")
    cfg = _cfg(tmp_path, steps=3, constrained=False, max_new_tokens=24, bf16=True, ref_sync_every=1)
    model, rows = _run_and_check(tmp_path, monkeypatch, cfg)
    print("\n" + "\n".join(f"step {r['step']}: mismatch {r['train/vllm_lp_mismatch']:.3f} "
                           f"max {r['train/vllm_lp_maxdiff']:.2e} mean {r['train/vllm_lp_meandiff']:.2e}"
                           for r in rows))
    assert all(r["train/vllm_lp_maxdiff"] < 0.5 and r["train/vllm_lp_meandiff"] < 0.05 for r in rows)
    assert all(r["ref_refreshed"] for r in rows) and rows[1]["train/kl"] == 0.0
    pol, ref = common.adapter_params(model, "policy"), common.adapter_params(model, "ref")
    assert all(torch.equal(ref[k], pol[k]) for k in pol)
