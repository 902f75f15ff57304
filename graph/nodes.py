"""Nodes of the DARA graph. Each returns only the state keys it changes.

``setup`` -> ``reason`` -> ``enforce_budget`` -> [``review``] -> ``query_env`` ->
(``optimize`` -> ``enforce_budget`` -> ... | ``finish``).

- ``reason`` / ``optimize`` ask a :class:`policies.base.Policy` (an LLM policy or a
  numeric baseline) for a proposal. Policies are built once per process and cached on
  the context's policy key, so Studio (which calls nodes over and over) and ``dara run``
  (many episodes in threads) load a model once. Model calls happen in these *sync*
  nodes: local torch inference inside an ``async`` node trips ``langgraph dev``'s
  blocking-call check.
- ``enforce_budget`` (tool node): ``tools.budget.enforce_budget`` turns the proposal into
  a feasible allocation and says what it changed and why; an unusable proposal holds the
  current plan (source ``fallback``).
- ``review`` (only with ``context.approval``): a human approves or edits the plan.
- ``query_env`` (tool node): applies the plan and records the feedback (simulator or
  live, ``graph.feedback``).
- ``finish``: marks the episode done; after an early stop it repeats the last allocation
  (source ``carried``) so every episode reports ``max_rounds`` rounds.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

from langgraph.runtime import Runtime

from graph import feedback as fb
from graph.context import Context, get_context
from graph.state import State
from policies.base import Decision, DecisionRequest, Policy
from tools.budget import enforce_budget as _enforce_budget
from tools.metrics import dispersion as _dispersion
from tools.task import Record, Task

# ---- policies: one per (role, settings) per process ------------------------------------------
_POLICIES: dict[tuple, Policy] = {}
_REGISTERED: dict[str, Policy] = {}
_policy_lock = threading.Lock()


def register_policy(name: str, policy: Policy) -> None:
    """Make a custom :class:`Policy` selectable by name (``context.reasoner = name``)."""
    if name == "llm":
        raise ValueError("'llm' is reserved for the chat-model policy")
    from policies.baselines import BASELINES

    if name in BASELINES:
        raise ValueError(f"{name!r} is a built-in baseline name")
    with _policy_lock:
        _REGISTERED[name] = policy


def registered_policies() -> dict[str, Policy]:
    return dict(_REGISTERED)


def get_policy(ctx: Context, role: str) -> Policy:
    """The policy for ``role`` under ``ctx`` (built on first use, then cached)."""
    name = ctx.reasoner if role == "reasoner" else ctx.optimizer
    if name in _REGISTERED:
        return _REGISTERED[name]
    key = ctx.policy_key(role)
    pol = _POLICIES.get(key)
    if pol is not None:
        return pol
    with _policy_lock:  # one build per key even when many episodes start at once
        pol = _POLICIES.get(key)
        if pol is None:
            pol = _build_policy(ctx, role, name)
            _POLICIES[key] = pol
    return pol


def _build_policy(ctx: Context, role: str, name: str) -> Policy:
    if name != "llm":
        from policies.baselines import make_baseline

        return make_baseline(name)
    from policies import make_policy

    adapter = ctx.reasoner_adapter if role == "reasoner" else ctx.optimizer_adapter
    encoding = ctx.reasoner_encoding if role == "reasoner" else ctx.optimizer_encoding
    kw: dict[str, Any] = {}
    if ctx.temperature > 0:
        kw.update(temperature=ctx.temperature, seed=ctx.seed)
    policy = make_policy("llm", role, backend=ctx.backend, base=ctx.base, adapter=adapter,
                         encoding=encoding, **kw)
    # Concurrent episodes (dara run, Studio threads) share batched generation calls
    # through the backend's request coalescer (policies.backends.coalescer).
    return policy


# ---- helpers ----------------------------------------------------------------------------------
def _task(state: State) -> Task:
    return Task.model_validate(state["task"])


def records_pool(state: State) -> list[tuple[str, Record]]:
    """History followed by applied rounds, each with a label for the analyst."""
    task = _task(state)
    pool = [(f"history[{i}]", r) for i, r in enumerate(task.history)]
    for r in state.get("rounds") or []:
        if r.get("mroi") is not None:
            pool.append((f"round {r['round']}", Record(allocation=r["allocation"], mroi=r["mroi"])))
    return pool


def _current(state: State, task: Task) -> list[float] | None:
    if state.get("allocation") is not None:
        return list(state["allocation"])
    if task.history:
        return list(task.history[-1].allocation)
    return None


def _decide(state: State, runtime: Runtime[Context], role: str) -> dict:
    ctx = get_context(runtime)
    task = _task(state)
    k = len(state.get("rounds") or []) + 1
    if role == "reasoner":
        labelled = [(f"history[{i}]", r) for i, r in enumerate(task.history)]
    else:
        labelled = records_pool(state)[-ctx.window:]
    request = DecisionRequest(role=role, task=task, window=[r for _, r in labelled])
    try:
        if role == "reasoner" and not request.window and (ctx.reasoner != "llm"):
            # Numeric baselines need a record; with no history the uniform split is the plan.
            decision = Decision(allocation=None, text="", error="no history: nothing to reason from")
        else:
            policy = get_policy(ctx, role)
            decision = policy.propose([request])[0]
    except Exception as e:  # a batch never dies because one decision failed
        decision = Decision(
            allocation=None, text="", error=f"policy error: {type(e).__name__}: {e}",
            meta={"traceback": traceback.format_exc(limit=3)},
        )
    proposal = None if decision.allocation is None else [float(x) for x in decision.allocation]
    pending = {
        "round": k,
        "role": role,
        "source": role,
        "window": [label for label, _ in labelled],
        "proposal": proposal,
        "text": decision.text or "",
        "error": decision.error,
    }
    clipped = (decision.meta or {}).get("clipped_to_zero")
    if clipped:  # a delta answer cut these slots below zero; the decoder stopped them at 0
        pending["clipped_to_zero"] = [int(t) for t in clipped]
    return {"pending": pending}


# ---- nodes ------------------------------------------------------------------------------------
def setup(state: State, runtime: Runtime[Context]) -> dict:
    """Validate the input; complete the env spec; derive the task from the env if absent."""
    ctx = get_context(runtime)
    env = fb.normalise_env(state.get("env"))
    if state.get("task") is None:
        if env is None:
            raise ValueError("input needs a 'task' (task contract JSON) or an 'env' (environment spec)")
        task = fb.get_env(env).task(0)
    else:
        task = Task.model_validate(state["task"])
    if ctx.feedback == "simulator":
        if env is None:
            raise ValueError(
                "simulator feedback needs an 'env' in the input (e.g. {\"family\": \"quadratic\", "
                "\"seed\": 0}); for a real campaign set context feedback='live'"
            )
        e = fb.get_env(env)
        if e.periods != task.periods:
            raise ValueError(f"task.periods = {task.periods} but the env has {e.periods} slots")
    out: dict[str, Any] = {"task": task.model_dump(exclude_none=True), "env": env, "done": False,
                           "stop_reason": None, "pending": None}
    out["allocation"] = list(task.history[-1].allocation) if task.history else None
    if env is not None and ctx.feedback == "simulator":
        out["oracle"] = fb.oracle(env)
    return out


def reason(state: State, runtime: Runtime[Context]) -> dict:
    """Few-shot Reasoner: the task's history -> round-1 proposal."""
    return _decide(state, runtime, "reasoner")


