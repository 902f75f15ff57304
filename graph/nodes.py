"""Nodes of the DARA graph. Each returns only the state keys it changes.

``setup`` -> ``reason`` -> ``enforce_budget`` -> ``self_check`` -> [``review``] ->
``query_env`` -> (``optimize`` -> ``enforce_budget`` -> ... | ``finish``).

- ``reason`` / ``optimize`` ask a :class:`policies.base.Policy` (an LLM policy or a
  numeric baseline) for a proposal, found in ``graph.policy_registry`` (built once per
  process, so Studio and ``dara run`` load a model once). Model calls happen in these *sync*
  nodes: local torch inference inside an ``async`` node trips ``langgraph dev``'s
  blocking-call check.
- ``enforce_budget`` (tool node): ``tools.budget.enforce_budget`` turns the proposal into
  a feasible allocation (bounds, ``max_change`` limits around the current plan, sum = B)
  and says what it changed and why; an unusable proposal holds the current plan (source
  ``fallback``, ``no_plan``), or with ``context.fallback`` takes that numeric policy's plan.
- ``self_check`` (tool node): ``tools.self_check.check_plan`` judges the plan against the
  records pool so far (history + applied rounds) and records the ``flags``; with
  ``context.on_flag`` a flagged plan is replaced by that numeric policy's plan.
- ``review`` (only with ``context.approval``): a human approves or edits the plan.
- ``query_env`` (tool node): applies the plan and records the feedback (simulator or
  live, ``graph.feedback``; a live ``return`` observation becomes MROI with
  ``tools.returns.estimate_mroi`` over the pool's return records).
- ``finish``: marks the episode done; after an early stop it repeats the last allocation
  (source ``carried``) so every episode reports ``max_rounds`` rounds.
"""

from __future__ import annotations

import traceback
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from graph import feedback as fb
from graph.context import Context, get_context, llm_roles
from graph.policy_registry import get_policy
from graph.provenance import range_warnings
from graph.state import State
from policies.base import Decision, DecisionRequest
from tools.budget import enforce_budget as _enforce_budget
from tools.metrics import dispersion as _dispersion
from tools.returns import estimate_mroi, mroi_task
from tools.self_check import check_plan
from tools.task import Record, Task, load_task


# ---- helpers ----------------------------------------------------------------------------------
def planning_task(state: State) -> Task:
    """The task the planners see: the input task, with MROI records (estimated ones when
    the input's records carry returns, see ``state["mroi_estimate"]``)."""
    task = Task.model_validate(state["task"])
    est = state.get("mroi_estimate")
    if est:
        history = [Record(allocation=list(r.allocation), mroi=m) for r, m in zip(task.history, est["history_mroi"])]
        task = task.model_copy(update={"history": history})
    return task


def records_pool(state: State) -> list[tuple[str, Record]]:
    """History followed by applied rounds, each with a label for the analyst."""
    task = planning_task(state)
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


def _request(state: State, ctx: Context, role: str) -> tuple[list[tuple[str, Record]], DecisionRequest]:
    task = planning_task(state)
    if role == "reasoner":
        labelled = [(f"history[{i}]", r) for i, r in enumerate(task.history)]
    else:
        labelled = records_pool(state)[-ctx.window:]
    return labelled, DecisionRequest(role=role, task=task, window=[r for _, r in labelled])


def _ask(ctx: Context, role: str, request: DecisionRequest, name: str | None = None) -> Decision:
    """One decision; a failing policy becomes a recorded error (a batch never dies)."""
    policy_name = name or (ctx.reasoner if role == "reasoner" else ctx.optimizer)
    try:
        if not request.window and policy_name != "llm":
            # Numeric baselines need a record; with no history the uniform split is the plan.
            return Decision(allocation=None, text="", error="no history: nothing to reason from")
        return get_policy(ctx, role, name).propose([request])[0]
    except Exception as e:
        return Decision(allocation=None, text="", error=f"policy error: {type(e).__name__}: {e}",
                        meta={"traceback": traceback.format_exc(limit=3)})


def _budget_record(report) -> dict:
    return {"changed": report.changed, "reasons": list(report.reasons), "max_abs_change": report.max_abs_change,
            "used_fallback": report.used_fallback, "adjustments": [a.model_dump() for a in report.adjustments]}


def plan_flags(state: State, task: Task, allocation, current) -> list[dict]:
    """Self-check flags of ``allocation`` against the records pool (history + applied
    rounds); no records, nothing to check against: no flags."""
    pool = [r for _, r in records_pool(state)]
    if not pool or current is None:
        return []
    pooled = task.model_copy(update={"history": pool})
    return [f.model_dump() for f in check_plan(pooled, allocation, current)]


