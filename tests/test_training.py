"""Training plumbing: configs + CLI flags, rollouts, SFT on the tiny random model.

The slow tests (``-m slow``) run each trainer for 2 steps on the embedded model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.config import GRPOConfig, RolloutConfig, SFTConfig, build_config

SMALL = RolloutConfig(families=["quadratic", "hill"], env_pool=32, max_rounds=5)


# ---------------------------------------------------------------------------------------
# configs and flags
# ---------------------------------------------------------------------------------------
def test_flags_override_file_and_never(tmp_path):
    from training.cli import _parser

    f = tmp_path / "c.yaml"
    f.write_text("steps: 7\ngroup_size: 4\nreward:\n  env_alpha: 3.0\nrollout:\n  window: 2\n")
    args = vars(_parser("grpo").parse_args(["--group-size", "6", "--ref-sync-every", "never",
                                            "--families", "quadratic,exponential", "--no-bf16"]))
    args.pop("config")
    cfg = build_config(GRPOConfig, file=str(f), flags=args)
    assert (cfg.steps, cfg.group_size, cfg.ref_sync_every, cfg.bf16) == (7, 6, 0, False)
    assert cfg.reward.env_alpha == 3.0 and cfg.rollout.window == 2
    assert cfg.rollout.families == ["quadratic", "exponential"]
    assert not any(cfg.refresh_due(s) for s in range(1, 100))
    assert GRPOConfig(ref_sync_every=5).refresh_due(10) and not GRPOConfig(ref_sync_every=5).refresh_due(11)


@pytest.mark.parametrize("bad, field", [({"group_size": 1}, "group_size"), ({"role": "critic"}, "role"),
                                        ({"rollout": {"families": ["nope"]}}, "families"),
                                        ({"steps": "x"}, "steps"), ({"lr": -1}, "lr"),
                                        ({"colour": 1}, "colour")])
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        build_config(GRPOConfig, **_flat(bad))


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def test_lr_schedule():
    c = SFTConfig(steps=100, lr=1e-3, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert c.lr_at(5) == pytest.approx(5e-4)
    assert c.lr_at(10) == pytest.approx(1e-3)
    assert c.lr_at(100) == pytest.approx(1e-4)
    assert c.lr_at(50) < c.lr_at(20)


def test_saved_run_configs_are_config_files():
    """Every committed run's config.json goes back in through ``--config`` (flags still win)."""
    from pathlib import Path

    from training.config import build_train_config

    runs = sorted((Path(__file__).resolve().parent.parent / "training" / "runs").glob("*/config.json"))
    assert runs
    for path in runs:
        mode = json.loads(path.read_text())["mode"]
        # init_adapter paths are relative to where each run was started
        cfg = build_train_config(mode, str(path), {"init_adapter": "none", "steps": "3"})
        assert cfg.steps == 3 and cfg.init_adapter is None
        if mode == "grpo":
            # a run keeps the cap it was saved with: explicit (old runs: 48) or None (follows T)
            assert cfg.max_new_tokens == json.loads(path.read_text())["max_new_tokens"]
    grpo_run = next(p for p in runs if json.loads(p.read_text())["mode"] == "grpo")
    with pytest.raises(ValueError, match="mode"):
        build_train_config("sft", str(grpo_run), {"init_adapter": "none"})


def test_grpo_token_cap_follows_t_unless_set():
    from policies.prompts import answer_token_cap

    cfg = GRPOConfig(role="optimizer")
    assert cfg.max_new_tokens is None
    assert cfg.completion_cap([6, 24]) == answer_token_cap(24, "delta") > 64
    assert GRPOConfig(role="optimizer", max_new_tokens=48).completion_cap([24]) == 48
    args = {"max_new_tokens": "24"}
    assert build_config(GRPOConfig, flags=args).max_new_tokens == 24
    with pytest.raises(ValueError, match="max_new_tokens"):
        build_config(GRPOConfig, flags={"max_new_tokens": "0"})


