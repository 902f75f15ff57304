"""The self-check: does a plan contradict the task's own evidence?

Neither a language model nor an optimiser should be trusted blindly with a budget, and
none of the common marketing-mix allocators checks a proposed plan against the data it
came from. This does, with the per-slot local response model
(``tools.local_response``) fitted to the task's records (MROI records, or MROI estimated
from return records by ``tools.returns``):

- ``against_evidence``: the plan takes budget out of a slot whose MROI at current spend is
  higher than that of a slot it puts budget into, by more than the evidence's uncertainty
  (``z`` standard errors of the difference, from the pooled residual spread) plus a
  materiality margin of 2 % of the mean MROI (so float-level ties are never flagged).
- ``lower_return``: the model predicts a lower total return for the plan than for the
  current allocation.
- ``unchecked``: the plan moves budget in or out of a slot whose spend never varied in the
  records; there is no slope estimate for it, so its moves are not judged, and the flag
  says so instead.

An empty list means the plan passes. Each flag is small and JSON-able
(``{kind, slots, numbers, message}``) so graph state, ``--json`` output and Studio carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from tools.local_response import LocalResponse, fit_local_response
from tools.money import format_amount, format_ratio, money_decimals
from tools.returns import mroi_task
from tools.task import Task

__all__ = ["Flag", "Evidence", "fit_evidence", "check_plan", "moved_slots"]

#: Materiality: MROI gaps below this share of the mean |MROI| are never flagged.
MATERIAL = 0.02


class Flag(BaseModel):
    """One finding of the self-check."""

    kind: Literal["against_evidence", "lower_return", "unchecked"] = Field(description="What was found.")
    slots: list[str] = Field(description="Slot labels involved (for against_evidence: the source first).")
    numbers: dict[str, float | None] = Field(default_factory=dict, description="The figures behind it.")
    message: str = Field(description="One sentence for the analyst.")


@dataclass(frozen=True)
class Evidence:
    """A task's records as the checks and the report read them: ``task`` with MROI records
    (estimated when it had returns; ``note`` says how), the fitted ``model``, ``current``."""

    task: Task
    model: LocalResponse
    current: list[float]
    note: str | None = None

    def unvaried_moves(self, plan: np.ndarray) -> np.ndarray:
        """Slots ``plan`` moves (:func:`moved_slots`) whose spend never varied in the
        records: their slope is the fit's default, not evidence, so the self-check does not
        judge them and the report gives them no prediction or interval."""
        losing, gaining = moved_slots(np.asarray(plan, float) - np.asarray(self.current, float), self.task.unit)
        return (losing | gaining) & ~self.model.varied


def fit_evidence(task: Task, current=None) -> Evidence:
    """MROI records (estimated from returns if needed), the fitted local model, and the
    current allocation (default: the last history allocation)."""
    if not task.history:
        raise ValueError("history: the self-check needs at least one record")
    mtask, note = mroi_task(task)
    alloc = np.array([r.allocation for r in mtask.history], float)
    mroi = np.array([r.mroi for r in mtask.history], float)
    model = fit_local_response(alloc, mroi, mtask.unit)
    cur = alloc[-1] if current is None else _vector(current, task, "current")
    return Evidence(task=mtask, model=model, current=[float(v) for v in cur], note=note)


def _vector(values, task: Task, name: str) -> np.ndarray:
    a = np.asarray(values, float)
    if a.shape != (task.periods,) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected {task.periods} finite numbers, got {list(np.ravel(a))[:8]}")
    return a


def moved_slots(delta: np.ndarray, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """(losing, gaining) masks: moves under 1 % of B/T do not count (for budgets in
    millions half a cent is most of a slot: the threshold follows the budget)."""
    tol = 0.01 * unit
    return delta < -tol, delta > tol


def _pm(r: float, se: float) -> str:
    return format_ratio(r) + (f", se {format_ratio(se, 2)}" if np.isfinite(se) and se > 0 else "")


def check_plan(task: Task, plan, current=None, *, z: float = 1.96, evidence: Evidence | None = None) -> list[Flag]:
    """Flags for ``plan`` against ``task``'s records; empty when the plan passes."""
    ev = evidence or fit_evidence(task, current)
    model: LocalResponse = ev.model
    names = task.slot_labels
    cur = np.asarray(ev.current, float)
    b = _vector(plan, task, "plan")
    delta = b - cur
    losing, gaining = moved_slots(delta, task.unit)
    flags: list[Flag] = []
    dec = money_decimals(task.budget)

    unchecked = list(np.nonzero(ev.unvaried_moves(b))[0])
    if unchecked:
        who = [names[t] for t in unchecked]
        flags.append(Flag(
            kind="unchecked", slots=who, numbers={f"{names[t]}.change": float(delta[t]) for t in unchecked},
            message=f"not checked: the spend of {', '.join(who)} never varied in the records, so there is "
                    "no slope estimate for the plan's move there"))

    r, se = model.mroi(cur), model.mroi_se(cur)
    se = np.where(np.isfinite(se), se, 0.0)
    margin = MATERIAL * float(np.mean(np.abs(r)))
    checked_gain = [j for j in np.nonzero(gaining)[0] if model.varied[j]]
    for i in np.nonzero(losing)[0]:
        if not model.varied[i]:
            continue
        worse = [j for j in checked_gain
                 if r[i] - r[j] > z * float(np.hypot(se[i], se[j])) + margin]
        if not worse:
            continue
        numbers = {f"{names[i]}.mroi": float(r[i]), f"{names[i]}.change": float(delta[i])}
        for j in worse:
            numbers[f"{names[j]}.mroi"] = float(r[j])
            numbers[f"{names[j]}.change"] = float(delta[j])
        into = ", ".join(f"{names[j]} (MROI {_pm(r[j], se[j])})" for j in worse)
        flags.append(Flag(
            kind="against_evidence", slots=[names[i]] + [names[j] for j in worse], numbers=numbers,
            message=f"moves {format_amount(-delta[i], dec)} out of {names[i]} (MROI {_pm(r[i], se[i])}) into "
                    f"{into}: the records say {names[i]} returns more per extra unit"))

    gain = model.gain(b, cur)
    total = float(gain.sum())
    scale = float(np.abs(model.level * cur).sum()) or 1.0
    if total < -1e-9 * scale:
        gse = model.gain_se(b, cur)
        s = float(np.sqrt(np.sum(gse**2))) if np.all(np.isfinite(gse)) else None
        numbers = {"expected_change": total, "se": s}
        flags.append(Flag(
            kind="lower_return", slots=[names[t] for t in np.nonzero(losing | gaining)[0]], numbers=numbers,
            message=f"the response curves fitted to the records predict a lower return than the current "
                    f"allocation: {format_amount(total, dec)}" + (f" (+- {format_amount(z * s, dec)})" if s else "")))
    return flags
