"""The state of one DARA episode: plain JSON only (lists of floats, strings, dicts).

It must survive a checkpointer (SQLite for ``dara run``, the server's store for Studio)
and be readable by an analyst in Studio, so every proposal, the text the model wrote,
what the budget tool changed and why, and the feedback are kept, one dict per round.

Input (``InputState``), the minimal Studio input::

    {"env": {"family": "quadratic", "seed": 3}}            # simulator: task from the env
    {"task": {"budget": 6, "periods": 3, "history": [...]}} # live feedback (context.feedback="live")

``env`` is an ``EnvBatch.spec`` (as written by ``tools.envs.make_envs``), optionally with
``"index"`` (which row of the generated batch; default 0); a partial spec
(``family`` + any of ``periods``, ``budget``, ``seed``, ``noise``, ``history``, ``kw``)
is completed with the family's defaults. ``task`` defaults to the env's task.

One round (``Round``) after the graph applied it::

    {"round": 1, "role": "reasoner", "source": "reasoner" | "optimizer" | "fallback" | "carried",
     "window": ["history[0]", ...], "proposal": [...] | None, "text": "...", "error": None | "...",
     "budget": {"changed": bool, "reasons": [...], "max_abs_change": x, "used_fallback": bool},
     "review": None | {"approved": True, "edited": bool, "proposal": [...]},
     "allocation": [...], "mroi": [...], "dispersion": x,
     "metrics": None | {"regret": x, "mroi_var": x, "dispersion": x}}

``source`` is ``fallback`` when the proposal could not be used (unparseable, wrong length,
not finite, policy error): the previous applied allocation was held (round 1: the last
historical one). ``carried`` rounds come after an early stop (tolerance reached): the
last allocation repeated so every episode reports K rounds.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class InputState(TypedDict, total=False):
    """What a run starts from: a task contract and/or an environment spec."""

    task: dict[str, Any]
    env: dict[str, Any]


class State(TypedDict, total=False):
    """The whole episode."""

    task: dict[str, Any]
    """The task contract (``tools.task.Task`` as JSON): budget, periods, history, bounds."""
    env: dict[str, Any] | None
    """Simulator recipe ``EnvBatch.spec`` plus ``"index"``; None for live feedback."""
    rounds: Annotated[list[dict[str, Any]], operator.add]
    """Applied rounds, oldest first (appended by ``query_env`` and ``finish``)."""
    pending: dict[str, Any] | None
    """The round in progress (proposal, text, budget report) before feedback arrives."""
    allocation: list[float] | None
    """The current plan: the last applied allocation (or the last historical one)."""
    oracle: dict[str, Any] | None
    """Simulator only, hidden from policies: the optimal allocation and its value."""
    done: bool
    stop_reason: str | None
    """``max_rounds`` or ``converged``."""