def _numeric_plan(state: State, ctx: Context, role: str, name: str, task: Task, current) -> dict | None:
    """The plan of numeric policy ``name`` for this round, through the budget tool; None
    when it has no usable proposal either."""
    _, request = _request(state, ctx, role)
    decision = _ask(ctx, role, request, name)
    if decision.allocation is None:
        return None
    report = _enforce_budget(decision.allocation, task, fallback=current, current=current)
    if report.used_fallback:
        return None
    return {"proposal": [float(x) for x in decision.allocation], "budget": _budget_record(report),
            "allocation": list(report.allocation)}


def _decide(state: State, runtime: Runtime[Context], role: str) -> dict:
    ctx = get_context(runtime)
    k = len(state.get("rounds") or []) + 1
    labelled, request = _request(state, ctx, role)
    decision = _ask(ctx, role, request)
    proposal = None if decision.allocation is None else [float(x) for x in decision.allocation]
    pending = {
        "round": k,
        "role": role,
        "source": role,
        "no_plan": False,
        "window": [label for label, _ in labelled],
        "proposal": proposal,
        "text": decision.text or "",
        "error": decision.error,
    }
    rejected = (decision.meta or {}).get("rejected_answers")
    if rejected:  # answers the decoder rejected before this one (or after it, when none decoded)
        pending["rejected_answers"] = rejected
    clipped = (decision.meta or {}).get("clipped_to_zero")
    if clipped:  # a delta answer cut these slots below zero; the decoder stopped them at 0
        pending["clipped_to_zero"] = [int(t) for t in clipped]
    return {"pending": pending}


# ---- nodes ------------------------------------------------------------------------------------
def setup(state: State, runtime: Runtime[Context]) -> dict:
    """Validate the input; complete the env spec; derive the task from the env if absent;
    estimate MROI once when the task's records carry returns."""
    ctx = get_context(runtime)
    env = fb.normalise_env(state.get("env"))
    if state.get("task") is None:
        if env is None:
            raise ValueError("input needs a 'task' (task contract JSON) or an 'env' (environment spec)")
        task = fb.get_env(env).task(0)
    else:
        task = load_task(state["task"], require_history=False)  # one-line errors, units checked
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
                           "stop_reason": None, "pending": None, "mroi_estimate": None}
    if task.observes == "return":
        mtask, note = mroi_task(task)
        out["mroi_estimate"] = {"note": note, "history_mroi": [list(r.mroi) for r in mtask.history]}
    out["allocation"] = list(task.history[-1].allocation) if task.history else None
    out["warnings"] = range_warnings(task.periods, ctx, llm_roles(ctx))  # shown in Studio beside the rounds
    if env is not None and ctx.feedback == "simulator":
        out["oracle"] = fb.oracle(env)
    return out


def reason(state: State, runtime: Runtime[Context]) -> dict:
    """Few-shot Reasoner: the task's history -> round-1 proposal."""
    return _decide(state, runtime, "reasoner")


def optimize(state: State, runtime: Runtime[Context]) -> dict:
    """Fine-grained Optimizer: the last ``w`` records -> refined proposal."""
    return _decide(state, runtime, "optimizer")


def enforce_budget(state: State, runtime: Runtime[Context]) -> dict:
    """Tool node: parse errors, bounds, change limits, sum = B -> feasible allocation, with
    reasons; an unusable proposal holds the current plan or takes ``context.fallback``'s."""
    ctx = get_context(runtime)
    task = planning_task(state)
    pending = dict(state["pending"])
    current = _current(state, task)
    report = _enforce_budget(pending.get("proposal"), task, fallback=current, current=current)
    budget = _budget_record(report)
    clipped = pending.get("clipped_to_zero") or []
    if clipped:
        cut = ", ".join(task.slot_labels[t - 1] for t in clipped)
        budget["reasons"].insert(0, f"the answer cut {cut} below zero; clipped to 0")
        budget["changed"] = True
    pending.update(budget=budget, allocation=list(report.allocation), replaced=None)
    if report.used_fallback:
        if pending.get("error") is None:
            pending["error"] = "; ".join(report.reasons) or "proposal unusable"
        pending.update(source="fallback", no_plan=True)
        if ctx.fallback is not None:
            numeric = _numeric_plan(state, ctx, pending["role"], ctx.fallback, task, current)
            if numeric is None:
                pending["error"] += f"; fallback policy {ctx.fallback} had no usable plan either"
            else:
                pending["replaced"] = {"source": pending["role"], "proposal": pending["proposal"],
                                       "allocation": None, "flags": [], "budget": budget}
                pending.update(source=f"fallback:{ctx.fallback}", no_plan=False, **numeric)
    return {"pending": pending}


