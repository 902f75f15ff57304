"""Python API for copilots: run a DARA episode, get the compiled graph, use the tools.

::

    from graph.api import run_episode, build_graph, make_tools

    out = run_episode(task, env_spec={"family": "quadratic", "seed": 3},
                      reasoner="local-model", optimizer="gradient", max_rounds=5)
    out["rounds"][-1]["allocation"]

- :func:`run_episode` — one whole episode with simulator feedback (``env_spec``) and
  the final state as a dict. Context fields (``graph.context.Context``) are keyword
  arguments; ``reasoner=``/``optimizer=`` also accept a :class:`policies.base.Policy`
  object (registered under its ``name``).
- :func:`build_graph` — the compiled graph with your checkpointer (needed for live
  feedback and approval, which pause with ``interrupt``; resume with
  ``Command(resume=...)``, see ``graph.feedback``).
- :func:`register_policy` / :func:`unregister_policy` — make a custom policy selectable
  by name in the context, and remove it again.
- :func:`make_tools` — the langchain-core tools (``query_mroi``, ``enforce_budget``,
  ``oracle_allocation``) for your own agent.
"""

from __future__ import annotations

from typing import Any

from graph.context import Context
from graph.feedback import register_curves
from graph.graph import build_graph, graph
from graph.policy_registry import register_policy, unregister_policy
from tools.langchain_tools import make_tools
from tools.task import Task

__all__ = ["run_episode", "build_graph", "graph", "make_tools", "register_policy", "unregister_policy",
           "register_curves", "Context"]


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


def run_episode(task: Task | dict | None = None, env_spec: dict | None = None, **context: Any) -> dict:
    """Run one episode and return its final state (rounds, allocation, stop reason...).

    ``task``: the task contract (a :class:`Task` or its JSON dict); optional when
    ``env_spec`` is given (the env's own task is used). ``env_spec``: an ``EnvBatch.spec``
    (``make_envs(...).spec``) with ``"index"``, or a partial one such as
    ``{"family": "hill", "seed": 4}``. Live feedback (``feedback="live"``) pauses, so it
    needs :func:`build_graph` with a checkpointer instead.
    """
    for role in ("reasoner", "optimizer"):
        if role in context:
            context[role] = _policy_name(context[role])
    ctx = Context.from_dict(context)
    if ctx.feedback == "live" or ctx.approval:
        raise ValueError("run_episode runs to the end; for live feedback or approval use "
                         "build_graph(checkpointer=...) and resume with Command(resume=...)")
    inp: dict[str, Any] = {}
    if task is not None:
        inp["task"] = (task if isinstance(task, Task) else Task.model_validate(task)).model_dump(exclude_none=True)
    if env_spec is not None:
        inp["env"] = env_spec
    return graph.invoke(inp, context=ctx)
