"""The state of one DARA episode: plain JSON only (lists of floats, strings, dicts).

It must survive a checkpointer (SQLite for ``dara run``, the server's store for Studio)
and be readable by an analyst in Studio, so every proposal, the text the model wrote,
what the budget tool changed and why, the self-check's findings and the feedback are
kept, one dict per round. The types are ``typing_extensions.TypedDict`` (pydantic builds
Studio's input and output JSON schemas from them; ``typing.TypedDict`` cannot be read on
Python < 3.12); ``task`` is typed as the task contract so its fields show in the schema,
but, like everything else here, the value is a plain dict. Field docstrings become the
schemas' descriptions (``use_attribute_docstrings``).

Input (``InputState``), the minimal Studio input::

    {"env": {"family": "quadratic", "seed": 3}}            # simulator: task from the env
    {"task": {"budget": 6, "periods": 3, "history": [...]}} # live feedback (context.feedback="live")

``env`` is an ``EnvBatch.spec`` (as written by ``tools.envs.make_envs``), optionally with
``"index"`` (which row of the generated batch; default 0); a partial spec
(``family`` + any of ``periods``, ``budget``, ``seed``, ``noise``, ``history``, ``kw``)
is completed with the family's defaults. ``task`` defaults to the env's task. A task
whose records carry ``return`` instead of ``mroi`` is planned from MROI estimated by
``tools.returns.mroi_task`` (``mroi_estimate`` says how); ``task`` keeps what was given.

One round (``Round``) after the graph applied it: see :class:`Round`. ``source`` says
where the applied ``allocation`` came from:

- ``reasoner`` / ``optimizer``: the policy's proposal (after the budget tool);
- ``fallback``: the proposal could not be used (unparseable, wrong length, not finite,
  policy or backend error; ``error`` says which) and no numeric fallback was set: the
  current plan was held (round 1: the last historical allocation). ``no_plan`` is True:
  this round produced no new plan;
- ``fallback:<policy>``: the same, with ``context.fallback = <policy>``: that numeric
  policy's plan, through the budget tool (``error`` still names the model's problem);
- ``self-check:<policy>``: the self-check flagged the plan and ``context.on_flag =
  <policy>`` replaced it by that numeric policy's plan; ``replaced`` keeps the original;
- ``carried``: after an early stop (tolerance reached), the last allocation repeated so
  every episode reports K rounds.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from tools.self_check import Flag
from tools.task import Task

_DOCS = ConfigDict(use_attribute_docstrings=True)


@with_config(_DOCS)
class InputState(TypedDict, total=False):
    """What a run starts from: a task contract and/or an environment spec."""

    task: Task
    env: dict[str, Any]


@with_config(_DOCS)
class BudgetRecord(TypedDict, total=False):
    """What the budget tool did to a proposal (``tools.budget.BudgetReport`` as JSON)."""

    changed: bool
    reasons: list[str]
    max_abs_change: float
    used_fallback: bool
    adjustments: list[dict[str, Any]]
    """``{label, proposed, applied, why}`` per slot it moved (``why``: negative, lower
    bound, upper bound, change limit, budget sum)."""


@with_config(_DOCS)
class Round(TypedDict, total=False):
    """One applied round (also the shape of ``pending`` before feedback arrives)."""

    round: int
    role: str | None
    """``reasoner``, ``optimizer``, or None for carried rounds."""
    source: str
    """Where ``allocation`` came from: reasoner | optimizer | fallback | fallback:<policy> |
    self-check:<policy> | carried."""
    no_plan: bool
    """True when the round produced no new plan (source ``fallback``: the current plan was held)."""
    window: list[str]
    """Which records the policy saw (``history[2]``, ``round 1``, ...)."""
    proposal: list[float] | None
    """The proposal behind ``allocation`` before the budget tool (None when unusable)."""
    text: str
    """The model's raw answer for this round (kept when its plan was replaced)."""
    error: str | None
    """Why the model's answer could not be used (typed parse error, policy/backend error)."""
    rejected_answers: list[dict[str, Any]]
    """Answers the decoder rejected, asked again (``context.resample``): ``{text, error, seed}``
    each (seed None = the first, greedy answer). With a usable ``text`` these came before
    it; with ``error`` set, none of the samples decoded either. Empty = first answer used."""
    budget: BudgetRecord | None
    flags: list[Flag]
    """Self-check findings on ``allocation`` (``{kind, slots, numbers, message}``); empty = passes."""
    replaced: dict[str, Any] | None
    """With source ``fallback:<policy>`` or ``self-check:<policy>``: the plan it replaced
    (``source``, ``proposal``, ``allocation``, ``flags``, ``budget``)."""
    review: dict[str, Any] | None
    """With ``context.approval``: ``{approved, edited, proposal?, budget?, flags?}``."""
    allocation: list[float]
    """The plan applied (feasible)."""
    mroi: list[float]
    """Observed MROI (estimated from ``return`` when the observation was a return)."""
    observed_return: list[float] | None
    """Live feedback only: the return observed, when that was the observation."""
    dispersion: float
    metrics: dict[str, float] | None
    """Simulator only: ``regret``, ``mroi_var``, ``dispersion``."""


@with_config(_DOCS)
class State(TypedDict, total=False):
    """The whole episode."""

    task: Task
    """The task contract (``tools.task.Task`` as JSON): budget, periods, history, bounds."""
    env: dict[str, Any] | None
    """Simulator recipe ``EnvBatch.spec`` plus ``"index"``; None for live feedback."""
    mroi_estimate: dict[str, Any] | None
    """Return records only: ``{"note": ..., "history_mroi": [[T]...]}`` (the MROI the
    planners saw for each history record, from ``tools.returns.mroi_task``)."""
    rounds: Annotated[list[Round], operator.add]
    """Applied rounds, oldest first (appended by ``query_env`` and ``finish``)."""
    pending: Round | None
    """The round in progress (proposal, text, budget report, flags) before feedback arrives."""
    allocation: list[float] | None
    """The current plan: the last applied allocation (or the last historical one)."""
    oracle: dict[str, Any] | None
    """Simulator only, hidden from policies: the optimal allocation and its value."""
    warnings: list[str]
    """Set at setup: an adapter asked about more (or fewer) slots than it was trained on
    (``graph.provenance.range_warnings``); its plans here are extrapolation."""
    done: bool
    stop_reason: str | None
    """``max_rounds`` or ``converged``."""