def optimize(state: State, runtime: Runtime[Context]) -> dict:
    """Fine-grained Optimizer: the last ``w`` records -> refined proposal."""
    return _decide(state, runtime, "optimizer")


def enforce_budget(state: State) -> dict:
    """Tool node: parse errors, bounds, sum = B -> feasible allocation, with reasons."""
    task = _task(state)
    pending = dict(state["pending"])
    report = _enforce_budget(pending.get("proposal"), task, fallback=_current(state, task))
    reasons = list(report.reasons)
    clipped = pending.get("clipped_to_zero") or []
    if clipped:
        cut = ", ".join(task.slot_labels[t - 1] for t in clipped)
        reasons.insert(0, f"the answer cut {cut} below zero; clipped to 0")
    pending["budget"] = {
        "changed": report.changed or bool(clipped),
        "reasons": reasons,
        "max_abs_change": report.max_abs_change,
        "used_fallback": report.used_fallback,
    }
    if report.used_fallback:
        pending["source"] = "fallback"
        if pending.get("error") is None:
            pending["error"] = "; ".join(report.reasons) or "proposal unusable"
    pending["allocation"] = list(report.allocation)
    return {"pending": pending}


def review(state: State) -> dict:
    """Human approval/edit of the plan before it is applied (``context.approval``)."""
    task = _task(state)
    pending = dict(state["pending"])
    answer = fb.ask_review(task, pending["allocation"], pending["round"], pending)
    rev: dict[str, Any] = {"approved": True, "edited": answer["edited"]}
    if answer["edited"]:
        report = _enforce_budget(answer["allocation"], task, fallback=pending["allocation"])
        rev["proposal"] = answer["allocation"]
        rev["budget"] = {"changed": report.changed, "reasons": list(report.reasons),
                         "max_abs_change": report.max_abs_change}
        pending["allocation"] = list(report.allocation)
    pending["review"] = rev
    return {"pending": pending}


