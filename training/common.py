"""Shared plumbing of the two trainers: model + LoRA setup, tokenising, log-probs on
completion positions only, adapter IO, checkpoints, the JSONL log.

Speed recipe on CPU (4.5x in all, measured step by step in docs/training.md): bf16 autocast; left padding
so completions end together; logits only for completion positions (``logits_to_keep``);
LoRA on the top layers only, so backward stops there.

Devices: the model and its adapters live on the run's device (``load_model(device=...)``,
``training.distributed.resolve_device``); every tensor built here follows the model's
device (:func:`model_device`) and autocast uses that device's type. Checkpoints are
written from CPU copies and read with ``map_location="cpu"`` (the optimizer moves its
state to the parameters' device on load), so a run saved on a GPU resumes on CPU and back.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from policies.backends.prefix_prefill import left_pad  # noqa: F401  (the one left-padding helper)
from training.config import LoraConfig

POLICY, REF = "policy", "ref"


# ---------------------------------------------------------------------------------------
# model + LoRA
# ---------------------------------------------------------------------------------------
def setup_torch(threads: int = 0, seed: int = 0) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    seed_all(seed)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(bf16: bool, device: torch.device | str = "cpu"):
    """bfloat16 autocast on ``device``'s type (``cpu`` or ``cuda``), or nothing."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if bf16 else nullcontext()


def model_device(model) -> torch.device:
    """The device the model's weights are on: where its inputs must be built."""
    return next(model.parameters()).device


def n_layers(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))


def lora_config(cfg: LoraConfig, model):
    """PEFT LoraConfig; LoRA on the top ``cfg.top_layers`` layers (all when 0)."""
    from peft import LoraConfig as PeftLoraConfig

    L = n_layers(model)
    layers = None
    if cfg.top_layers and L and cfg.top_layers < L:
        layers = list(range(L - cfg.top_layers, L))
    return PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules), layers_to_transform=layers,
                          bias="none", task_type="CAUSAL_LM")


