"""GRPO-Adaptive: group-relative policy optimisation with a periodically refreshed reference.

Reads top to bottom like cleanrl's ``ppo.py``:

1. **Config** — :class:`training.config.GRPOConfig` (every field is a ``dara train grpo``
   flag). The knobs that matter: ``group_size`` G, ``prompts_per_step``, ``beta`` (KL
   weight), ``eps`` (clip), ``mu`` (optimisation passes per batch), ``ref_sync_every`` M
   (0 / ``never`` = plain GRPO), ``ref_sync_alpha`` (1 = hard copy, < 1 = EMA).
2. **Maths** — small pure functions on tensors: :func:`group_advantages`,
   :func:`masked_mean`, :func:`k3_kl`, :func:`clipped_surrogate`, :func:`grpo_loss`.
   ``tests/test_training_grpo.py`` checks each against a naive per-token loop.
3. **Model** — ONE base model with two LoRA adapters (PEFT multi-adapter): ``policy``
   (trained) and ``ref`` (frozen). Reference log-probs come from ``set_adapter("ref")``
   under ``no_grad``; refreshing the reference copies the policy's LoRA weights into
   ``ref`` (or mixes them, EMA). No second model in memory (TRL's GRPOTrainer refuses
   ``sync_ref_model`` with PEFT).
4. **Loop** — per step (numbered from 1): draw P prompts (a pure function of seed and
   step), sample G completions each at temperature ~1 with the policy adapter, score them
   with the composite reward (``training.rewards``), normalise rewards within each group,
   then ``mu`` passes of the clipped, KL-regularised token-level objective with gradient
   clipping. At the end of step s, if ``s % M == 0`` the reference is refreshed
   (``ref_refreshed`` is logged true on that step), so step ``s + 1`` starts with KL 0.
   Every log-prob pass runs with dropout off (``model.eval()``), which is what makes a
   freshly refreshed reference give exactly zero KL. With ``share_prompts`` (default)
   each pass runs a distinct prompt once and repeats its KV cache for the group's G
   completions (``training.shared_prompts``): the same log-probs for less compute.
5. **Bookkeeping** — one JSONL line per step (``OUT/log.jsonl``), resumable checkpoints
   (both adapters, optimizer, rng states, step) in ``OUT/checkpoint``, the final policy
   adapter in ``OUT/adapter`` (a plain PEFT LoRA directory ``policies`` loads unchanged).
6. **Data-parallel** (``training.distributed``) — each rank takes a contiguous slice of
   the step's prompts (whole groups), samples its rows with their *global* row seeds (so
   the completions do not depend on the world size), normalises its loss by the global
   token (or completion) count and sums gradients with the others; the log row is
   computed from every rank's rows, so it is the single-process one. The reference
   refresh is a function of the step, the same on every rank (checked each step).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from policies.backends.common import ANSWER_STOP, stop_criteria
from policies.prompts import DELTA_ENCODINGS
from training import common, distributed
from training.common import POLICY, REF
from training.config import GRPOConfig, to_dict
from training.format_mass import allowed_index
from training.grpo_log import log_row
from training.rewards import TERMS, hold_env_term, score
from training.rollouts import PromptSource
from training.shared_prompts import sampling_prefill, shared_token_logprobs


# =======================================================================================
# 2. the maths (pure functions)
# =======================================================================================
def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``A_i = (R_i - mean_G) / (std_G + eps)`` per group; ``rewards`` is ``(P, G)``.

    ``std`` is the unbiased sample standard deviation (as in TRL). A group whose
    completions all score the same gets zero advantages (no signal, no push).
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)
    return (rewards - mean) / (std + eps)


def keep_groups(group_std: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` groups a step trains on when it drew more (dynamic
    sampling): groups whose rewards differ (std > 0) in draw order, then zero-std groups
    in draw order to fill up (they only add the KL term)."""
    order = np.concatenate([np.nonzero(group_std > 0)[0], np.nonzero(~(group_std > 0))[0]])
    return np.sort(order[:keep])


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (all of them, or along ``dim``)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || ref): ``exp(ref - logp) - (ref - logp) - 1``
    (non-negative, unbiased, 0 exactly when the two log-probs agree)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                      eps_low: float, eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO/GRPO loss ``-min(rho A, clip(rho, 1-eps_low, 1+eps_high) A)`` with
    ``rho = exp(logp - old_logp)``; ``adv`` is per sequence ``(B,)``. Also returns where
    the clipped branch is the active one (for the clip fraction)."""
    ratio = torch.exp(logp - old_logp)
    a = adv.unsqueeze(-1)
    unclipped = ratio * a
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * a
    is_clipped = clipped < unclipped
    return -torch.minimum(unclipped, clipped), is_clipped


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
              adv: torch.Tensor, mask: torch.Tensor, beta: float, eps_low: float, eps_high: float,
              agg: str = "token", denom: torch.Tensor | float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO objective over a batch of completions ``(B, K)`` (mask = real tokens).

    Per token: ``clipped_surrogate + beta * k3_kl``. ``agg="token"``: mean over every
    completion token of the batch (long and short completions weigh per token);
    ``agg="sequence"``: mean per completion, then over completions (the original GRPO).
    ``denom`` replaces the mean's denominator (the token count, or the number of
    completions): a data-parallel rank passes the whole step's, so the ranks' losses and
    gradients add up to the step's. ``stats`` are means over this batch's tokens.
    """
    per_tok, is_clipped = clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta:
        per_tok = per_tok + beta * kl
    if agg == "token":
        loss = masked_mean(per_tok, mask) if denom is None else (per_tok * mask).sum() / denom
    elif agg == "sequence":
        per_seq = masked_mean(per_tok, mask, dim=1)
        loss = per_seq.mean() if denom is None else per_seq.sum() / denom
    else:
        raise ValueError(f"agg must be 'token' or 'sequence', got {agg!r}")
    stats = {"kl": float(masked_mean(kl.detach(), mask)),
             "clip_frac": float(masked_mean(is_clipped.float(), mask))}
    return loss, stats


