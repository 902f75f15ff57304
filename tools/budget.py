"""Budget constraints: the projection every proposal goes through, and a report of why.

Every allocation that reaches an environment must satisfy
``lower <= b <= upper`` and ``sum(b) = B``. A model (or a human) proposes numbers that
often miss: the sum is off, a slot is negative, a bound is crossed, the list has the wrong
length or did not parse at all. ``project`` returns the *nearest* feasible allocation in
Euclidean distance (so a proposal that is almost right is changed almost not at all), and
``enforce_budget`` wraps it with the bookkeeping an analyst needs to read an episode: which
slots were changed, from what to what, and which rule (a bound, the task's ``max_change``
limit on change relative to current spend, or the budget sum) changed each.

The projection onto ``{lo <= b <= hi, sum b = B}`` has the closed form
``b* = clip(b - mu, lo, hi)`` for the unique shift ``mu`` that makes the sum equal ``B``
(KKT of the QP). ``sum_t clip(b_t - mu, lo_t, hi_t)`` is piecewise linear and
non-increasing in ``mu``, so we bisect ``mu`` for all rows at once and finish with an
exact linear interpolation on the last bracket.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from tools.money import format_amount, format_ratio
from tools.task import Task

__all__ = ["project", "enforce_budget", "BudgetReport", "SlotAdjustment"]


def _broadcast_bound(x, shape: tuple[int, int], name: str, default: float) -> np.ndarray:
    if x is None:
        return np.full(shape, default)
    a = np.asarray(x, dtype=float)
    try:
        return np.array(np.broadcast_to(a, shape), dtype=float)
    except ValueError:
        raise ValueError(f"{name} has shape {a.shape}, cannot broadcast to allocations of shape {shape}") from None


def project(
    b: np.ndarray | Sequence[float],
    budget: float | np.ndarray,
    lower: np.ndarray | float | None = None,
    upper: np.ndarray | float | None = None,
    *,
    max_iter: int = 200,
) -> np.ndarray:
    """Euclidean projection of ``b`` onto ``{lower <= x <= upper, sum x = budget}``.

    Works on one allocation ``(T,)`` or a batch ``(N, T)``; ``budget`` is a scalar or
    ``(N,)``; bounds are scalars, ``(T,)`` or ``(N, T)``; ``None`` means ``0`` / ``+inf``
    and ``np.inf`` upper bounds are allowed. Raises ``ValueError`` naming the problem for
    NaN input or bounds that cannot sum to the budget.
    """
    b = np.asarray(b, dtype=float)
    single = b.ndim == 1
    if b.ndim not in (1, 2):
        raise ValueError(f"allocation must be 1-D (T,) or 2-D (N, T), got shape {b.shape}")
    B2 = b[None, :] if single else b
    N, T = B2.shape
    if T == 0:
        raise ValueError("allocation is empty")
    if np.isnan(B2).any():
        n_, t_ = np.argwhere(np.isnan(B2))[0]
        raise ValueError(f"allocation[{n_}, {t_}] is NaN" if not single else f"allocation[{t_}] is NaN")
    lo = _broadcast_bound(lower, (N, T), "lower", 0.0)
    hi = _broadcast_bound(upper, (N, T), "upper", np.inf)
    bud = np.broadcast_to(np.asarray(budget, dtype=float), (N,)).copy()
    if not np.all(np.isfinite(bud)):
        raise ValueError(f"budget must be finite, got {budget!r}")
    if np.isnan(lo).any() or np.isnan(hi).any() or np.isinf(lo).any():
        raise ValueError("lower must be finite and upper must not be NaN")
    if (lo > hi).any():
        n_, t_ = np.argwhere(lo > hi)[0]
        raise ValueError(f"lower[{t_}] = {lo[n_, t_]!r} exceeds upper[{t_}] = {hi[n_, t_]!r} (row {n_})")
    tol = 1e-9 * np.maximum(1.0, np.abs(bud))
    bad = (lo.sum(1) > bud + tol) | (hi.sum(1) < bud - tol)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"bounds cannot sum to budget in row {i}: sum(lower) = {lo[i].sum():.6g}, "
            f"sum(upper) = {hi[i].sum():.6g}, budget = {bud[i]:.6g}"
        )
    # +-inf entries in b: treat as "as much / as little as allowed".
    Bf = np.where(np.isposinf(B2), np.where(np.isfinite(hi), hi, lo + bud[:, None]), B2)
    Bf = np.where(np.isneginf(Bf), lo, Bf)

    # Bracket: at mu_hi everything sits at lower (sum <= B); at mu_lo sum >= B.
    mu_hi = (Bf - lo).max(1)
    mu_lo = (Bf - lo).min(1) - np.maximum(bud, 0.0) - 1.0

    def S(mu):
        return np.clip(Bf - mu[:, None], lo, hi).sum(1)

    s_lo, s_hi = S(mu_lo), S(mu_hi)
    for _ in range(max_iter):
        width = mu_hi - mu_lo
        if np.all(width <= 1e-15 * np.maximum(1.0, np.abs(mu_hi)) + 0.0) or np.all(s_lo - s_hi <= 1e-13 * np.maximum(1.0, np.abs(bud))):
            break
        mid = 0.5 * (mu_lo + mu_hi)
        s = S(mid)
        ge = s >= bud
        mu_lo = np.where(ge, mid, mu_lo)
        s_lo = np.where(ge, s, s_lo)
        mu_hi = np.where(ge, mu_hi, mid)
        s_hi = np.where(ge, s_hi, s)
    gap = s_lo - s_hi
    theta = np.where(gap > 0, (s_lo - bud) / np.where(gap > 0, gap, 1.0), 0.0)
    mu = mu_lo + np.clip(theta, 0.0, 1.0) * (mu_hi - mu_lo)
    out = np.clip(Bf - mu[:, None], lo, hi)
    # Final exact touch-up: spread the rounding residual over slots with room.
    # Prefer slots strictly inside their bounds so exact zeros / bounds stay exact.
    resid = bud - out.sum(1)
    room = np.where(resid[:, None] > 0, hi - out, out - lo)
    inner = (out > lo) & (out < hi)
    free = np.where(inner.any(1, keepdims=True), inner, room > 0)
    k = np.maximum(free.sum(1), 1)
    out = np.clip(out + np.where(free, resid[:, None] / k[:, None], 0.0), lo, hi)
    return out[0] if single else out


class SlotAdjustment(BaseModel):
    """One slot the budget tool changed: from what, to what, and which rule did it."""

    label: str
    proposed: float
    applied: float
    why: Literal["negative", "lower bound", "upper bound", "change limit", "budget sum"] = Field(
        description="The rule that moved the slot: its own bound or change limit, or keeping the sum at B.")


class BudgetReport(BaseModel):
    """What the budget tool did to a proposal, in plain JSON types (fits graph state)."""

    allocation: list[float] = Field(description="The feasible allocation actually applied.")
    changed: bool = Field(description="True when the allocation differs from the (parsed) proposal.")
    reasons: list[str] = Field(default_factory=list, description="Human-readable reasons for each change.")
    max_abs_change: float = Field(0.0, description="Largest per-slot change vs the proposal (or fallback).")
    used_fallback: bool = Field(False, description="True when the proposal was missing or unusable.")
    adjustments: list[SlotAdjustment] = Field(
        default_factory=list, description="Every slot that changed, with the rule that changed it.")


def _fmt(x: float) -> str:
    """Money in a message: to the cent from 100 up, else 4 significant digits (a budget
    written in millions must not read 0.06 for 0.0625)."""
    return format_amount(x) if abs(x) >= 100 or x == 0 else format_ratio(x, 4)


def _feasible_limits(task: Task, current) -> tuple[np.ndarray, np.ndarray]:
    """[lower, upper] intersected with the ``max_change`` window; a clear error if empty."""
    lo, hi = task.limits(current)
    B = float(task.budget)
    tol = 1e-9 * max(1.0, B)
    names = task.slot_labels
    for t in np.nonzero(lo > hi + tol)[0]:
        raise ValueError(f"max_change: {names[t]} may move only within [{_fmt(lo[t])}, {_fmt(hi[t])}]"
                         " of its current spend and bounds, an empty range")
    if lo.sum() > B + tol or hi.sum() < B - tol:
        raise ValueError(f"max_change: with the bounds, the limits allow totals from {_fmt(lo.sum())} "
                         f"to {_fmt(hi.sum())}, which excludes budget {_fmt(B)}")
    return lo, np.maximum(hi, lo)


def enforce_budget(
    proposal: Sequence[float] | None,
    task: Task,
    fallback: Sequence[float] | None = None,
    current: Sequence[float] | None = None,
) -> BudgetReport:
    """Make ``proposal`` feasible for ``task`` and say exactly what changed and why.

    Feasible means within [lower, upper], within the task's ``max_change`` limits around
    ``current`` (default: the last history allocation) and summing to the budget.
    A missing (``None``), wrong-length or non-finite proposal is replaced by ``fallback``
    (itself projected; if the fallback is unusable too, the uniform split ``B/T``), and
    the reason is recorded; the function never raises on a bad proposal because one
    malformed model output must not kill a batch of episodes. It raises ``ValueError``
    only when the limits themselves leave no feasible allocation for this ``current``.
    """
    T, B = task.periods, float(task.budget)
    lo, hi = _feasible_limits(task, current)
    task_lo, task_hi = task.lower_array, task.upper_array
    names = task.slot_labels
    reasons: list[str] = []
    used_fallback = False

    base: np.ndarray | None = None
    if proposal is None:
        reasons.append("no proposal (output did not parse); used fallback")
    else:
        try:
            arr = np.asarray(list(proposal), dtype=float)
        except (TypeError, ValueError):
            arr = None
            reasons.append("proposal is not a list of numbers; used fallback")
        if arr is not None:
            if arr.ndim != 1 or arr.size != T:
                reasons.append(f"proposal has {arr.size} values, expected periods={T}; used fallback")
            elif not np.all(np.isfinite(arr)):
                t = int(np.argmax(~np.isfinite(arr)))
                reasons.append(f"proposal {names[t]} is {arr[t]!r} (not finite); used fallback")
            else:
                base = arr
    if base is None:
        used_fallback = True
        fb = None
        if fallback is not None:
            try:
                fb = np.asarray(list(fallback), dtype=float)
            except (TypeError, ValueError):
                fb = None
            if fb is not None and (fb.ndim != 1 or fb.size != T or not np.all(np.isfinite(fb))):
                fb = None
        if fb is None:
            reasons.append(f"fallback unusable or missing; used the uniform split {_fmt(B / T)} per slot")
            fb = np.full(T, B / T)
        base = fb

    out = project(base, B, lo, hi)
    tol = 1e-9 * max(1.0, abs(B))
    moved = np.abs(out - base) > tol
    why: dict[int, str] = {}
    for t in range(T):
        x = base[t]
        if x < 0 and lo[t] <= 0:
            reasons.append(f"negative spend in {names[t]} ({_fmt(x)}) raised to {_fmt(out[t])}")
            why[t] = "negative"
        elif x < lo[t] - tol:
            if lo[t] > task_lo[t]:
                why[t] = "change limit"
                reasons.append(f"{names[t]} below its change limit {_fmt(lo[t])} (was {_fmt(x)}), raised to {_fmt(out[t])}")
            else:
                why[t] = "lower bound"
                reasons.append(f"{names[t]} below lower bound {_fmt(lo[t])} (was {_fmt(x)}), raised to {_fmt(out[t])}")
        elif x > hi[t] + tol:
            if hi[t] < task_hi[t]:
                why[t] = "change limit"
                reasons.append(f"{names[t]} above its change limit {_fmt(hi[t])} (was {_fmt(x)}), lowered to {_fmt(out[t])}")
            else:
                why[t] = "upper bound"
                reasons.append(f"{names[t]} above upper bound {_fmt(hi[t])} (was {_fmt(x)}), lowered to {_fmt(out[t])}")
    # Slots moved only to keep the sum at B: name each, with its old and new value.
    others = [t for t in range(T) if moved[t] and t not in why]
    detail = ", ".join(f"{names[t]} {_fmt(base[t])} -> {_fmt(out[t])}" for t in others)
    s = float(base.sum())
    if abs(s - B) > tol:
        reasons.append(f"sum was {_fmt(s)}, moved to budget {_fmt(B)} (nearest feasible allocation)"
                       + (f": {detail}" if detail else ""))
    elif others and not used_fallback:
        reasons.append(f"{detail} to keep the sum at budget {_fmt(B)}")
    change = float(np.max(np.abs(out - base)))
    changed = change > tol
    if not changed and not used_fallback:
        reasons = []
    adjustments = [SlotAdjustment(label=names[t], proposed=float(base[t]), applied=float(out[t]),
                                  why=why.get(t, "budget sum")) for t in range(T) if moved[t]]
    return BudgetReport(
        allocation=[float(x) for x in out],
        changed=bool(changed or used_fallback),
        reasons=reasons,
        max_abs_change=change,
        used_fallback=used_fallback,
        adjustments=adjustments,
    )
