"""Feedback providers for the ``query_env`` node, and the human review of a plan.

- **simulator**: rebuild the environment from the JSON spec kept in state
  (``tools.envs.cache.cached_env_from_spec``, one cache per process shared with the
  langchain tools) and observe ``MROI_t(b_t)`` (with the family's feedback
  noise, seeded by ``(context.seed, env index, round)``). Any generated family works,
  synthetic or data-driven. User-supplied curves (family ``curves``) are Python
  callables and cannot live in JSON state: register them in-process with
  :func:`register_curves` under the spec's ``kw["curves_id"]`` (Python API only; Studio
  and ``dara run`` cannot serve them).
- **live**: the graph pauses with ``interrupt({"apply": allocation, ...})``; the caller
  applies the plan to the real campaign and resumes with
  ``Command(resume={"mroi": [...]})``, or with ``{"return": [...]}`` (the return observed
  per slot, which the graph turns into MROI, see ``graph.nodes.query_env``). A malformed
  answer is not fatal: the graph pauses again with the same request plus ``"error"``
  naming the problem, so the caller re-asks.
- **review** (``context.approval``): before an allocation is applied the graph pauses
  with ``{"review": allocation, ...}``; resume with ``True`` / ``{"approve": True}`` to
  apply it, or ``{"allocation": [...]}`` to apply an edited plan (which goes through the
  budget tool again; the round's ``review.budget.adjustments`` say what it changed).
"""

from __future__ import annotations

import json
import math
import threading
from functools import lru_cache
from typing import Any, Callable

import numpy as np
from langgraph.types import interrupt

from tools.envs import make_envs
from tools.envs.cache import cached_env_from_spec
from tools.task import Task

_CURVES: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def register_curves(curves_id: str, mroi_fns: list[Callable], value_fns: list[Callable] | None = None) -> None:
    """Make user curves available to simulator feedback in this process (Python only)."""
    _CURVES[curves_id] = {"mroi_fns": list(mroi_fns), **({"value_fns": list(value_fns)} if value_fns else {})}


