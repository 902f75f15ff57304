"""One per-process cache of environments rebuilt from JSON specs.

The graph's simulator feedback and the langchain tools name an environment by its
``EnvBatch.spec`` and row, once per round or tool call; rebuilding it each time would
regenerate a block of rows (and, for data families, look up the fit) again and again.
Both go through :func:`cached_env_from_spec`, so an environment is built once per process.

The returned batch is shared between callers: treat it as read-only.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

from tools.envs import env_from_spec
from tools.envs.base import EnvBatch

__all__ = ["cached_env_from_spec", "clear_env_cache", "ENV_CACHE_SIZE"]

#: Environments kept per process (least recently used are dropped first).
ENV_CACHE_SIZE = 512

_lock = threading.Lock()


def cached_env_from_spec(spec: dict, index: int, **kw: Any) -> EnvBatch:
    """``tools.envs.env_from_spec(spec, index, **kw)``, built once per process.

    ``spec`` is keyed by its JSON text, ``kw`` (e.g. the ``mroi_fns`` callables of a
    ``curves`` spec) by value with lists read as tuples, so callables count by identity.
    Errors are those of ``env_from_spec`` and are not cached.
    """
    try:
        key = json.dumps(spec, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"spec must be a JSON object (an EnvBatch.spec): {e}") from None
    try:
        frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items()))
        hash(frozen)
    except TypeError as e:
        raise ValueError(f"env options must be hashable or lists (of callables, numbers): {e}") from None
    with _lock:
        return _build(key, index, frozen)


def clear_env_cache() -> None:
    """Forget every cached environment (e.g. after editing a log in place)."""
    with _lock:
        _build.cache_clear()


@functools.lru_cache(maxsize=ENV_CACHE_SIZE)
def _build(spec_json: str, index: int, frozen_kw: tuple) -> EnvBatch:
    kw = {k: list(v) if isinstance(v, tuple) else v for k, v in frozen_kw}
    return env_from_spec(json.loads(spec_json), index, **kw)
