"""Which :class:`policies.base.Policy` a node asks: custom policies by name, built ones cached.

Nodes run over and over (Studio threads, ``dara run``'s concurrent episodes), so a policy
is built once per process and reused: a chat model loads once, and concurrent episodes
share its batched generation calls. Two tables, both explicit in :class:`PolicyRegistry`:

- *registered* policies: custom objects made selectable by name
  (``context.optimizer = "mine"``) with :func:`register_policy`; removed again with
  :func:`unregister_policy` (tests, notebooks that swap policies);
- *built* policies: ``llm`` and the numeric baselines, built on first use and cached
  under :meth:`graph.context.Context.policy_key`, which holds every setting the build
  uses (so two contexts share a policy only when they would build the same one).

This module imports nothing from ``graph.context`` at run time, so the context can ask it
which names are registered without an import cycle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from policies.base import Policy

if TYPE_CHECKING:  # only for annotations: the context imports this module
    from graph.context import Context

RESERVED = "llm"


class PolicyRegistry:
    """Registered policies by name and built policies by policy key (thread-safe)."""

    def __init__(self) -> None:
        self._registered: dict[str, Policy] = {}
        self._built: dict[tuple, Policy] = {}
        self._lock = threading.Lock()

    def register(self, name: str, policy: Policy) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"policy name must be a non-empty string, got {name!r}")
        if name == RESERVED:
            raise ValueError("'llm' is reserved for the chat-model policy")
        from policies.baselines import BASELINES

        if name in BASELINES:
            raise ValueError(f"{name!r} is a built-in baseline name")
        if not hasattr(policy, "propose"):
            raise TypeError(f"policy {name!r} must have .propose(requests), got {policy!r}")
        with self._lock:
            self._registered[name] = policy

    def unregister(self, name: str) -> None:
        with self._lock:
            if name not in self._registered:
                raise KeyError(f"no registered policy named {name!r}")
            del self._registered[name]

    def registered(self) -> dict[str, Policy]:
        with self._lock:
            return dict(self._registered)

    def get(self, ctx: Context, role: str, name: str | None = None) -> Policy:
        """The policy for ``role`` under ``ctx`` (built on first use, then cached).

        ``name`` asks for another policy in that role than the context's (the numeric
        ``context.fallback`` and ``context.on_flag`` policies)."""
        name = name or (ctx.reasoner if role == "reasoner" else ctx.optimizer)
        with self._lock:
            if name in self._registered:
                return self._registered[name]
        key = ctx.policy_key(role) if name == (ctx.reasoner if role == "reasoner" else ctx.optimizer) \
            else (role, name)
        pol = self._built.get(key)
        if pol is not None:
            return pol
        with self._lock:  # one build per key even when many episodes start at once
            pol = self._built.get(key)
            if pol is None:
                pol = build_policy(ctx, role, name)
                self._built[key] = pol
        return pol

    def clear_built(self) -> None:
        """Forget built policies (the next use builds them again)."""
        with self._lock:
            self._built.clear()


def build_policy(ctx: Context, role: str, name: str) -> Policy:
    """A new policy ``name`` for ``role`` with ``ctx``'s model settings."""
    if name != RESERVED:
        from policies.baselines import make_baseline

        return make_baseline(name)
    from policies import make_policy

    adapter = ctx.reasoner_adapter if role == "reasoner" else ctx.optimizer_adapter
    encoding = ctx.reasoner_encoding if role == "reasoner" else ctx.optimizer_encoding
    kw: dict[str, Any] = {}
    if ctx.temperature > 0:
        kw.update(temperature=ctx.temperature, seed=ctx.seed)
    if ctx.base_url is not None:  # backend openai: the server(s); else the backend's default
        kw["base_url"] = ctx.base_url
    policy = make_policy("llm", role, backend=ctx.backend, base=ctx.base, adapter=adapter,
                         encoding=encoding, resample=ctx.resample, **kw)
    # Concurrent episodes (dara run, Studio threads) share batched generation calls
    # through the backend's request coalescer (policies.backends.coalescer).
    return policy


REGISTRY = PolicyRegistry()
"""The process's registry: what the graph's nodes and ``graph.api`` use."""


def register_policy(name: str, policy: Policy) -> None:
    """Make a custom :class:`Policy` selectable by name (``context.reasoner = name``)."""
    REGISTRY.register(name, policy)


def unregister_policy(name: str) -> None:
    """Remove a policy added with :func:`register_policy` (``KeyError`` when absent)."""
    REGISTRY.unregister(name)


def registered_policies() -> dict[str, Policy]:
    """Custom policies by name (a copy)."""
    return REGISTRY.registered()


def get_policy(ctx: Context, role: str, name: str | None = None) -> Policy:
    """The policy ``role`` uses under ``ctx`` (or the policy ``name`` in that role)."""
    return REGISTRY.get(ctx, role, name)
