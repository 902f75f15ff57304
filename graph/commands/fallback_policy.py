"""``dara allocate --fallback POLICY``: a numeric plan when the model's answer is unusable.

Without it, a round whose model answer cannot be used (unparseable, cut at the token cap,
wrong length, backend error) produces *no new plan*, and ``dara allocate`` says so. With
it, the analyst has asked in advance for a numeric policy's plan in that case; the plan
is then that policy's, and every output says so (``source`` = ``fallback:POLICY``).

:class:`FallbackPolicy` wraps the chat-model policy of the context and is registered by
name (``graph.policy_registry``) for the command's lifetime, so the graph runs it like
any other policy. It logs each decision (in order: one episode, one decision per round),
which is how the command knows which rounds used the fallback and why.
"""

from __future__ import annotations

import dataclasses
import math

from graph.context import Context
from graph.policy_registry import get_policy
from policies.base import Decision, DecisionRequest
from tools.returns import mroi_task


def usable(allocation, periods: int) -> bool:
    """Would the budget tool use this answer (not hold the current plan instead)?"""
    if allocation is None:
        return False
    try:
        values = [float(x) for x in allocation]
    except (TypeError, ValueError):
        return False
    return len(values) == periods and all(math.isfinite(v) for v in values)


def _as_mroi(request: DecisionRequest) -> DecisionRequest:
    """Numeric policies read MROI: a window of return records gets estimated MROI."""
    if not any(r.kind == "return" for r in request.window):
        return request
    window_task = request.task.model_copy(update={"history": list(request.window)})
    converted, _ = mroi_task(window_task)
    task, _ = mroi_task(request.task) if request.task.history else (request.task, None)
    return DecisionRequest(role=request.role, task=task, window=list(converted.history))


class FallbackPolicy:
    """The context's chat-model policy, or ``fallback``'s plan when its answer is unusable."""

    def __init__(self, context: Context, fallback: str):
        self.name = f"llm-or-{fallback}"
        self.fallback = fallback
        self.context = dataclasses.replace(context, reasoner="llm", optimizer="llm")
        self.log: list[dict] = []
        """One entry per decision: ``{"role", "used": bool, "model_error", "text"}``."""

    def propose(self, requests: list[DecisionRequest]) -> list[Decision]:
        from policies.baselines import make_baseline

        out = []
        for request in requests:
            try:
                decision = get_policy(self.context, request.role).propose([request])[0]
            except Exception as e:  # a backend error is one more unusable answer
                decision = Decision(allocation=None, error=f"policy error: {type(e).__name__}: {e}")
            if usable(decision.allocation, request.task.periods):
                self.log.append({"role": request.role, "used": False, "model_error": None, "text": decision.text})
                out.append(decision)
                continue
            why = decision.error or "the answer could not be used"
            numeric = make_baseline(self.fallback).propose([_as_mroi(request)])[0]
            self.log.append({"role": request.role, "used": True, "model_error": why, "text": decision.text})
            out.append(Decision(allocation=numeric.allocation, text=decision.text, error=numeric.error,
                                meta={"fallback": self.fallback, "model_error": why}))
        return out
