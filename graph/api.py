"""Python API for copilots: plan a real task, run a live campaign, run an episode, use the tools.

::

    from graph.api import plan, LiveSession, run_episode

    result = plan(task, reasoner="llm")          # one round on a real task -> PlanResult
    result.plan, result.changes, result.expected_uplift, result.flags, result.reason

    session = LiveSession(task, reasoner="local-model", optimizer="gradient", max_rounds=3)
    while not session.done:
        apply_on_campaign(session.proposal)
        session.observe(mroi=measured)           # or returns=revenue_per_slot

    out = run_episode(task, env_spec={"family": "quadratic", "seed": 3},
                      reasoner="local-model", optimizer="gradient", max_rounds=5)

- :func:`plan` — round 1 (Reasoner -> budget tool -> self-check) on a real task, no
  simulator: a :class:`PlanResult` (the ``tools.plan_report.PlanReport`` data plus
  ``source``, ``raw_text``, ``error``, ``replaced``, ``provenance``). Raises
  :class:`NoPlanError` when the answer could not be used, unless ``fallback=`` names a
  numeric policy (the result's ``source`` is then ``fallback:<policy>``).
- :class:`LiveSession` — the live loop without interrupts or ``Command``: ``proposal`` to
  apply, ``observe(mroi=... | returns=...)``, ``done``, ``rounds``, ``allocation``.
- :func:`run_episode` — one whole episode with simulator feedback (``env_spec``) and
  the final state as a dict.
- :func:`build_graph` — the compiled graph with your checkpointer (the interrupt
  contract is in ``graph.feedback``).
- :func:`register_policy` / :func:`unregister_policy` — make a custom policy selectable
  by name in the context, and remove it again.
- :func:`make_tools` — the langchain-core tools (``query_mroi``, ``enforce_budget``,
  ``oracle_allocation``) for your own agent.

Context fields (``graph.context.Context``) are keyword arguments everywhere;
``reasoner=``/``optimizer=`` also accept a :class:`policies.base.Policy` object
(registered under its ``name``).
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from graph.context import Context
from graph.feedback import register_curves
from graph.graph import build_graph, graph
from graph.policy_registry import register_policy, unregister_policy
from graph.provenance import provenance, range_warnings
from tools.langchain_tools import make_tools
from tools.plan_report import PlanReport, plan_report
from tools.self_check import Flag
from tools.task import Task, load_task

__all__ = ["plan", "PlanResult", "NoPlanError", "LiveSession", "run_episode", "build_graph", "graph",
           "make_tools", "register_policy", "unregister_policy", "register_curves", "Context"]


class PlanResult(PlanReport):
    """A plan for a real task: the plan table's data plus where the plan came from."""

    source: str = Field(description="reasoner | fallback:<policy> | self-check:<policy> (see graph.state).")
    raw_text: str = Field("", description="The model's raw answer (empty for numeric policies).")
    error: str | None = Field(None, description="Why the model's answer could not be used, if it could not.")
    replaced: dict[str, Any] | None = Field(None, description="The plan this one replaced (fallback or self-check).")
    rejected_answers: list[dict[str, Any]] = Field(
        default_factory=list, description="Answers the decoder rejected before this one and that the policy "
        "asked again for (context.resample): {text, error, seed}; empty = the first answer was used.")
    provenance: dict[str, Any] = Field(default_factory=dict,
                                       description="model, backend, policies, adapters {path, sha256}, seed, version.")

    @classmethod
    def from_round(cls, task: Task, record: dict, prov: dict[str, Any], current=None) -> "PlanResult":
        """The result for one round record (``pending`` or ``rounds[k]``) of ``task``;
        ``current`` defaults to the last history allocation."""
        report = plan_report(task, record["allocation"], current)
        data = report.model_dump()
        data["flags"] = [Flag.model_validate(f) for f in record.get("flags") or []]
        return cls(**data, source=record["source"], raw_text=record.get("text") or "",
                   error=record.get("error"), replaced=record.get("replaced"),
                   rejected_answers=list(record.get("rejected_answers") or []), provenance=prov)


class NoPlanError(RuntimeError):
    """The round produced no new plan (the model's answer could not be used); ``record``
    is the round record (``source`` ``fallback``, ``no_plan`` True, ``error``, ``text``)."""

    def __init__(self, record: dict):
        self.record = record
        role = record.get("role") or "policy"
        super().__init__(f"no new plan: the {role}'s answer could not be used ({record.get('error')}); "
                         "pass fallback='<numeric policy>' (e.g. 'local-model') to get a numeric plan instead")