def test_resume_from_saved_config(tmp_path, capsys):
    """``--config OUT/config.json --resume`` continues the run (the saved file has a ``mode`` key)."""
    from training.cli import main

    out = tmp_path / "run"
    common = ["--base", "tiny-random", "--families", "quadratic", "--env-pool", "8", "--max-rounds", "3",
              "--prompts-per-step", "1", "--group-size", "2", "--save-every", "1", "--no-bf16",
              "--max-new-tokens", "6"]
    assert main(["grpo", "--role", "optimizer", "--steps", "1", "--out", str(out), *common]) == 0
    assert main(["grpo", "--config", str(out / "config.json"), "--steps", "2", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    saved = json.loads((out / "config.json").read_text())
    assert saved["mode"] == "grpo" and saved["steps"] == 2 and saved["rollout"]["env_pool"] == 8


def test_eval_enforces_the_answer_format_like_inference():
    """``dara train eval`` decodes as the graph does: even a random model's answers parse
    (absolute ones: its signed answers are changes that spend far from the budget)."""
    from training.evaluate import evaluate

    res = evaluate(role="optimizer", base="tiny-random", n=3, bf16=False, encoding="absolute")
    assert res["parse_error_rate"] == 0.0, res["errors"]
    assert res["example"].startswith("<answer>[") and res["example"].endswith("]</answer>")


def test_cli_rejects_bad_flag_cleanly(capsys):
    from training.cli import main

    assert main(["grpo", "--group-size", "1", "--base", "tiny-random"]) == 2
    assert "group_size" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# rollouts
# ---------------------------------------------------------------------------------------
def test_reasoner_prompts_are_histories_and_deterministic():
    from training.rollouts import PromptSource

    src = PromptSource(SMALL, "reasoner", seed=1)
    a, b = src.batch(6, 3), src.batch(6, 3)
    assert np.array_equal(a.win_alloc, b.win_alloc) and a.family == b.family
    assert not np.array_equal(a.win_alloc, src.batch(6, 4).win_alloc)
    for q in a.requests:
        assert q.role == "reasoner"
        assert [r.allocation for r in q.window] == [r.allocation for r in q.task.history]
    assert (a.round == 1).all()


def test_optimizer_windows_chain_from_history():
    from tools.budget import project
    from training.rollouts import PromptSource

    src = PromptSource(SMALL, "optimizer", seed=2)
    p = src.batch(40, 1)
    assert p.win_alloc.shape == (40, 3, 6)
    assert set(p.round.tolist()) <= set(range(2, 6)) and len(set(p.round.tolist())) > 1
    # feasible windows: every record sums to B
    np.testing.assert_allclose(p.win_alloc.sum(-1), p.budget[:, None] * np.ones((1, 3)), rtol=1e-9)
    # round 2: window = last 2 history records + round 1
    i = int(np.nonzero(p.round == 2)[0][0])
    hist = p.requests[i].task.history
    assert [r.allocation for r in p.requests[i].window[:2]] == [r.allocation for r in hist[1:]]
    # feedback in the window is the environment's MROI (noise 0)
    np.testing.assert_allclose(p.mroi(p.win_alloc[:, -1]), p.win_mroi[:, -1], rtol=1e-9)
    t = p.teacher()
    np.testing.assert_allclose(t, project(t, p.budget, p.lower, p.upper), atol=1e-9)


def test_optimizer_chain_can_start_from_a_reasoner_policy():
    from policies.base import Decision
    from training.rollouts import PromptSource

    class Uniformish:
        name = "fake-reasoner"

        def propose(self, requests):
            out = []
            for i, q in enumerate(requests):
                T = q.task.periods
                out.append(Decision(None, error="missing_tags: x") if i == 0 else
                           Decision([q.task.budget / T] * T))
            return out

    cfg = RolloutConfig(families=["quadratic"], env_pool=16, max_rounds=2, teacher_noise=0.0)
    p = PromptSource(cfg, "optimizer", seed=0, reasoner=Uniformish()).batch(4, 1)
    assert (p.round == 2).all()
    # round 1 (the window's last record) is the reasoner's uniform plan, except the
    # unparseable first row, which fell back to the chain policy
    last = p.win_alloc[:, -1]
    assert not np.allclose(last[0], 1.0)
    np.testing.assert_allclose(last[1:], 1.0)


# ---------------------------------------------------------------------------------------
# SFT on tiny-random
# ---------------------------------------------------------------------------------------
def test_sft_batch_masks_exactly_the_completion():
    from policies.models import load_base
    from policies.prompts import format_target
    from training.rollouts import PromptSource
    from training.sft import build_batch

    _, tok = load_base("tiny-random")
    p = PromptSource(SMALL, "optimizer", seed=0).batch(3, 1)
    t = p.teacher()
    ids, mask, k, cm = build_batch(p, t, tok, "delta")
    for i, q in enumerate(p.requests):
        got = tok.decode(ids[i, -k:][cm[i].bool()])
        assert got == format_target(q, t[i], "delta") + tok.eos_token
    assert (mask[:, -k:][cm.bool()] == 1).all()


def test_sft_step_moves_lora_only_and_resumes(tmp_path):
    from training import common
    from training.sft import train

    cfg = SFTConfig(role="reasoner", base="tiny-random", steps=2, batch_size=2, lr=1e-2, warmup_steps=0,
                    out=str(tmp_path / "s"), save_every=1, bf16=False, rollout=SMALL)
    train(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(np.isfinite(r["train/loss"]) and r["train/s_per_step"] > 0 for r in rows)
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "s" / "adapter" / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in w.items())  # B starts at 0
    assert json.loads((tmp_path / "s" / "adapter" / "adapter_config.json").read_text())["r"] == 16
    # resume to step 3 keeps the log of steps 1-2
    cfg3 = SFTConfig(**{**cfg.__dict__, "steps": 3, "resume": True})
    train(cfg3, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_sft_base_weights_frozen():
    from training import common
    from training.rollouts import PromptSource
    from training.sft import build_batch, sft_loss

    cfg = SFTConfig(base="tiny-random", bf16=False)
    model, tok = common.load_model("tiny-random", cfg.lora)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    p = PromptSource(SMALL, "reasoner", seed=0).batch(2, 1)
    ids, mask, k, cm = build_batch(p, p.teacher(), tok, "absolute")
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-2)
    model.train()
    sft_loss(model, ids, mask, k, cm, False).backward()
    opt.step()
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert changed and all("lora_" in k for k in changed)


# ---------------------------------------------------------------------------------------
# slow: the embedded model
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_embedded_sft_smoke(tmp_path):
    from training.cli import main

    out = tmp_path / "sft"
    assert main(["sft", "--role", "reasoner", "--base", "embedded", "--steps", "2", "--batch-size", "2",
                 "--out", str(out), "--env-pool", "16"]) == 0
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0 < r["train/loss"] < 5 for r in rows)  # the base model already half-knows the format
    assert (out / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_embedded_grpo_smoke(tmp_path):
    from training.cli import main

    out = tmp_path / "grpo"
    assert main(["grpo", "--role", "optimizer", "--base", "embedded", "--steps", "2", "--prompts-per-step", "1",
                 "--group-size", "2", "--max-new-tokens", "24", "--ref-sync-every", "1",
                 "--out", str(out), "--env-pool", "16"]) == 0
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["train/kl"] == 0.0 and rows[1]["train/kl"] == 0.0  # refreshed every step
    for r in rows:
        assert np.isfinite(r["train/reward"]) and -20 < r["train/reward"] < 20
        assert 0 <= r["train/parse_error_rate"] <= 1 and 0 < r["train/completion_len"] <= 24
        assert r["ref_refreshed"] is True


@pytest.mark.parametrize("mode", ["sft", "grpo"])
def test_train_help_prints(mode):
    """Every flag's help renders (a literal % in a help text once crashed --help)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "training.cli", mode, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-500:]
    assert "--prompts-per-step" in r.stdout or mode == "sft"
    assert "Traceback" not in r.stderr
