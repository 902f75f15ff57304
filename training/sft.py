"""SFT warm start: teach a role the answer format and a numeric teacher's allocations.

Each step draws fresh prompts (``training.rollouts.PromptSource``, a pure function of
seed and step), asks the teacher (default ``local-model``, which sees only the window the
prompt shows, never the oracle) for a feasible allocation, and trains the LoRA adapter on
``format_target(request, teacher allocation)`` + EOS with a completion-only loss.

Speed recipe (measured on CPU in docs/training.md): bf16 autocast, left padding so completions end
together, logits only on completion positions (``logits_to_keep``), LoRA on the top
layers only. Checkpoints (adapter, optimizer, rng states, step) every ``save_every``
steps; ``resume=True`` continues from ``OUT/checkpoint``. ``OUT/log.jsonl`` gets one line
per step (``step``, ``train/loss``, ``train/lr``, ``train/tokens_per_s``,
``train/s_per_step``, ...). The final adapter is ``OUT/adapter``.

Data-parallel (``training.distributed``): each rank takes a contiguous slice of the
step's prompts, its loss is its completion tokens' NLL over the *global* completion-token
count, and the summed gradients are the single-process ones. LoRA dropout (0.05 by
default) draws masks per rank, so the runs agree bitwise only with ``--lora.dropout 0``;
with dropout they are statistically equivalent.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from training import common, distributed
from training.config import SFTConfig, to_dict
from training.rollouts import PromptSource


def build_batch(prompts, teacher_alloc, tok, encoding: str, device: torch.device | str = "cpu"):
    """``(input_ids, attention_mask, k, completion_mask)`` for a batch of prompts + targets,
    on ``device`` (the model's).

    Rows are left-padded so every completion ends at the last position; ``k`` is the
    longest completion (target + EOS) and ``completion_mask`` ``(B, k)`` is 1 exactly on
    each row's completion tokens within those last ``k`` positions.
    """
    from policies.prompts import encode, format_target

    p_ids = common.prompt_ids(tok, [encode(r, encoding) for r in prompts.requests])
    c_ids = [tok(format_target(r, a, encoding), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
             for r, a in zip(prompts.requests, teacher_alloc)]
    seqs = [p + c for p, c in zip(p_ids, c_ids)]
    ids, mask = common.left_pad(seqs, tok.pad_token_id, device)
    k = max(len(c) for c in c_ids)
    cmask = torch.zeros((len(seqs), k), dtype=torch.float32)
    for i, c in enumerate(c_ids):
        cmask[i, k - len(c):] = 1.0
    return ids, mask, k, cmask.to(device)


def sft_loss(model, ids, mask, k, cmask, bf16: bool, n_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood over completion tokens: the NLL summed over this
    batch's completion tokens, over ``n_tokens`` (default: their count; a data-parallel
    rank passes the whole step's, so the ranks' losses add up to the step's mean)."""
    lp = common.token_logprobs(model, ids, mask, k, bf16=bf16)
    n = cmask.sum() if n_tokens is None else n_tokens
    return -(lp * cmask).sum() / n.clamp(min=1.0)


def train(cfg: SFTConfig, progress: bool = True) -> Path:
    """Run SFT; returns the final adapter directory ``cfg.out/adapter``."""
    cfg.validate()
    device = distributed.resolve_device(cfg.device)
    world = distributed.world(device)
    mine = world.shard(cfg.batch_size, "batch_size")  # this rank's rows of every step's batch
    progress = progress and world.is_main
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    common.setup_torch(cfg.threads, cfg.seed)
    enc = cfg.resolved_encoding
    model, tok = common.load_model(cfg.base, cfg.lora, cfg.init_adapter, adapters=(common.POLICY,), seed=cfg.seed,
                                   device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if cfg.resume and common.has_checkpoint(out):
        start = common.load_checkpoint(out, model, (common.POLICY,), opt)["step"]
        common.use_adapter(model, common.POLICY)
        if progress:
            print(f"[sft] resumed from {out / 'checkpoint'} at step {start}", flush=True)
    distributed.check_replicated("the model weights", model.parameters())
    log = None
    if world.is_main:
        common.write_json(out / "config.json", {"mode": "sft", **to_dict(cfg), "encoding": enc})
        log = common.JsonlLog(out / "log.jsonl", resume_step=start)
    src = PromptSource(cfg.rollout, cfg.role, seed=cfg.seed)
    n_train = sum(p.numel() for p in params)
    if progress:
        print(f"[sft] role={cfg.role} encoding={enc} base={cfg.base} device={device} trainable={n_train:,} "
              f"steps {start + 1}..{cfg.steps} batch={cfg.batch_size}"
              f"{f' over {world.size} processes' if world.size > 1 else ''}", flush=True)
    t_run = time.time()
    for step in range(start + 1, cfg.steps + 1):
        t0 = time.time()
        prompts = src.batch(cfg.batch_size, step).rows(mine)  # this rank's slice of the step
        target = prompts.teacher(cfg.teacher)
        ids, mask, k, cmask = build_batch(prompts, target, tok, enc, device)
        lr = cfg.lr_at(step)
        common.set_lr(opt, lr)
        distributed.seed_rank_rng(cfg.seed, step)  # independent dropout masks per rank
        model.train()
        loss = sft_loss(model, ids, mask, k, cmask, cfg.bf16, n_tokens=distributed.sum_tensor(cmask.sum()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.all_reduce_grads(params)
        gnorm = common.grad_norm_and_clip(params, cfg.grad_clip)
        opt.step()
        dt = time.time() - t0
        step_loss, n_tok, n_comp = distributed.sum_floats([loss.detach(), mask.sum(), cmask.sum()])
        (seq_len,) = distributed.max_floats([ids.shape[1]])
        row = {"step": step, "train/loss": step_loss, "train/lr": lr, "train/grad_norm": gnorm,
               "train/tokens_per_s": n_tok / dt, "train/s_per_step": dt,
               "train/completion_tokens": int(n_comp), "train/seq_len": int(seq_len),
               "time": time.time()}
        if log is not None:
            log.write(row)
        if progress and (step % cfg.log_every == 0 or step == cfg.steps):
            eta = (time.time() - t_run) / (step - start) * (cfg.steps - step)
            print(f"[sft] step {step}/{cfg.steps} loss {step_loss:.4f} lr {lr:.2e} "
                  f"{dt:.2f} s/step {n_tok / dt:.0f} tok/s eta {eta / 60:.1f} min", flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            common.save_run(out, model, (common.POLICY,), opt, step, to_dict(cfg))
    final = common.save_run(out, model, (common.POLICY,))
    if progress:
        print(f"[sft] adapter written to {final}", flush=True)
    return final