def self_check(state: State, runtime: Runtime[Context]) -> dict:
    """Tool node: flag a plan that contradicts the records; with ``context.on_flag`` set to
    a numeric policy, replace a flagged plan by that policy's (through the budget tool)."""
    ctx = get_context(runtime)
    task = planning_task(state)
    pending = dict(state["pending"])
    current = _current(state, task)
    flags = plan_flags(state, task, pending["allocation"], current)
    pending["flags"] = flags
    own = ctx.reasoner if pending["role"] == "reasoner" else ctx.optimizer
    # never "replace" a plan by the same policy's plan
    same = pending["source"] == f"fallback:{ctx.on_flag}" or (pending["source"] == pending["role"]
                                                              and own == ctx.on_flag)
    if flags and ctx.on_flag != "warn" and not same:
        numeric = _numeric_plan(state, ctx, pending["role"], ctx.on_flag, task, current)
        if numeric is None:
            pending["on_flag_error"] = (f"on_flag policy {ctx.on_flag} had no usable plan; "
                                        "the flagged plan stands")
        else:
            pending["replaced"] = {k: pending.get(k) for k in ("source", "proposal", "allocation", "flags", "budget")}
            pending.update(source=f"self-check:{ctx.on_flag}", no_plan=False, **numeric,
                           flags=plan_flags(state, task, numeric["allocation"], current))
    return {"pending": pending}


def review(state: State) -> dict:
    """Human approval/edit of the plan before it is applied (``context.approval``). An
    edit goes through the budget tool (``adjustments`` say exactly which slots it moved
    and by which rule) and the self-check (warnings only: a human's edit is not replaced)."""
    task = planning_task(state)
    pending = dict(state["pending"])
    answer = fb.ask_review(task, pending["allocation"], pending["round"], pending)
    rev: dict[str, Any] = {"approved": True, "edited": answer["edited"]}
    if answer["edited"]:
        current = _current(state, task)
        report = _enforce_budget(answer["allocation"], task, fallback=pending["allocation"], current=current)
        rev["proposal"] = answer["allocation"]
        rev["budget"] = _budget_record(report)
        pending["allocation"] = list(report.allocation)
        pending["flags"] = rev["flags"] = plan_flags(state, task, pending["allocation"], current)
    pending["review"] = rev
    return {"pending": pending}


def _mroi_from_return(state: State, task: Task, allocation, observed: list[float]) -> list[float]:
    """MROI for a live return observation: ``tools.returns.estimate_mroi`` over every record
    of the pool that carries a return (the history's when it has returns, live rounds'),
    this one last."""
    given = Task.model_validate(state["task"])
    allocs = [list(r.allocation) for r in given.history if r.return_ is not None]
    rets = [list(r.return_) for r in given.history if r.return_ is not None]
    for r in state.get("rounds") or []:
        if r.get("observed_return") is not None and r.get("source") != "carried":
            allocs.append(r["allocation"])
            rets.append(r["observed_return"])
    est = estimate_mroi(np.array(allocs + [allocation], float), np.array(rets + [observed], float),
                        task.unit, task.slot_labels)
    return [float(x) for x in est.mroi[-1]]


def query_env(state: State, runtime: Runtime[Context]) -> dict:
    """Tool node: apply the plan, observe MROI (simulator or live), record the round."""
    ctx = get_context(runtime)
    task = planning_task(state)
    pending = dict(state["pending"])
    alloc = pending["allocation"]
    k = pending["round"]
    metrics = None
    observed_return = None
    if ctx.feedback == "live":
        kind, values = fb.ask_live(task, alloc, k, pending.get("budget") or {}, pending.get("flags") or [])
        if kind == "return":
            observed_return = values
            mroi = _mroi_from_return(state, task, alloc, values)
        else:
            mroi = values
    else:
        if state.get("env") is None:
            raise ValueError("simulator feedback needs an 'env' in the state")
        mroi, metrics = fb.simulate(state["env"], alloc, ctx.seed, k)
    rnd = {
        "round": k,
        "role": pending["role"],
        "source": pending["source"],
        "no_plan": bool(pending.get("no_plan")),
        "window": pending.get("window", []),
        "proposal": pending.get("proposal"),
        "text": pending.get("text", ""),
        "error": pending.get("error"),
        "rejected_answers": pending.get("rejected_answers") or [],
        "budget": pending.get("budget"),
        "flags": pending.get("flags") or [],
        "replaced": pending.get("replaced"),
        "review": pending.get("review"),
        "allocation": alloc,
        "mroi": mroi,
        "observed_return": observed_return,
        "dispersion": float(_dispersion(mroi)),
        "metrics": metrics,
    }
    if pending.get("on_flag_error"):
        rnd["on_flag_error"] = pending["on_flag_error"]
    return {"rounds": [rnd], "allocation": alloc, "pending": None}


def finish(state: State, runtime: Runtime[Context]) -> dict:
    """Mark the episode done; carry the last allocation forward to ``max_rounds`` rounds."""
    ctx = get_context(runtime)
    rounds = state.get("rounds") or []
    reason_ = stop_reason(state, ctx)
    carried = []
    if rounds:
        last = {key: v for key, v in rounds[-1].items() if key != "on_flag_error"}
        for k in range(len(rounds) + 1, ctx.max_rounds + 1):
            carried.append({
                **last, "round": k, "source": "carried", "role": None, "window": [], "no_plan": False,
                "proposal": None, "text": "", "error": None, "rejected_answers": [], "budget": None, "review": None,
                "flags": [], "replaced": None, "observed_return": None,
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