def _policy_name(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    if not hasattr(value, "propose"):
        raise TypeError(f"expected a policy name or an object with .propose(requests), got {value!r}")
    from policies.baselines import BASELINES

    name = getattr(value, "name", None) or "custom"
    if name == "llm" or name in BASELINES:
        name = f"{name}-custom-{id(value):x}"  # do not shadow the built-in names
    register_policy(name, value)
    return name


def _live_context(context: dict[str, Any], caller: str, **fixed: Any) -> Context:
    for role in ("reasoner", "optimizer", "fallback", "on_flag"):
        if role in context:
            context[role] = _policy_name(context[role])
    for name in ("feedback", "approval", *fixed):
        if name in context:
            raise ValueError(f"{caller} sets context.{name} itself; do not pass {name}=")
    return Context.from_dict({**context, "feedback": "live", **fixed})


def _task_input(task: Task) -> dict:
    return {"task": task.model_dump(exclude_none=True, by_alias=True)}


def plan(task: Task | dict | str, **context: Any) -> PlanResult:
    """Plan one round for a real task (a :class:`Task`, its JSON dict or text, or a file path).

    Runs the graph's round 1 (Reasoner -> budget tool -> self-check) and stops before the
    plan would be applied. Raises :class:`tools.task.TaskError` for a bad task (an empty
    history included), ``ValueError`` for a bad context, :class:`NoPlanError` when the
    model's answer could not be used and no ``fallback=`` numeric policy was given.
    """
    from langgraph.checkpoint.memory import InMemorySaver

    task = load_task(task)
    ctx = _live_context(dict(context), "plan()", max_rounds=1)
    g = build_graph(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": f"plan-{uuid.uuid4().hex}"}}
    g.invoke(_task_input(task), cfg, context=ctx)
    record = g.get_state(cfg).values["pending"]
    if record.get("no_plan"):
        raise NoPlanError(record)
    result = PlanResult.from_round(task, record, provenance(ctx, roles=("reasoner",)))
    if record.get("source") == "reasoner":  # the Reasoner wrote it: say when it extrapolates in T
        result.warnings.extend(range_warnings(task.periods, ctx, ["reasoner"]))
    return result


class LiveSession:
    """A live campaign, round by round, for a copilot: no interrupts, no ``Command``.

    ``LiveSession(task, **context)`` runs to the first plan; apply :attr:`proposal`, then
    report what was observed with :meth:`observe` (``mroi=`` or ``returns=``, one value
    per slot); repeat until :attr:`done`. A malformed observation raises ``ValueError``
    and leaves the session waiting for the same round. :attr:`record` is the round in
    progress (``source``, ``flags``, ``no_plan``, ``text``, ``budget``), :attr:`rounds`
    the applied ones, :attr:`allocation` the last applied plan. ``checkpointer`` and
    ``thread_id`` let a session outlive the process (e.g. a SQLite saver).
    """

    def __init__(self, task: Task | dict | str, *, checkpointer=None, thread_id: str | None = None,
                 **context: Any):
        from langgraph.checkpoint.memory import InMemorySaver

        self.task = load_task(task)
        self.context = _live_context(dict(context), "LiveSession")
        self._graph = build_graph(checkpointer=checkpointer or InMemorySaver())
        self._config = {"configurable": {"thread_id": thread_id or f"live-{uuid.uuid4().hex}"}}
        self._result = self._graph.invoke(_task_input(self.task), self._config, context=self.context)

    @property
    def request(self) -> dict | None:
        """The graph's pending question (``{"apply": [...], "round", "labels", "budget",
        "flags", ...}``), or None when the session is done."""
        intr = self._result.get("__interrupt__") if isinstance(self._result, dict) else None
        return intr[0].value if intr else None

    @property
    def proposal(self) -> list[float] | None:
        """The plan to apply now (feasible, sums to the budget); None when done."""
        req = self.request
        return list(req["apply"]) if req else None

    @property
    def state(self) -> dict:
        return self._graph.get_state(self._config).values

    @property
    def record(self) -> dict | None:
        """The round in progress (what :attr:`proposal` came from)."""
        return self.state.get("pending")

    @property
    def rounds(self) -> list[dict]:
        return list(self.state.get("rounds") or [])

    @property
    def allocation(self) -> list[float] | None:
        return self.state.get("allocation")

    @property
    def done(self) -> bool:
        return self.request is None

    def observe(self, mroi: list[float] | None = None, returns: list[float] | None = None) -> "LiveSession":
        """Report what the campaign showed after applying :attr:`proposal`: marginal ROI
        per slot (``mroi=``) or the return per slot (``returns=``, turned into MROI)."""
        if self.done:
            raise RuntimeError("the session is done: no plan is waiting for an observation")
        if (mroi is None) == (returns is None):
            raise ValueError("observe needs exactly one of mroi= or returns=")
        from langgraph.types import Command

        asked = self.request
        answer = {"mroi": list(mroi)} if mroi is not None else {"return": list(returns)}
        self._result = self._graph.invoke(Command(resume=answer), self._config, context=self.context)
        again = self.request
        if again is not None and again.get("round") == asked.get("round") and again.get("error"):
            raise ValueError(again["error"])
        return self


def run_episode(task: Task | dict | None = None, env_spec: dict | None = None, **context: Any) -> dict:
    """Run one episode and return its final state (rounds, allocation, stop reason...).

    ``task``: the task contract (a :class:`Task` or its JSON dict); optional when
    ``env_spec`` is given (the env's own task is used). ``env_spec``: an ``EnvBatch.spec``
    (``make_envs(...).spec``) with ``"index"``, or a partial one such as
    ``{"family": "hill", "seed": 4}``. Live feedback (``feedback="live"``) pauses: use
    :class:`LiveSession` (or :func:`build_graph` with a checkpointer) instead.
    """
    for role in ("reasoner", "optimizer", "fallback", "on_flag"):
        if role in context:
            context[role] = _policy_name(context[role])
    ctx = Context.from_dict(context)
    if ctx.feedback == "live" or ctx.approval:
        raise ValueError("run_episode runs to the end; for live feedback use LiveSession, for approval "
                         "build_graph(checkpointer=...) and resume with Command(resume=...)")
    inp: dict[str, Any] = {}
    if task is not None:
        inp["task"] = (task if isinstance(task, Task) else Task.model_validate(task)).model_dump(
            exclude_none=True, by_alias=True)
    if env_spec is not None:
        inp["env"] = env_spec
    return graph.invoke(inp, context=ctx)