def query_env(state: State, runtime: Runtime[Context]) -> dict:
    """Tool node: apply the plan, observe MROI (simulator or live), record the round."""
    ctx = get_context(runtime)
    task = _task(state)
    pending = dict(state["pending"])
    alloc = pending["allocation"]
    k = pending["round"]
    metrics = None
    if ctx.feedback == "live":
        mroi = fb.ask_live(task, alloc, k, pending.get("budget") or {})
    else:
        if state.get("env") is None:
            raise ValueError("simulator feedback needs an 'env' in the state")
        mroi, metrics = fb.simulate(state["env"], alloc, ctx.seed, k)
    rnd = {
        "round": k,
        "role": pending["role"],
        "source": pending["source"],
        "window": pending.get("window", []),
        "proposal": pending.get("proposal"),
        "text": pending.get("text", ""),
        "error": pending.get("error"),
        "budget": pending.get("budget"),
        "review": pending.get("review"),
        "allocation": alloc,
        "mroi": mroi,
        "dispersion": float(_dispersion(mroi)),
        "metrics": metrics,
    }
    return {"rounds": [rnd], "allocation": alloc, "pending": None}


def finish(state: State, runtime: Runtime[Context]) -> dict:
    """Mark the episode done; carry the last allocation forward to ``max_rounds`` rounds."""
    ctx = get_context(runtime)
    rounds = state.get("rounds") or []
    reason_ = stop_reason(state, ctx)
    carried = []
    if rounds:
        last = rounds[-1]
        for k in range(len(rounds) + 1, ctx.max_rounds + 1):
            carried.append({
                **last, "round": k, "source": "carried", "role": None, "window": [],
                "proposal": None, "text": "", "error": None, "budget": None, "review": None,
            })
    return {"rounds": carried, "done": True, "stop_reason": reason_}


# ---- routing (pure functions) -----------------------------------------------------------------
def stop_reason(state: State, ctx: Context) -> str | None:
    rounds = state.get("rounds") or []
    if len(rounds) >= ctx.max_rounds:
        return "max_rounds"
    if ctx.tolerance > 0 and rounds and rounds[-1]["dispersion"] < ctx.tolerance:
        return "converged"
    return None
