"""Chat-model backends (langchain-core ``BaseChatModel``s), imported lazily.

- ``local`` — transformers + PEFT, multi-adapter, batched (:mod:`policies.backends.local`).
- ``vllm`` — vLLM offline engine with a ``LoRARequest`` per role
  (:mod:`policies.backends.vllm_backend`; the engine subprocess in ``vllm_engine`` /
  ``vllm_worker``, model and adapter directories in ``vllm_setup``, the answer-format
  constraint as a vLLM logits processor in ``vllm_answer_format``).
- ``openai`` — an OpenAI-compatible server (``vllm serve --enable-lora``, started by
  :mod:`policies.backends.vllm_server`) through ``langchain-openai``, adapter chosen by
  model name (:mod:`policies.backends.openai_backend`).

Shared by all: :mod:`policies.backends.common` (messages, the ``</answer>`` stop,
per-call settings such as ``max_new_tokens``, process groups) and, for ``local`` and
``vllm``, :mod:`policies.backends.coalescer` (concurrent calls gathered into batched
generates: the one request-batching layer).

:func:`make_chat_model` dispatches by name; every backend module exposes
``make_chat_model(base, adapters, **kw)``. Nothing heavy is imported until called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

BACKENDS: dict[str, str] = {
    "local": "policies.backends.local",
    "vllm": "policies.backends.vllm_backend",
    "openai": "policies.backends.openai_backend",
}


def make_chat_model(backend: str = "local", base: str | Path = "embedded",
                    adapters: dict[str, Path | str] | None = None, **kw: Any):
    """A chat model for ``backend`` over ``base`` with named LoRA ``adapters`` (role -> dir).

    Extra keywords go to the backend (e.g. ``max_new_tokens``, ``temperature``,
    ``batch_size``; ``base_url`` for ``openai``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    adapters = {k: str(v) for k, v in (adapters or {}).items() if v is not None}
    mod = importlib.import_module(BACKENDS[backend])
    return mod.make_chat_model(base=str(base), adapters=adapters, **kw)
