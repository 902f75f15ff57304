"""Decision makers: LLM policies (prompts + chat-model backends) and numeric baselines.

Light on import: torch, transformers and the backends are imported only when an LLM
policy is actually made.

- :func:`make_policy` — one entry point for ``llm`` and the numeric baselines.
- :func:`shipped_adapter` — the project's LoRA adapter for a role, if shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.base import Decision, DecisionRequest, Policy
from policies.prompts import ROLES

ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"

__all__ = ["Decision", "DecisionRequest", "Policy", "make_policy", "shipped_adapter", "ADAPTERS_DIR"]


def shipped_adapter(role: str) -> Path | None:
    """``policies/adapters/<role>`` when it holds a PEFT adapter (adapter_config.json)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    d = ADAPTERS_DIR / role
    return d if (d / "adapter_config.json").is_file() else None


def make_policy(name: str, role: str, backend: str = "local", base: str = "embedded",
                adapter: str | Path | None = None, encoding: str | None = None,
                chat_model: Any = None, resample: int = 0, **kw: Any) -> Policy:
    """A policy by name: ``llm`` or a numeric baseline (``policies.baselines.BASELINES``).

    For ``llm``: ``adapter`` is a LoRA directory for ``role`` (``None`` = the shipped
    adapter if any, ``"none"`` = the plain base model); ``encoding`` ``None`` = the one
    the adapter declares (``policies.adapter_meta``); ``resample`` asks again, sampling, up
    to that many times when the decoder rejects an answer (``policies.llm``); ``chat_model`` reuses an existing
    backend instead of building one; other keywords go to the backend
    (``max_new_tokens``, ``temperature``, ``batch_size``, ``base_url`` ...). Without
    ``max_new_tokens`` each answer may use ``policies.prompts.answer_token_cap(T)`` tokens.
    For baselines, keywords are the baseline's parameters.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if name == "llm":
        from policies.llm import LLMPolicy

        if chat_model is None:
            from policies.backends import make_chat_model

            if adapter is None:
                adapter = shipped_adapter(role)
            elif str(adapter) == "none":
                adapter = None
            adapters = {role: Path(adapter)} if adapter is not None else {}
            from policies.adapter_meta import encoding_for

            encoding = encoding_for(role, adapter, encoding)
            chat_model = make_chat_model(backend, base, adapters, **kw)
            # an explicit cap also caps each call (the policy otherwise follows T)
            cap = {"max_new_tokens": kw["max_new_tokens"]} if kw.get("max_new_tokens") else {}
            return LLMPolicy(role, chat_model, encoding=encoding,
                             adapter=role if adapters else None, resample=resample, **cap)
        return LLMPolicy(role, chat_model, encoding=encoding, resample=resample)
    from policies.baselines import make_baseline

    return make_baseline(name, **kw)