# ---- simulator ------------------------------------------------------------------------------
def normalise_env(env: dict | None) -> dict | None:
    """Complete a partial env spec (``{"family": "quadratic", "seed": 3}``) into a full
    ``EnvBatch.spec`` with ``"index"``; errors name the bad field."""
    if env is None:
        return None
    if not isinstance(env, dict):
        raise ValueError(f"env must be an object (an EnvBatch spec), got {type(env).__name__}")
    env = dict(env)
    index = env.pop("index", 0)
    if isinstance(index, float) and index.is_integer():
        index = int(index)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"env.index must be a non-negative integer, got {index!r}")
    if "family" not in env:
        raise ValueError("env needs a 'family' (e.g. {\"family\": \"quadratic\", \"seed\": 0})")
    full = {"n", "periods", "budget", "seed", "noise", "history", "kw"}
    if not full <= set(env):
        known = {"family", "n", "periods", "budget", "seed", "noise", "history", "kw", "rows"}
        unknown = sorted(set(env) - known)
        if unknown:
            raise ValueError(f"unknown env field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        kw = dict(env.get("kw") or {})
        if env["family"] == "curves":
            kw.update(_curves_for(kw))
        args = {k: env[k] for k in ("periods", "budget", "seed", "noise", "history") if k in env}
        n = max(int(env.get("n", index + 1)), index + 1)
        spec = make_envs(env["family"], n, **args, **kw).spec
    else:
        spec = env
    spec = json.loads(json.dumps(spec))  # plain JSON types only
    rows = spec.get("rows")
    n = len(rows) if rows is not None else int(spec["n"])
    if index >= n:
        raise ValueError(f"env.index = {index} out of range for a batch of n = {n}")
    spec["index"] = index
    return spec


def _curves_for(kw: dict) -> dict:
    cid = kw.get("curves_id")
    if cid not in _CURVES:
        raise ValueError(
            "family 'curves' needs Python callables: call graph.feedback.register_curves(id, mroi_fns) "
            f"and put kw={{'curves_id': id}} in the env spec (got curves_id={cid!r})"
        )
    return _CURVES[cid]


def get_env(env: dict):
    """The one-environment batch of a normalised env spec (cached per process)."""
    spec = dict(env)
    index = spec.pop("index", 0)
    extra = _curves_for(spec.get("kw", {})) if spec["family"] == "curves" else {}
    return cached_env_from_spec(spec, index, **extra)


@lru_cache(maxsize=512)
def _oracle_cached(spec_json: str) -> tuple[tuple[float, ...], float]:
    from tools.oracle import oracle_allocation

    env = get_env(json.loads(spec_json))
    b = oracle_allocation(env)
    return tuple(float(x) for x in b[0]), float(env.value(b)[0])


def oracle(env: dict) -> dict:
    with _lock:
        b, v = _oracle_cached(json.dumps(env, sort_keys=True))
    return {"allocation": list(b), "value": v}


def simulate(env: dict, allocation: list[float], seed: int, round_: int) -> tuple[list[float], dict]:
    """Observe MROI for ``allocation`` and score it (metrics use the noiseless MROI)."""
    from tools.metrics import round_metrics

    e = get_env(env)
    b = np.asarray([allocation], float)
    rng = np.random.default_rng([int(seed), int(env.get("index", 0)), int(round_)])
    r = e.observe(b, rng)[0]
    star = np.asarray([oracle(env)["allocation"]], float)
    m = round_metrics(e, b, star)
    return [float(x) for x in r], {k: float(v[0]) for k, v in m.items()}


# ---- live ----------------------------------------------------------------------------------
OBSERVATIONS = ("mroi", "return")


def parse_observation(value: Any, periods: int) -> tuple[str, list[float]]:
    """Validate a live-feedback answer ``{"mroi": [...]}`` or ``{"return": [...]}`` (a bare
    list is MROI); returns ``(kind, values)``; errors say what is expected."""
    expect = f"resume with {{\"mroi\": [{periods} numbers]}} or {{\"return\": [{periods} numbers]}}"
    kind = "mroi"
    if isinstance(value, dict):
        given = [k for k in OBSERVATIONS if k in value]
        if len(given) != 1:
            raise ValueError(f"{expect}; got keys {sorted(value)}")
        kind = given[0]
        value = value[kind]
    elif not isinstance(value, (list, tuple)):
        raise ValueError(f"{expect}; got {value!r}")
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{kind} must be a list of {periods} numbers, got {value!r}")
    if len(value) != periods:
        raise ValueError(f"{kind} has {len(value)} values, expected periods = {periods}")
    out = []
    for i, x in enumerate(value):
        try:
            f = float(x)
        except (TypeError, ValueError):
            raise ValueError(f"{kind}[{i}] = {x!r} is not a number") from None
        if isinstance(x, bool) or not math.isfinite(f):
            raise ValueError(f"{kind}[{i}] = {x!r} is not a finite number")
        if kind == "return" and f < 0:
            raise ValueError(f"return[{i}] = {x!r}: a return (revenue) is a number >= 0")
        out.append(f)
    return kind, out


def ask_live(task: Task, allocation: list[float], round_: int, budget_report: dict,
             flags: list[dict] | None = None) -> tuple[str, list[float]]:
    """Pause until the caller reports what it observed for ``allocation``: ``(kind, values)``."""
    request = {
        "apply": allocation,
        "round": round_,
        "labels": task.slot_labels,
        "budget": budget_report,
        "flags": list(flags or []),
        "resume_with": {"mroi": f"[{task.periods} observed marginal ROI values, one per slot]",
                        "return": f"or [{task.periods} observed returns (revenue), one per slot]"},
    }
    while True:
        answer = interrupt(request)
        try:
            return parse_observation(answer, task.periods)
        except ValueError as e:
            request = {**request, "error": str(e)}


def ask_review(task: Task, allocation: list[float], round_: int, pending: dict) -> dict:
    """Pause for approval/edit; returns ``{"approved": True, "edited": bool, "allocation"?}``."""
    request = {
        "review": allocation,
        "round": round_,
        "labels": task.slot_labels,
        "proposal": pending.get("proposal"),
        "text": pending.get("text", ""),
        "budget": pending.get("budget"),
        "flags": pending.get("flags") or [],
        "source": pending.get("source"),
        "resume_with": "true to apply, or {\"allocation\": [...]} to apply an edited plan",
    }
    while True:
        answer = interrupt(request)
        try:
            return _parse_review(answer, task.periods)
        except ValueError as e:
            request = {**request, "error": str(e)}


def _parse_review(answer: Any, periods: int) -> dict:
    if answer is True or (isinstance(answer, str) and answer.strip().lower() in ("y", "yes", "approve", "ok")):
        return {"approved": True, "edited": False}
    if isinstance(answer, dict):
        if "allocation" in answer:
            alloc = answer["allocation"]
            if not isinstance(alloc, (list, tuple)) or len(alloc) != periods:
                n = len(alloc) if isinstance(alloc, (list, tuple)) else alloc
                raise ValueError(f"allocation must be a list of periods = {periods} numbers, got {n!r}")
            vals = []
            for i, x in enumerate(alloc):
                try:
                    f = float(x)
                except (TypeError, ValueError):
                    raise ValueError(f"allocation[{i}] = {x!r} is not a number") from None
                if isinstance(x, bool) or not math.isfinite(f):
                    raise ValueError(f"allocation[{i}] = {x!r} is not a finite number")
                vals.append(f)
            return {"approved": True, "edited": True, "allocation": vals}
        if answer.get("approve") is True:
            return {"approved": True, "edited": False}
    raise ValueError(f"resume with true (apply) or {{\"allocation\": [{periods} numbers]}} (edit); got {answer!r}")
