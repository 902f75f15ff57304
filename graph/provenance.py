"""Where a plan came from: model, adapters (by content hash), policies, seed, DARA version.

A recommendation an analyst forwards must be reproducible and attributable: the same
adapter *directory name* can hold different weights after a retrain, so adapters are
identified by the SHA-256 of their ``adapter_model.safetensors`` (first 12 hex digits),
resolved exactly as ``policies.make_policy`` resolves them (empty = the shipped adapter,
``none`` = the plain base model).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from graph.context import Context

__all__ = ["provenance", "adapter_hash", "range_warnings"]

WEIGHTS = "adapter_model.safetensors"


@lru_cache(maxsize=32)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def adapter_hash(directory: str | Path | None) -> str | None:
    """Short SHA-256 of the adapter's weights file; None when there is no such file."""
    if directory is None:
        return None
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        return None
    st = weights.stat()
    return _sha256(str(weights.resolve()), st.st_mtime_ns, st.st_size)


def _adapter_dir(ctx: Context, role: str) -> str | None:
    from policies import shipped_adapter

    given = ctx.reasoner_adapter if role == "reasoner" else ctx.optimizer_adapter
    if given is None:
        found = shipped_adapter(role)
        return str(found) if found is not None else None
    return None if str(given) == "none" else str(given)


def _version() -> str:
    try:
        return metadata.version("dara")
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance(ctx: Context, roles: Iterable[str] = ("reasoner", "optimizer")) -> dict[str, Any]:
    """``{model, policies, adapters, seed, version}`` for the ``roles`` a result used.

    ``policies`` names each role's policy (and the ``fallback`` / ``on_flag`` numeric
    policies when set); ``model`` is the base model when any of those roles is ``llm``;
    ``adapters`` maps each ``llm`` role to ``{"path", "sha256"}`` (path None = base model).
    """
    roles = list(roles)
    policies = {r: ctx.reasoner if r == "reasoner" else ctx.optimizer for r in roles}
    if ctx.fallback is not None:
        policies["fallback"] = ctx.fallback
    if ctx.on_flag != "warn":
        policies["on_flag"] = ctx.on_flag
    llm_roles = [r for r in roles if policies[r] == "llm"]
    adapters = {}
    for r in llm_roles:
        d = _adapter_dir(ctx, r)
        adapters[r] = {"path": d, "sha256": adapter_hash(d)}
    return {"model": ctx.base if llm_roles else None, "backend": ctx.backend if llm_roles else None,
            "policies": policies, "adapters": adapters, "seed": ctx.seed, "version": _version()}


def range_warnings(periods: int, ctx: Context, roles: Iterable[str]) -> list[str]:
    """A plan from an adapter asked about more (or fewer) slots than it was trained on is
    extrapolation: one sentence per ``llm`` role in ``roles`` whose adapter declares a
    range (``policies.adapter_meta.trained_periods``) without ``periods`` in it."""
    from policies.adapter_meta import trained_periods

    if ctx.backend == "openai":
        return []  # the server's adapters do not declare their training
    out = []
    for role in roles:
        if (ctx.reasoner if role == "reasoner" else ctx.optimizer) != "llm":
            continue
        rng = trained_periods(_adapter_dir(ctx, role))
        if rng and not rng[0] <= periods <= rng[1]:
            out.append(f"the {role} adapter was trained on {rng[0]} to {rng[1]} slots and this task has "
                       f"{periods}: its answers here are extrapolation; check the plan's moves against "
                       "the MROI columns")
    return out