# =======================================================================================
# 3./4. sampling and one training step
# =======================================================================================
def filler_id(tok) -> int:
    """A token id for generation padding that differs from EOS (SmolLM2's pad *is* EOS),
    so a completion that stopped at ``</answer>`` is not mistaken for one that sampled EOS."""
    for cand in (tok.pad_token_id, tok.convert_tokens_to_ids("<|endoftext|>"), tok.unk_token_id,
                 tok.bos_token_id, 0):
        if isinstance(cand, int) and cand >= 0 and cand != tok.eos_token_id:
            return cand
    return int(tok.eos_token_id)


def completion_mask(ids: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """Real completion tokens: everything up to and including the first EOS; padding
    (``pad_id`` when it differs from EOS) after a stop string is excluded."""
    end = (ids == eos_id) | (ids == pad_id)
    after = (end.long().cumsum(-1) - end.long()) > 0
    mask = ~after
    if pad_id != eos_id:
        mask &= ids != pad_id
    return mask.float()


class RowSeededSampler:
    """Sampling as a logits processor: each row draws from its own seeded generator.

    Gumbel-max: ``argmax(logits / temperature + Gumbel noise)`` is an exact draw from
    ``softmax(logits / temperature)`` (after nucleus filtering at ``top_p``), so running
    ``generate`` greedily with this processor last samples exactly as ``do_sample`` would,
    but row ``i``'s tokens depend only on ``seeds[i]``, not on which other rows share the
    batch. That is what lets a data-parallel run split a step's prompts over ranks and
    still sample the very completions a single process samples.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            from transformers import TopPLogitsWarper

            scores = TopPLogitsWarper(self.top_p)(input_ids, scores)
        V = scores.shape[-1]
        # drawn on CPU (per-row generators: the same noise on any device), then moved
        u = torch.stack([torch.rand(V, generator=g) for g in self.gens]).clamp_(1e-20, 1.0)
        return scores - torch.log(-torch.log(u)).to(scores.device)


def row_seeds(seed: int, step: int, rows: range | list[int]) -> list[int]:
    """Sampling seed of each global row index of a step (rows = prompt x completion)."""
    base = step_seed(seed, step)
    return [(base * 1_000_033 + 104_729 * (int(i) + 1)) % (2**63 - 1) for i in rows]


@torch.no_grad()
def sample(model, tok, prompt_ids: list[list[int]], cfg: GRPOConfig, seeds: list[int],
           answer_formats: list[tuple[int, bool]] | None = None, max_new_tokens: int | None = None,
           group: int = 1, fp32_decode: bool = True):
    """Sample one completion per prompt with the policy adapter (row ``i`` seeded by
    ``seeds[i]``, :class:`RowSeededSampler`); returns
    ``(prompt_ids (B,P), prompt_mask, completion_ids (B,K), completion_mask (B,K), texts)``.

    At most ``max_new_tokens`` new tokens (default ``cfg.max_new_tokens``; one of the two
    must be set: ``train_step`` passes ``cfg.completion_cap`` of the step's prompts).

    With ``answer_formats`` (``(T, signed)`` per prompt) sampling is constrained to the
    answer format exactly as the local backend decodes at inference (the log-probs used
    by the loss are still the policy's own, unconstrained ones).

    ``group > 1``: rows are each prompt ``group`` times in a row (P x G); each distinct
    prompt is prefilled once, as in the log-prob passes. On CPU the decode runs in fp32
    (``fp32_decode``): :func:`training.shared_prompts.sampling_prefill`."""
    from transformers import LogitsProcessorList

    if len(seeds) != len(prompt_ids):
        raise ValueError(f"sample: {len(seeds)} seeds for {len(prompt_ids)} prompts")
    ids, mask = common.left_pad(prompt_ids, tok.pad_token_id, common.model_device(model))
    procs = []
    if answer_formats is not None:
        from policies.constrained import AnswerFormatProcessor, answer_pattern

        procs.append(AnswerFormatProcessor(tok, [answer_pattern(T, s) for T, s in answer_formats], ids.shape[1]))
    procs.append(RowSeededSampler(seeds, cfg.temperature, cfg.top_p))  # last: it draws the token
    fill = filler_id(tok)
    common.use_adapter(model, POLICY)
    model.eval()
    cache, decode_ctx = sampling_prefill(model, ids, mask, group, cfg.bf16, fp32_decode)
    with decode_ctx:
        gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, top_k=None, top_p=None,
                             temperature=None, max_new_tokens=max_new_tokens or cfg.max_new_tokens,
                             pad_token_id=fill, eos_token_id=tok.eos_token_id,
                             stopping_criteria=stop_criteria(tok, [ANSWER_STOP]), use_cache=True,
                             past_key_values=cache, logits_processor=LogitsProcessorList(procs))
    comp = gen[:, ids.shape[1]:]
    cmask = completion_mask(comp, tok.eos_token_id, fill)
    texts = [tok.decode(c[m.bool()], skip_special_tokens=True) for c, m in zip(comp, cmask)]
    return ids, mask, comp, cmask, texts


def policy_logprobs(model, adapter: str, ids, mask, comp, cmask, cfg: GRPOConfig, grad: bool, allowed=None):
    """Log-probs of the completion tokens ``comp`` under ``adapter`` (dropout off); with
    ``cfg.share_prompts`` one prefill per distinct prompt serves its group's G rows. With
    ``allowed`` also the log mass on the answer format (``training.format_mass``)."""
    common.use_adapter(model, adapter)
    model.eval()
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        if cfg.share_prompts:
            lp = shared_token_logprobs(model, ids, mask, comp, cmask, cfg.group_size, bf16=cfg.bf16,
                                       allowed=allowed)
        else:
            full_ids = torch.cat([ids, comp], dim=1)
            full_mask = torch.cat([mask, cmask.long()], dim=1)
            lp = common.token_logprobs(model, full_ids, full_mask, comp.shape[1], bf16=cfg.bf16, allowed=allowed)
    common.use_adapter(model, POLICY)
    return lp


def answer_formats(requests, encoding: str) -> list[tuple[int, bool]]:
    """``(T, signed)`` per request: the answer format constrained sampling enforces."""
    return [(r.task.periods, encoding in DELTA_ENCODINGS) for r in requests]


def step_seed(seed: int, step: int) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7919) % (2**63 - 1)


def train_step(model, tok, opt, params, src: PromptSource, cfg: GRPOConfig, step: int, rollouts=None) -> dict:
    """One GRPO-A step (sample, score, mu updates, maybe refresh ref); returns the log row.

    Data-parallel, this rank works on its slice of the step's prompts; the gradients, the
    loss statistics and the log row cover the whole step (every rank returns the same row).
    ``rollouts`` (:class:`training.vllm_rollouts.VLLMRollouts`) samples with vLLM instead.
    """
    from policies.prompts import encode

    t0 = time.time()
    P, G = cfg.prompts_per_step, cfg.group_size
    step_prompts = src.batch(P + cfg.extra_prompts, step)  # extra_prompts > 0: one process (validated)
    mine = distributed.world().shard(P + cfg.extra_prompts, "prompts_per_step")  # whole groups stay on one rank
    prompts = step_prompts.rows(mine).repeat(G)  # rows: prompt 0 x G, prompt 1 x G, ...
    enc = cfg.resolved_encoding
    p_ids = common.prompt_ids(tok, [encode(r, enc) for r in prompts.requests])

    # --- rollout -----------------------------------------------------------------------
    formats = answer_formats(prompts.requests, enc) if cfg.constrained else None
    cap = cfg.completion_cap([r.task.periods for r in step_prompts.requests])  # the step's, on every rank
    seeds = row_seeds(cfg.seed, step, range(mine.start * G, mine.stop * G))  # global row indices
    if rollouts is None:
        ids, mask, comp, cmask, texts = sample(model, tok, p_ids, cfg, seeds, formats, cap,
                                               group=G if cfg.share_prompts else 1)
    else:
        ids, mask, comp, cmask, texts = rollouts.sample(model, tok, p_ids, cfg, seeds, formats, cap, step)
    t_gen = time.time() - t0
    total, terms, parsed = score(texts, prompts.requests, prompts.mroi, enc, cfg.reward,
                                 value_fn=prompts.value, best_value=prompts.best_value())
    ok = parsed.ok
    rewards = torch.tensor(total, dtype=torch.float32, device=cmask.device).view(len(mine), G)
    group_std = rewards.std(dim=1)
    drawn_zero_std = float((group_std == 0).float().mean())
    if cfg.extra_prompts:  # dynamic sampling: train on the P groups that carry a signal
        groups = keep_groups(group_std.cpu().numpy(), P)
        rows = (groups[:, None] * G + np.arange(G)).ravel()
        idx = torch.from_numpy(rows).to(cmask.device)
        ids, mask, comp, cmask = ids[idx], mask[idx], comp[idx], cmask[idx]
        total, ok, terms = total[rows], ok[rows], {k: v[rows] for k, v in terms.items()}
        prompts = prompts.rows(rows)
        rewards = rewards[torch.from_numpy(groups).to(rewards.device)]
        mine = range(P)
    adv = group_advantages(rewards, cfg.adv_eps).view(-1)

    # --- log-probs of the sampled tokens -----------------------------------------------
    ref_lp = policy_logprobs(model, REF, ids, mask, comp, cmask, cfg, grad=False) if cfg.beta > 0 else None
    old_lp = policy_logprobs(model, POLICY, ids, mask, comp, cmask, cfg, grad=False) if cfg.mu > 1 else None

    # --- mu optimisation passes --------------------------------------------------------
    lr = cfg.lr_at(step)
    common.set_lr(opt, lr)
    # the whole step's denominators, so the ranks' gradients sum to the single-process one
    n_tok = distributed.sum_tensor(cmask.sum()).clamp(min=1.0)
    denom = n_tok if cfg.loss_agg == "token" else float(P * G)
    # where sampling was constrained: the policy's own mass on the format (training.format_mass);
    # the rows' formats again, since dynamic sampling may have dropped groups
    allowed = allowed_index(tok, comp, cmask, answer_formats(prompts.requests, enc)) if cfg.constrained else None
    first = {}
    for it in range(cfg.mu):
        lp = policy_logprobs(model, POLICY, ids, mask, comp, cmask, cfg, grad=True, allowed=allowed)
        lp, log_mass = lp if allowed is not None else (lp, None)
        old = lp.detach() if old_lp is None else old_lp
        loss, stats = grpo_loss(lp, old, ref_lp, adv, cmask, cfg.beta, cfg.eps, cfg.clip_high, cfg.loss_agg, denom)
        if log_mass is not None and cfg.format_mass_weight:
            loss = loss - cfg.format_mass_weight * (log_mass * cmask).sum() / n_tok
        opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.all_reduce_grads(params)
        gnorm = common.grad_norm_and_clip(params, cfg.grad_clip)
        opt.step()
        if it == 0:
            (loss_sum,) = distributed.sum_floats([loss.detach()])
            kl, clip_frac = distributed.weighted_means([stats["kl"], stats["clip_frac"]], float(cmask.sum()))
            first = {"loss": loss_sum, "grad_norm": gnorm, "kl": kl, "clip_frac": clip_frac}
            if log_mass is not None:
                (first["format_mass"],) = distributed.weighted_means(
                    [float(masked_mean(log_mass.detach().exp(), cmask))], float(cmask.sum()))
            first_lp = lp.detach()

    # --- adaptive reference --------------------------------------------------------------
    refreshed = cfg.refresh_due(step)
    distributed.check_agree(f"refreshing the reference at step {step}", float(refreshed))
    if refreshed:
        common.copy_adapter(model, POLICY, REF, cfg.ref_sync_alpha)

    # --- the log row, from every rank's rows (rank order = the step's row order) ---------
    mine_rows = {"total": total, "ok": ok, "len": cmask.sum(1).cpu().numpy(),
                 "hold": hold_env_term(prompts.requests, cfg.reward.env_alpha),
                 **{k: terms[k] for k in TERMS + ("slip", "regret", "value_gain", "answer_regret")}}
    parts = distributed.gather(mine_rows)
    rows = {k: np.concatenate([part[k] for part in parts]) for k in mine_rows}
    row = log_row(step, rows, P, G, first, lr, refreshed, time.time() - t0, t_gen)
    if cfg.extra_prompts:
        row["train/frac_groups_zero_std_drawn"] = drawn_zero_std
    if rollouts is not None:
        row.update(rollouts.compare(first_lp, cmask))
    return row


# =======================================================================================
# 5. the run
# =======================================================================================
def setup(cfg: GRPOConfig):
    """Model with ``policy`` + ``ref`` adapters, optimizer over the policy's LoRA weights."""
    common.setup_torch(cfg.threads, cfg.seed)
    model, tok = common.load_model(cfg.base, cfg.lora, cfg.init_adapter, adapters=(POLICY, REF), seed=cfg.seed,
                                   device=distributed.resolve_device(cfg.device))
    common.use_adapter(model, POLICY)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return model, tok, opt, params


def train(cfg: GRPOConfig, progress: bool = True, model_bundle=None) -> Path:
    """Run GRPO-A for ``cfg.steps`` steps; returns the final adapter directory. With
    ``rollout_engine vllm`` one vLLM engine samples every step and is shut down when the
    run ends, also on error (``training.vllm_rollouts``)."""
    from training.vllm_rollouts import rollout_session

    with rollout_session(cfg) as rollouts:
        return _train(cfg, progress, model_bundle, rollouts)


def _train(cfg: GRPOConfig, progress: bool, model_bundle, rollouts) -> Path:
    cfg.validate()
    world = distributed.world(distributed.resolve_device(cfg.device))  # nccl on CUDA, gloo on CPU
    world.shard(cfg.prompts_per_step, "prompts_per_step")  # fail before loading anything
    if world.size > 1 and (rollouts is not None or cfg.extra_prompts):
        raise ValueError("--rollout-engine vllm and --extra-prompts run in one process for now (every rank "
                         "would start its own engine / keep its own groups); use --rollout-engine hf and "
                         "--extra-prompts 0 with several processes")
    progress = progress and world.is_main
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    model, tok, opt, params = model_bundle or setup(cfg)
    start = 0
    if cfg.resume and common.has_checkpoint(out):
        start = common.load_checkpoint(out, model, (POLICY, REF), opt)["step"]
        common.use_adapter(model, POLICY)
        if progress:
            print(f"[grpo] resumed from {out / 'checkpoint'} at step {start}", flush=True)
    distributed.check_replicated("the model weights", model.parameters())
    log = None
    if world.is_main:
        common.write_json(out / "config.json", {"mode": "grpo", **to_dict(cfg), "encoding": cfg.resolved_encoding})
        log = common.JsonlLog(out / "log.jsonl", resume_step=start)
    src = PromptSource(cfg.rollout, cfg.role, seed=cfg.seed)
    if progress:
        m = "never" if cfg.ref_sync_every == 0 else cfg.ref_sync_every
        print(f"[grpo] role={cfg.role} encoding={cfg.resolved_encoding} base={cfg.base} "
              f"device={common.model_device(model)} "
              f"P={cfg.prompts_per_step} G={cfg.group_size} beta={cfg.beta} M={m} mu={cfg.mu} "
              f"steps {start + 1}..{cfg.steps}{f' over {world.size} processes' if world.size > 1 else ''}",
              flush=True)
    for step in range(start + 1, cfg.steps + 1):
        row = train_step(model, tok, opt, params, src, cfg, step, rollouts)
        if log is not None:
            log.write(row)
        if progress and (step % cfg.log_every == 0 or step == cfg.steps):
            print(f"[grpo] step {step}/{cfg.steps} reward {row['train/reward']:.3f} "
                  f"(std {row['train/reward_std']:.3f}) gain {row['train/env_gain']:+.3f} kl {row['train/kl']:.4f} "
                  f"clip {row['train/clip_frac']:.3f} len {row['train/completion_len']:.1f} "
                  f"parse_err {row['train/parse_error_rate']:.2f}"
                  f"{' ref<-policy' if row['ref_refreshed'] else ''} {row['train/s_per_step']:.1f} s",
                  flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            common.save_run(out, model, (POLICY, REF), opt, step, to_dict(cfg))
    final = common.save_run(out, model, (POLICY, REF))
    if progress:
        print(f"[grpo] adapter written to {final}", flush=True)
    return final