def load_model(base: str, lora: LoraConfig, init_adapter: str | None = None,
               adapters: Sequence[str] = (POLICY,), seed: int = 0, device: torch.device | str = "cpu"):
    """A private copy of the base model with LoRA adapter(s) ``adapters``, on ``device``.

    The first adapter is trainable; the others (e.g. ``ref``) are created with the same
    shape and hold a copy of its weights. ``init_adapter`` (a PEFT directory) gives the
    starting weights and the LoRA shape; otherwise the LoRA is fresh (seeded, on CPU, so
    the initial weights do not depend on the device) and then moved with the model.
    """
    from peft import PeftModel, get_peft_model

    from policies.models import load_base

    model, tok = load_base(base, cache=False)
    model.config.use_cache = False
    first = adapters[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if init_adapter:
            pm = PeftModel.from_pretrained(model, str(init_adapter), adapter_name=first, is_trainable=True)
        else:
            pm = get_peft_model(model, lora_config(lora, model), adapter_name=first)
    for name in adapters[1:]:
        pm.add_adapter(name, pm.peft_config[first])
        copy_adapter(pm, first, name)
    pm.to(torch.device(device))
    use_adapter(pm, first, trainable=first)
    return pm, tok


def adapter_params(model, name: str) -> dict[str, torch.nn.Parameter]:
    """LoRA parameters of adapter ``name``, keyed by name with the adapter part removed."""
    tag = f".{name}."
    return {k.replace(tag, "."): p for k, p in model.named_parameters() if tag in k and "lora_" in k}


def use_adapter(model, name: str, trainable: str | None = POLICY) -> None:
    """Activate adapter ``name``; only ``trainable``'s weights require grad (PEFT's
    ``set_adapter`` would otherwise make the active adapter trainable)."""
    model.set_adapter(name)
    for k, p in model.named_parameters():
        p.requires_grad_(trainable is not None and f".{trainable}." in k and "lora_" in k)


@torch.no_grad()
def copy_adapter(model, src: str, dst: str, alpha: float = 1.0) -> None:
    """``dst <- alpha * src + (1 - alpha) * dst`` for every LoRA weight (hard copy at 1)."""
    s, d = adapter_params(model, src), adapter_params(model, dst)
    if s.keys() != d.keys():
        raise RuntimeError(f"adapters {src!r} and {dst!r} have different LoRA weights")
    for k, p in s.items():
        if alpha >= 1.0:
            d[k].copy_(p)
        else:
            d[k].mul_(1 - alpha).add_(p, alpha=alpha)


def save_adapter(model, name: str, path: str | Path) -> Path:
    """Write adapter ``name`` as a plain PEFT LoRA directory (``adapter_config.json`` +
    ``adapter_model.safetensors``) that ``PeftModel.from_pretrained`` and vLLM load."""
    import copy

    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = get_peft_model_state_dict(model, adapter_name=name)
    save_file({k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in sd.items()},
              str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = copy.deepcopy(model.peft_config[name])
    cfg.inference_mode = True
    cfg.save_pretrained(str(path))
    return path


def load_adapter_weights(model, name: str, path: str | Path) -> None:
    """Load the weights of the PEFT directory ``path`` into the existing adapter ``name``."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    sd = load_file(str(Path(path) / "adapter_model.safetensors"))
    res = set_peft_model_state_dict(model, sd, adapter_name=name)
    bad = [k for k in getattr(res, "unexpected_keys", []) if "lora_" in k]
    if bad:
        raise RuntimeError(f"adapter {path}: unexpected weights {bad[:3]}")


# ---------------------------------------------------------------------------------------
# tokenising and log-probs
# ---------------------------------------------------------------------------------------
def prompt_ids(tok, messages_list) -> list[list[int]]:
    """Chat-template token ids (with the assistant generation prompt) per message list."""
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages_list]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, k: int,
                   bf16: bool = True, temperature: float = 1.0, allowed=None):
    """Log-probs ``(B, k)`` of the last ``k`` tokens of each row given everything before.

    Only the last ``k + 1`` positions get logits (``logits_to_keep``), so the LM head and
    the softmax cost nothing for prompt positions. Positions come from the attention
    mask, so left padding does not shift them. ``allowed``: see :func:`with_format_mass`.
    """
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with autocast(bf16, input_ids.device):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                    logits_to_keep=k + 1, use_cache=False)
    logits = out.logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    return with_format_mass(logits, input_ids[:, -k:], allowed)


def with_format_mass(logits: torch.Tensor, target: torch.Tensor, allowed=None):
    """:func:`gather_logprobs`, and with ``allowed`` (``(index, valid)`` of
    :func:`training.format_mass.allowed_index`) also the per-position log of the mass on
    the answer format's allowed tokens: ``(log-probs, log mass)``."""
    lp = gather_logprobs(logits, target)
    if allowed is None:
        return lp
    from training.format_mass import log_allowed_mass

    return lp, log_allowed_mass(logits, *allowed)


def gather_logprobs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)`` at the ``target`` token of each position: ``(B, k)`` from
    logits ``(B, k, V)`` that predict ``target`` ``(B, k)``."""
    lp = torch.log_softmax(logits, dim=-1)
    return lp.gather(-1, target.unsqueeze(-1)).squeeze(-1)


# ---------------------------------------------------------------------------------------
# logs and checkpoints
# ---------------------------------------------------------------------------------------
class JsonlLog:
    """Append-only JSONL log; on resume, lines after the resumed step are dropped."""

    def __init__(self, path: str | Path, resume_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step > 0 and self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            self.path.write_text("".join(x + "\n" for x in keep))
        elif resume_step == 0 and self.path.exists():
            self.path.unlink()

    def write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(_jsonable(row)) + "\n")


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def rng_state() -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        s["cuda"] = torch.cuda.get_rng_state_all()  # dropout masks drawn on the GPUs
    return s


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    # only where the same GPUs exist (a GPU checkpoint resumed on CPU skips it)
    if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts/lists/tuples) copied to CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_checkpoint(out: Path, model, adapters: Sequence[str], optimizer, step: int, config: dict,
                    extra: dict | None = None) -> Path:
    """Atomically write ``out/checkpoint`` (adapters, optimizer, rng states, step)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.tmp-", dir=out))
    for name in adapters:
        save_adapter(model, name, tmp / name)
    torch.save({"step": step, "optimizer": to_cpu(optimizer.state_dict()), "rng": rng_state(),
                "config": config, "extra": extra or {}, "time": time.time()}, tmp / "trainer.pt")
    final = out / "checkpoint"
    old = out / ".checkpoint.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def save_run(out: Path, model, adapters: Sequence[str], optimizer=None, step: int = 0,
             config: dict | None = None) -> Path:
    """Write ``out/adapter`` (the first of ``adapters``) and, given ``optimizer``, the
    resumable ``out/checkpoint`` of all of them; returns the adapter directory.

    Data-parallel: the ranks first check that the weights are still replicated, rank 0
    writes, and every rank waits for it (a barrier), so no rank runs ahead of a half-written
    checkpoint or returns before the final adapter exists.
    """
    from training import distributed

    lora = [p for name in adapters for p in adapter_params(model, name).values()]
    distributed.check_replicated("the LoRA weights", lora)
    if distributed.world().is_main:
        if optimizer is not None:
            save_checkpoint(out, model, adapters, optimizer, step, config or {})
        save_adapter(model, adapters[0], Path(out) / "adapter")
    distributed.barrier()
    return Path(out) / "adapter"


def load_checkpoint(out: Path, model, adapters: Sequence[str], optimizer) -> dict:
    """Restore ``out/checkpoint`` into ``model``/``optimizer``; returns the trainer state.

    Read onto CPU whatever device wrote it; the adapter weights are copied into the
    model's parameters and ``optimizer.load_state_dict`` moves its state to theirs."""
    ck = Path(out) / "checkpoint"
    state = torch.load(ck / "trainer.pt", weights_only=False, map_location="cpu")
    for name in adapters:
        load_adapter_weights(model, name, ck / name)
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state


def has_checkpoint(out: Path) -> bool:
    return (Path(out) / "checkpoint" / "trainer.pt").is_file()


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(_jsonable(data), indent=2) + "\n")


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


def grad_norm_and_clip(params, max_norm: float) -> float:
    params = [p for p in params if p.grad is not None]
    if not params:
        return 0.0
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.norm(torch.stack([p.grad.detach().norm() for p in params])))
