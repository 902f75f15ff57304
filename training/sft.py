"""SFT warm start: teach a role the answer format and a numeric teacher's allocations.

Each step draws fresh prompts (``training.rollouts.PromptSource``, a pure function of
seed and step), asks the teacher (default ``local-model``, which sees only the window the
prompt shows, never the oracle) for a feasible allocation, and trains the LoRA adapter on
``format_target(request, teacher allocation)`` + EOS with a completion-only loss.

CPU speed recipe (measured in docs/training.md): bf16 autocast, left padding so completions end
together, logits only on completion positions (``logits_to_keep``), LoRA on the top
layers only. Checkpoints (adapter, optimizer, rng states, step) every ``save_every``
steps; ``resume=True`` continues from ``OUT/checkpoint``. ``OUT/log.jsonl`` gets one line
per step (``step``, ``train/loss``, ``train/lr``, ``train/tokens_per_s``,
``train/s_per_step``, ...). The final adapter is ``OUT/adapter``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from training import common
from training.config import SFTConfig, to_dict
from training.rollouts import PromptSource


def build_batch(prompts, teacher_alloc, tok, encoding: str):
    """``(input_ids, attention_mask, k, completion_mask)`` for a batch of prompts + targets.

    Rows are left-padded so every completion ends at the last position; ``k`` is the
    longest completion (target + EOS) and ``completion_mask`` ``(B, k)`` is 1 exactly on
    each row's completion tokens within those last ``k`` positions.
    """
    from policies.prompts import encode, format_target

    p_ids = common.prompt_ids(tok, [encode(r, encoding) for r in prompts.requests])
    c_ids = [tok(format_target(r, a, encoding), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
             for r, a in zip(prompts.requests, teacher_alloc)]
    seqs = [p + c for p, c in zip(p_ids, c_ids)]
    ids, mask = common.left_pad(seqs, tok.pad_token_id)
    k = max(len(c) for c in c_ids)
    cmask = torch.zeros((len(seqs), k), dtype=torch.float32)
    for i, c in enumerate(c_ids):
        cmask[i, k - len(c):] = 1.0
    return ids, mask, k, cmask


def sft_loss(model, ids, mask, k, cmask, bf16: bool) -> torch.Tensor:
    """Mean negative log-likelihood over completion tokens."""
    lp = common.token_logprobs(model, ids, mask, k, bf16=bf16)
    return -(lp * cmask).sum() / cmask.sum().clamp(min=1.0)


def train(cfg: SFTConfig, progress: bool = True) -> Path:
    """Run SFT; returns the final adapter directory ``cfg.out/adapter``."""
    cfg.validate()
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    common.setup_torch(cfg.threads, cfg.seed)
    enc = cfg.resolved_encoding
    model, tok = common.load_model(cfg.base, cfg.lora, cfg.init_adapter, adapters=(common.POLICY,), seed=cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if cfg.resume and common.has_checkpoint(out):
        start = common.load_checkpoint(out, model, (common.POLICY,), opt)["step"]
        common.use_adapter(model, common.POLICY)
        if progress:
            print(f"[sft] resumed from {out / 'checkpoint'} at step {start}", flush=True)
    common.write_json(out / "config.json", {"mode": "sft", **to_dict(cfg), "encoding": enc})
    log = common.JsonlLog(out / "log.jsonl", resume_step=start)
    src = PromptSource(cfg.rollout, cfg.role, seed=cfg.seed)
    n_train = sum(p.numel() for p in params)
    if progress:
        print(f"[sft] role={cfg.role} encoding={enc} base={cfg.base} trainable={n_train:,} "
              f"steps {start + 1}..{cfg.steps} batch={cfg.batch_size}", flush=True)
    t_run = time.time()
    for step in range(start + 1, cfg.steps + 1):
        t0 = time.time()
        prompts = src.batch(cfg.batch_size, step)
        target = prompts.teacher(cfg.teacher)
        ids, mask, k, cmask = build_batch(prompts, target, tok, enc)
        lr = cfg.lr_at(step)
        common.set_lr(opt, lr)
        model.train()
        loss = sft_loss(model, ids, mask, k, cmask, cfg.bf16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = common.grad_norm_and_clip(params, cfg.grad_clip)
        opt.step()
        dt = time.time() - t0
        n_tok = int(mask.sum())
        row = {"step": step, "train/loss": float(loss.detach()), "train/lr": lr, "train/grad_norm": gnorm,
               "train/tokens_per_s": n_tok / dt, "train/s_per_step": dt,
               "train/completion_tokens": int(cmask.sum()), "train/seq_len": int(ids.shape[1]),
               "time": time.time()}
        log.write(row)
        if progress and (step % cfg.log_every == 0 or step == cfg.steps):
            eta = (time.time() - t_run) / (step - start) * (cfg.steps - step)
            print(f"[sft] step {step}/{cfg.steps} loss {float(loss.detach()):.4f} lr {lr:.2e} "
                  f"{dt:.2f} s/step {n_tok / dt:.0f} tok/s eta {eta / 60:.1f} min", flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            common.save_checkpoint(out, model, (common.POLICY,), opt, step, to_dict(cfg))
            common.save_adapter(model, common.POLICY, out / "adapter")
    final = common.save_adapter(model, common.POLICY, out / "adapter")
    if progress:
        print(f"[sft] adapter written to {final}", flush=True)
    return final

