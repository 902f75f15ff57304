"""Check an LLM policy's model settings before anything is loaded.

A missing adapter directory, a misspelt base model or a server that is not running used
to surface as a ``policy error`` inside a round, after the graph had already held the
old allocation and presented it as the plan. Loading a model takes seconds to minutes;
these checks take milliseconds and read only the file system (and, for the ``openai``
backend, one quick ``GET /models``), so every command runs them first and fails in one
line naming the flag (:class:`tools.cli_errors.InputError`).

- adapters: ``none`` (the base model) or a directory holding ``adapter_config.json``
  (``local``/``vllm``); with ``openai`` the server must serve a model named after the role;
- base (``local``/``vllm``): ``embedded`` (its wheel installed), ``tiny-random`` or a
  model directory holding ``config.json``;
- ``openai``: every server (one URL or a comma-separated fleet) answers
  ``GET {base_url}/models`` within ``timeout`` seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from tools.cli_errors import InputError

__all__ = ["check_adapter", "check_base", "openai_base_url", "probe_openai", "check_model_settings"]


def check_adapter(flag: str, adapter: str | os.PathLike | None) -> None:
    """``adapter`` is empty (the shipped one or the base), ``none`` or a LoRA directory."""
    if adapter is None or str(adapter) in ("", "none"):
        return
    p = Path(adapter).expanduser()
    if not p.exists():
        raise InputError(flag, adapter, "no such directory (expected a LoRA adapter directory, or 'none')")
    if not p.is_dir():
        raise InputError(flag, adapter, "is a file; expected a LoRA adapter directory")
    cfg = p / "adapter_config.json"
    if not cfg.is_file():
        raise InputError(flag, adapter, "has no adapter_config.json (not a LoRA adapter directory)")
    try:
        json.loads(cfg.read_text())
    except (OSError, ValueError) as e:
        raise InputError(flag, adapter, f"adapter_config.json cannot be read ({type(e).__name__})") from None


def check_base(flag: str, base: str) -> None:
    """``base`` names a loadable base model for the ``local``/``vllm`` backends."""
    from policies.models import EMBEDDED, TINY_RANDOM, embedded_gguf_path

    if base == TINY_RANDOM:
        return
    if base == EMBEDDED:
        try:
            embedded_gguf_path()
        except FileNotFoundError as e:
            raise InputError(flag, base, str(e)) from None
        return
    p = Path(base).expanduser()
    if not p.exists():
        raise InputError(flag, base, "no such model directory (expected embedded, tiny-random or an "
                                     "HF model directory)")
    if not p.is_dir() or not (p / "config.json").is_file():
        raise InputError(flag, base, "not an HF model directory (no config.json)")


def openai_base_url(base_url: str | None = None) -> str:
    """The server(s) the ``openai`` backend talks to (same rule as the backend itself:
    :func:`policies.backends.openai_backend.openai_base_urls`), comma-separated."""
    from policies.backends.openai_backend import openai_base_urls

    return ",".join(openai_base_urls(base_url))


def probe_openai(base_url: str | None = None, *, flag: str = "--backend openai", timeout: float = 2.0) -> list[str]:
    """The model names every server serves (each of a comma-separated fleet is asked);
    :class:`InputError` naming the first server that does not answer in time."""
    from policies.backends.openai_backend import list_models, openai_base_urls

    served: list[str] | None = None
    for url in openai_base_urls(base_url):
        try:
            models = list_models(url, os.environ.get("OPENAI_API_KEY") or "EMPTY", timeout=timeout)
        except Exception as e:  # URLError, timeout, bad JSON: all mean "no usable server"
            why = getattr(e, "reason", None) or e
            raise InputError(flag, None, f"no server answers at {url} ({type(e).__name__}: {why}); start one "
                                         "(vllm serve ... --enable-lora) or pass --base-url / set DARA_OPENAI_BASE_URL") from None
        names = [str(m.get("id")) for m in models]
        served = names if served is None else [n for n in served if n in names]
    return served or []


def check_model_settings(backend: str, base: str, adapters: Mapping[str, tuple[str, str | None]], *,
                         base_flag: str = "--base", base_url: str | None = None,
                         base_url_flag: str = "--backend openai") -> None:
    """Check everything an LLM policy will load. ``adapters`` maps each role the command
    runs with the model to ``(flag, adapter value)``."""
    if backend == "openai":
        served = probe_openai(base_url, flag=base_url_flag)
        at = openai_base_url(base_url)
        # one server "serves no X"; a fleet must serve X on every server
        lacks = (f"the server at {at} serves no {{}}" if "," not in at
                 else f"the servers at {at} do not all serve the {{}}").format
        if base != "embedded" and not Path(base).expanduser().exists() and base not in served:
            raise InputError(base_flag, base, f"{lacks('model')} of that name "
                                              f"(served: {', '.join(served) or 'nothing'})")
        for role, (flag, adapter) in adapters.items():
            wants = adapter is not None and str(adapter) != "none"
            if adapter is None:
                from policies import shipped_adapter

                wants = shipped_adapter(role) is not None
            if wants and role not in served:
                raise InputError(flag, adapter or "(shipped)", f"{lacks('adapter')} "
                                 f"named {role!r} (served: {', '.join(served) or 'nothing'}); "
                                 f"start it with --lora-modules {role}=DIR, or pass {flag} none")
        return
    check_base(base_flag, base)
    for _role, (flag, adapter) in adapters.items():
        check_adapter(flag, adapter)
