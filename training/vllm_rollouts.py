"""GRPO-A rollouts sampled by vLLM instead of the trainer's own ``generate``.

``rollout_engine: vllm`` (``--rollout-engine vllm``). Only the *sampling* moves to vLLM;
everything the loss sees is still computed by the trainer:

- One offline engine per run (:class:`policies.backends.vllm_engine.VLLMEngine`, a
  worker subprocess; started at the first step, shut down when the run ends, also on
  error: :func:`rollout_session`).
- Every step the current ``policy`` adapter is written with
  :func:`training.common.save_adapter` to its own directory (``OUT/vllm-adapters/
  policy-step000007``) and sent with a new ``LoRARequest`` id, so vLLM can never serve a
  cached older version; the previous version is unloaded and its directory removed.
- Prompts go in as the trainer's token ids, and the sampled token ids come back and are
  used as they are (no re-tokenising); padding and the mask follow
  :func:`training.grpo.completion_mask` exactly as for ``hf`` rollouts. Row ``i`` is one
  request seeded with ``training.grpo.row_seeds``, so a step's rollouts are reproducible
  and do not depend on which rows share a batch. ``max_tokens`` is the step's
  ``cfg.completion_cap``, the completion stops at ``</answer>``, and with
  ``cfg.constrained`` the answer format is enforced inside vLLM by the same
  ``policies.constrained`` code as for ``hf`` rollouts
  (:mod:`policies.backends.vllm_answer_format`, which says why not vLLM's structured
  outputs).
- The policy and reference log-probs are recomputed by the trainer (PEFT). vLLM's own
  log-prob of each sampled token (temperature 1, before the constraint: what the
  trainer computes) is only compared with the trainer's: ``train/vllm_lp_mismatch`` is
  the share of completion tokens with ``|difference| > cfg.vllm.lp_tol``,
  ``train/vllm_lp_maxdiff`` the largest difference.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from training import common
from training.common import POLICY
from training.config import GRPOConfig

ADAPTER_DIR = "vllm-adapters"


def adapter_dir_name(step: int) -> str:
    """Directory (and LoRA name) of the policy adapter published for ``step``."""
    return f"policy-step{int(step):06d}"


def lp_mismatch(engine_lp: torch.Tensor, trainer_lp: torch.Tensor, mask: torch.Tensor,
                tol: float) -> dict[str, float]:
    """How far the engine's log-probs of the sampled tokens are from the trainer's.

    Over completion tokens (``mask`` 1): the share with ``|engine - trainer| > tol``,
    the largest and the mean absolute difference (all 0 when there is no token).
    """
    if engine_lp.shape != trainer_lp.shape or mask.shape != trainer_lp.shape:
        raise ValueError(f"lp_mismatch: shapes differ: engine {tuple(engine_lp.shape)}, "
                         f"trainer {tuple(trainer_lp.shape)}, mask {tuple(mask.shape)}")
    d = (engine_lp.float() - trainer_lp.detach().float()).abs()[mask.bool()]
    if d.numel() == 0:
        return {"train/vllm_lp_mismatch": 0.0, "train/vllm_lp_maxdiff": 0.0, "train/vllm_lp_meandiff": 0.0}
    return {"train/vllm_lp_mismatch": float((d > tol).float().mean()),
            "train/vllm_lp_maxdiff": float(d.max()), "train/vllm_lp_meandiff": float(d.mean())}


class VLLMRollouts:
    """The vLLM side of a GRPO run: publishes the policy adapter, samples, compares.

    ``engine`` may be given (tests pass a stand-in with the same ``generate_ids``);
    otherwise a :class:`~policies.backends.vllm_engine.VLLMEngine` on ``cfg.base`` is
    started when the first step samples (its log: ``OUT/vllm.log``).
    """

    def __init__(self, cfg: GRPOConfig, engine=None):
        self.cfg = cfg
        self.root = cfg.out_dir / ADAPTER_DIR
        self.engine = engine
        self.lora_id = 0  # LoRARequest id of the adapter last published (0 = none yet)
        self.adapter_path: Path | None = None
        self.completions = 0  # completions sampled by vLLM in this run
        self.engine_lp: torch.Tensor | None = None  # (B, K) of the last sample, 0 on padding

    # -- engine and adapters ------------------------------------------------------------
    def _start(self, first_adapter: Path) -> None:
        from policies.backends.vllm_answer_format import ANSWER_FORMAT_PROCESSOR
        from policies.backends.vllm_engine import VLLMEngine
        from policies.backends.vllm_setup import lora_rank_for

        v = self.cfg.vllm
        self.engine = VLLMEngine(self.cfg.base, None, kv_cache_gib=v.kv_cache_gib,
                                 log_path=self.cfg.out_dir / "vllm.log", dtype=v.dtype,
                                 max_model_len=v.max_model_len, max_lora_rank=lora_rank_for([first_adapter]),
                                 seed=self.cfg.seed, logits_processors=[ANSWER_FORMAT_PROCESSOR])
        self.engine.start()

    def publish(self, model, step: int) -> dict:
        """Write the current policy adapter for ``step`` and return its LoRA request
        (``{"name", "id", "path"}``, a new id every time); the previous one is removed."""
        old = self.adapter_path
        self.lora_id += 1
        path = self.root / adapter_dir_name(step)
        if path.exists():  # the same step sampled again: a new version all the same
            shutil.rmtree(path)
        common.save_adapter(model, POLICY, path)
        self.adapter_path = path
        if old is not None and old != path and old.exists():
            shutil.rmtree(old)
        return {"name": f"{path.name}-v{self.lora_id}", "id": self.lora_id, "path": str(path)}

    def close(self) -> None:
        """Shut the engine down and remove the published adapters."""
        try:
            if self.engine is not None and hasattr(self.engine, "close"):
                self.engine.close()
        finally:
            self.engine = None
            shutil.rmtree(self.root, ignore_errors=True)
            self.adapter_path = None

    # -- one step -----------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, model, tok, prompt_ids: list[list[int]], cfg: GRPOConfig, seeds: list[int],
               answer_formats: list[tuple[int, bool]] | None, max_new_tokens: int, step: int):
        """Same contract as :func:`training.grpo.sample` (``(prompt_ids, prompt_mask,
        completion_ids, completion_mask, texts)``), sampled by vLLM with the current
        policy adapter; keeps vLLM's log-probs for :meth:`compare`."""
        from policies.backends.common import ANSWER_STOP
        from training.grpo import completion_mask, filler_id

        if len(seeds) != len(prompt_ids):
            raise ValueError(f"vllm sample: {len(seeds)} seeds for {len(prompt_ids)} prompts")
        prev_id = self.lora_id
        lora = self.publish(model, step)
        if self.engine is None:
            self._start(Path(lora["path"]))
        outs = self.engine.generate_ids(prompt_ids, lora, max_new_tokens, cfg.temperature, cfg.top_p, seeds,
                                        stop=[ANSWER_STOP], answer_formats=answer_formats,
                                        drop_lora_ids=[prev_id] if prev_id else [])
        fill = filler_id(tok)
        K = max(len(o["token_ids"]) for o in outs)
        comp = torch.full((len(outs), K), fill, dtype=torch.long)
        lp = torch.zeros((len(outs), K), dtype=torch.float32)
        for i, o in enumerate(outs):
            n = len(o["token_ids"])
            if len(o["logprobs"]) != n:
                raise RuntimeError(f"vllm sample: row {i} has {n} tokens but {len(o['logprobs'])} log-probs")
            comp[i, :n] = torch.tensor(o["token_ids"], dtype=torch.long)
            lp[i, :n] = torch.tensor(o["logprobs"], dtype=torch.float32)
        cmask = completion_mask(comp, tok.eos_token_id, fill)
        self.engine_lp = lp * cmask
        self.completions += len(outs)
        ids, mask = common.left_pad(prompt_ids, tok.pad_token_id)
        texts = [tok.decode(c[m.bool()], skip_special_tokens=True) for c, m in zip(comp, cmask)]
        return ids, mask, comp, cmask, texts

    def compare(self, trainer_lp: torch.Tensor, cmask: torch.Tensor) -> dict:
        """Log fields of the step: engine name, completions so far, log-prob mismatch."""
        if self.engine_lp is None:
            raise RuntimeError("compare() before sample(): no vLLM log-probs to compare")
        return {"rollout_engine": "vllm", "train/vllm_completions": self.completions,
                **lp_mismatch(self.engine_lp, trainer_lp, cmask, self.cfg.vllm.lp_tol)}


@contextmanager
def rollout_session(cfg: GRPOConfig) -> Iterator[VLLMRollouts | None]:
    """The run's :class:`VLLMRollouts` (``None`` for ``rollout_engine hf``), closed when
    the block ends however it ends."""
    if cfg.rollout_engine != "vllm":
        yield None
        return
    r = VLLMRollouts(cfg)
    try:
        yield r
    finally:
        r.close()
