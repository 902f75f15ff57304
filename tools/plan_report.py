"""A plan in the analyst's units: the data ``dara allocate`` prints and writes as JSON.

A list of numbers is not a recommendation an analyst can defend. The report gives, per
slot, current and recommended spend to the cent (summing exactly to the budget; more
decimals for budgets under 100, ``tools.money.money_decimals``), the
change, the share of budget, the last observed MROI and the MROI the fitted response
curve predicts at the new spend; the expected change in return with a 95 % interval;
the self-check's flags; and a reason built only from those facts ("moved 20,000 from tv
(MROI 0.8) to search (2.6); social unchanged: its MROI is at the mean"), never from a
model's free text.

Expected uplift: the sum over slots of the integral of each slot's fitted MROI line
(``tools.local_response``) from current to recommended spend. Its interval is
``value +- t(0.975, dof) * se`` with ``se`` from the pooled residual variance. When a slot
the plan moves never varied its spend in the records there is no slope, hence no
interval: ``low``/``high`` are None and a warning names the slots. Too few records to
estimate the noise (no residual degrees of freedom) gives no interval either. A plan that
funds a slot more than 10 % outside the spends the records saw for it gets a warning
naming the slot and that range (:func:`extrapolation_warning`): the curve is extrapolated
there. It is a warning, not a self-check flag: such plans are often right (money belongs
where the returns are) but should be tested in steps.

The JSON schema (``PlanReport.model_json_schema()``) documents the contract; the graph
layer adds ``raw_text``, ``source`` and ``provenance``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy import stats

from tools.money import format_amount, format_ratio, money_decimals, round_money
from tools.self_check import Evidence, Flag, check_plan, fit_evidence, moved_slots
from tools.task import Task

__all__ = ["SlotChange", "Uplift", "PlanReport", "plan_report", "reason_text", "extrapolation_warning"]

#: An unchanged slot's MROI counts as "at the mean" within this share of the MROI range.
AT_MEAN = 0.1
#: A budget this share of B/T or more away from the current total is a budget change the reason names.
BUDGET_CHANGE = 0.005
#: A plan more than this share outside a slot's observed spend range is extrapolated.
EXTRAPOLATION_MARGIN = 0.1


class SlotChange(BaseModel):
    """One row of the plan table."""

    label: str
    current: float = Field(description="Current spend, to the cent (``PlanReport.decimals`` places).")
    recommended: float = Field(description="Recommended spend, to the cent (``PlanReport.decimals`` places).")
    change: float = Field(description="recommended - current, to the same places.")
    share: float = Field(description="recommended / budget.")
    mroi_last: float = Field(description="MROI in the last record (estimated when the records carry returns).")
    mroi_predicted: float | None = Field(description="MROI the fitted response curve predicts at the recommended "
                                                 "spend; null for a moved slot whose spend never varied in the "
                                                 "records (no slope to predict from).")


class Uplift(BaseModel):
    """Expected change in return, recommended vs current, with a 95 % interval when known."""

    value: float
    low: float | None = None
    high: float | None = None


class PlanReport(BaseModel):
    """Everything an analyst needs to read and defend one plan."""

    budget: float
    decimals: int = Field(2, description="Decimal places of every amount: 2 (cents) for budgets of 100 or more, "
                                         "one more per factor of ten below (tools.money.money_decimals).")
    current: list[float] = Field(description="Current allocation per slot (slot order), to ``decimals`` places.")
    plan: list[float] = Field(description="Recommended allocation per slot, summing to the budget to ``decimals`` places.")
    changes: list[SlotChange]
    expected_uplift: Uplift
    flags: list[Flag] = Field(default_factory=list, description="Self-check findings; empty when the plan passes.")
    reason: str = Field(description="Why, from the facts above.")
    warnings: list[str] = Field(default_factory=list, description="Limits of the evidence behind the numbers.")
    notes: list[str] = Field(default_factory=list, description="How figures were obtained, e.g. MROI estimated from returns.")


def _sig(x: float) -> float:
    """Six significant digits: MROI without float noise (1.2, not 1.2000000000000004)."""
    return float(f"{float(x):.6g}")


def _uplift(ev: Evidence, plan: np.ndarray, cur: np.ndarray, labels: list[str], guessed: np.ndarray,
            decimals: int = 2) -> tuple[Uplift, list[str]]:
    """``guessed``: moved slots whose spend never varied (no slope, so no interval)."""
    model = ev.model
    value = float(model.gain(plan, cur).sum())
    _cents = lambda x: round(float(x), decimals)  # noqa: E731
    blind = [labels[t] for t in np.nonzero(guessed)[0]]
    if blind:
        return Uplift(value=_cents(value)), [f"no interval for the expected uplift: the spend of {', '.join(blind)} "
                                     "never varied in the records (no slope estimate)"]
    if model.sigma is None:
        return Uplift(value=_cents(value)), ["no interval for the expected uplift: too few records to estimate "
                                     "their noise (need 3 or more)"]
    se = float(np.sqrt(np.nansum(model.gain_se(plan, cur) ** 2)))
    half = float(stats.t.ppf(0.975, model.dof)) * se
    return Uplift(value=_cents(value), low=_cents(value - half), high=_cents(value + half)), []


def reason_text(rows: list[SlotChange], unit: float, bound_note: dict[str, str] | None = None,
                decimals: int = 2) -> str:
    """A reason built only from the table: what moved where, at which MROI, and why the
    unchanged slots stayed. When the budget differs from the current total, money is added
    or cut, not only moved, and the reason says so."""
    bound_note = bound_note or {}
    delta = np.array([r.change for r in rows])
    losing, gaining = moved_slots(delta, unit)
    net = float(delta.sum())
    off = abs(net) > BUDGET_CHANGE * unit  # the budget differs from the current total
    note = (f"the budget is {format_amount(abs(net), decimals)} {'above' if net > 0 else 'below'} the current "
            "total") if off else ""
    if not (losing.any() or gaining.any()):
        return "no change: the plan keeps the current allocation" + (
            f" (every slot moves by less than 1% of an equal share; {note})" if off else "")

    def side(mask: np.ndarray, first: bool) -> str:
        idx = sorted(np.nonzero(mask)[0], key=lambda t: -abs(delta[t]))
        if len(idx) == 1:
            t = idx[0]
            return f"{rows[t].label} (MROI {format_ratio(rows[t].mroi_last, 2)})" if first else \
                f"{rows[t].label} ({format_ratio(rows[t].mroi_last, 2)})"
        return ", ".join(f"{rows[t].label} (MROI {format_ratio(rows[t].mroi_last, 2)}, "
                         f"{'+' if delta[t] > 0 else '-'}{format_amount(abs(delta[t]), decimals)})" for t in idx)

    gain, loss = float(delta[gaining].sum()), float(-delta[losing].sum())
    if not losing.any():
        parts = [f"added {format_amount(gain, decimals)} to {side(gaining, True)}" + (f" ({note})" if off else "")]
    elif not gaining.any():
        parts = [f"cut {format_amount(loss, decimals)} from {side(losing, True)}" + (f" ({note})" if off else "")]
    else:  # money moved; with a budget change, only what left a slot moved, the rest was added or cut
        moved = min(gain, loss) if off else gain
        parts = [f"moved {format_amount(moved, decimals)} from {side(losing, True)} to {side(gaining, False)}"]
        if off:
            parts.append(f"{'added' if net > 0 else 'cut'} {format_amount(abs(net), decimals)} in all: {note}")
    r = np.array([row.mroi_last for row in rows])
    mean, spread = float(r.mean()), float(r.max() - r.min())
    for t in np.nonzero(~(losing | gaining))[0]:
        label = rows[t].label
        if label in bound_note:
            parts.append(f"{label} unchanged: {bound_note[label]}")
        elif abs(r[t] - mean) <= AT_MEAN * spread:
            parts.append(f"{label} unchanged: its MROI ({format_ratio(r[t], 2)}) is at the mean "
                         f"({format_ratio(mean, 2)})")
        else:
            parts.append(f"{label} unchanged (MROI {format_ratio(r[t], 2)})")
    return "; ".join(parts)


def _bound_notes(task: Task, plan: np.ndarray, cur: np.ndarray) -> dict[str, str]:
    """Which unchanged slots sit at a bound or change limit (that is why they stayed)."""
    lo, hi = task.limits(cur)
    tol = 0.5 * 10.0 ** -money_decimals(task.budget)  # half the last shown digit
    notes = {}
    for t, label in enumerate(task.slot_labels):
        if abs(plan[t] - cur[t]) > tol:
            continue
        if plan[t] >= hi[t] - tol and np.isfinite(hi[t]):
            notes[label] = "at its upper bound" if hi[t] >= task.upper_array[t] - tol else "at its change limit"
        elif plan[t] <= lo[t] + tol and lo[t] > 0:
            notes[label] = "at its lower bound" if lo[t] <= task.lower_array[t] + tol else "at its change limit"
    return notes


def extrapolation_warning(task: Task, plan, margin: float = EXTRAPOLATION_MARGIN, decimals: int = 2) -> str | None:
    """Name every slot the plan funds more than ``margin`` outside the spends the records
    saw for it (with that range): the fitted response there is extrapolated, so its MROI
    and the uplift are guesses the records cannot back. None when every slot is inside."""
    spent = np.array([r.allocation for r in task.history], float)
    if spent.size == 0:
        return None
    lo, hi = spent.min(0), spent.max(0)
    b = np.asarray(plan, float)
    tol = 0.005 * task.unit  # rounding, not a change
    out = np.nonzero((b > hi * (1 + margin) + tol) | (b < lo * (1 - margin) - tol))[0]
    if not len(out):
        return None
    labels = task.slot_labels
    parts = [f"{labels[t]} {format_amount(b[t], decimals)} (records: {format_amount(lo[t], decimals)} to "
             f"{format_amount(hi[t], decimals)})" for t in out]
    return (f"the plan funds {', '.join(parts)} more than {margin:.0%} outside the spends the records saw; "
            "the response there is extrapolated: test the change in steps")


def plan_report(task: Task, plan, current=None) -> PlanReport:
    """Build the report for ``plan`` (T numbers, feasible for ``task``) against ``current``
    (default: the last history allocation)."""
    ev = fit_evidence(task, current)
    labels = task.slot_labels
    cur = np.asarray(ev.current, float)
    b = np.asarray(plan, float)
    if b.shape != (task.periods,) or not np.all(np.isfinite(b)):
        raise ValueError(f"plan: expected {task.periods} finite numbers, got {list(np.ravel(b))[:8]}")
    dec = money_decimals(task.budget)
    plan_c = round_money(b, task.budget, dec)
    cur_c = round_money(cur, decimals=dec)
    mroi_last = np.asarray(ev.task.history[-1].mroi, float)
    mroi_pred = ev.model.mroi(b)
    guessed = ev.unvaried_moves(b)
    rows = [SlotChange(label=labels[t], current=cur_c[t], recommended=plan_c[t],
                       change=round(plan_c[t] - cur_c[t], dec), share=round(plan_c[t] / task.budget, 4),
                       mroi_last=_sig(mroi_last[t]), mroi_predicted=None if guessed[t] else _sig(mroi_pred[t]))
            for t in range(task.periods)]
    uplift, warnings = _uplift(ev, b, cur, labels, guessed, dec)
    extrapolated = extrapolation_warning(task, b, decimals=dec)
    if extrapolated:
        warnings.append(extrapolated)
    return PlanReport(
        budget=float(task.budget), decimals=dec, current=cur_c, plan=plan_c, changes=rows, expected_uplift=uplift,
        flags=check_plan(task, b, evidence=ev),
        reason=reason_text(rows, task.unit, _bound_notes(task, b, cur), dec),
        warnings=warnings, notes=[ev.note] if ev.note else [])
