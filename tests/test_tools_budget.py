"""Projection and budget-tool properties (hypothesis) — the constraint code every
proposal passes through."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import minimize

from tools.budget import BudgetReport, enforce_budget, project
from tools.task import Task

finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False)


@st.composite
def instances(draw, max_T=5):
    T = draw(st.integers(1, max_T))
    b = np.array(draw(st.lists(finite, min_size=T, max_size=T)))
    lo = np.array(draw(st.lists(st.floats(0, 1), min_size=T, max_size=T)))
    width = np.array(draw(st.lists(st.one_of(st.just(np.inf), st.floats(0, 3)), min_size=T, max_size=T)))
    hi = lo + width
    frac = draw(st.floats(0, 1))
    top = hi.sum() if np.isfinite(hi.sum()) else lo.sum() + 10
    B = lo.sum() + frac * (top - lo.sum())
    if B <= 0:
        B = lo.sum() + 0.5 if np.isinf(hi).any() or hi.sum() >= lo.sum() + 0.5 else hi.sum()
    return b, float(B), lo, hi


@settings(max_examples=150, deadline=None)
@given(instances())
def test_projection_feasible_and_idempotent(inst):
    b, B, lo, hi = inst
    x = project(b, B, lo, hi)
    tol = 1e-9 * max(1, B)
    assert abs(x.sum() - B) <= tol
    assert np.all(x >= lo - 1e-12) and np.all(x <= hi + 1e-12)
    assert np.allclose(project(x, B, lo, hi), x, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(instances(max_T=4))
def test_projection_is_nearest_point(inst):
    b, B, lo, hi = inst
    x = project(b, B, lo, hi)
    bounds = [(l, h if np.isfinite(h) else None) for l, h in zip(lo, hi)]
    x0 = project(np.full(b.size, B / b.size), B, lo, hi)
    res = minimize(
        lambda y: 0.5 * np.sum((y - b) ** 2), x0, jac=lambda y: y - b, bounds=bounds,
        constraints=[{"type": "eq", "fun": lambda y: y.sum() - B, "jac": lambda y: np.ones_like(y)}],
        method="SLSQP", options={"ftol": 1e-14, "maxiter": 500},
    )
    d_ours = np.sum((x - b) ** 2)
    d_qp = np.sum((res.x - b) ** 2)
    assert d_ours <= d_qp + 1e-7 * max(1.0, d_qp)


def test_projection_batch_matches_rows_and_handles_inf():
    rng = np.random.default_rng(0)
    b = rng.normal(1, 2, size=(50, 6))
    lo = rng.uniform(0, 0.5, size=(50, 6))
    hi = np.where(rng.random((50, 6)) < 0.5, np.inf, lo + rng.uniform(0.5, 3, size=(50, 6)))
    B = rng.uniform(3, 6, size=50)
    X = project(b, B, lo, hi)
    for i in range(50):
        assert np.allclose(X[i], project(b[i], B[i], lo[i], hi[i]), atol=1e-12)
    assert np.allclose(X.sum(1), B)


def test_projection_leaves_feasible_point_alone_and_keeps_zeros_exact():
    x = np.array([0.0, 2.0, 4.0])
    assert np.array_equal(project(x, 6.0), x)


def test_projection_errors():
    with pytest.raises(ValueError, match="NaN"):
        project([1.0, np.nan], 1.0)
    with pytest.raises(ValueError, match="cannot sum"):
        project([1.0, 1.0], 5.0, 0.0, [1.0, 1.0])
    with pytest.raises(ValueError, match="exceeds"):
        project([1.0, 1.0], 1.0, [2.0, 0.0], [1.0, 1.0])


def _task(**kw):
    base = {"budget": 6.0, "periods": 3}
    base.update(kw)
    return Task(**base)


def test_enforce_budget_reasons():
    t = _task(lower=[0.5, 0.0, 0.0], upper=[4.0, 4.0, 1.0])
    rep = enforce_budget([0.2, -1.0, 3.0], t, [2, 2, 2])
    assert isinstance(rep, BudgetReport)
    assert rep.changed and not rep.used_fallback
    assert abs(sum(rep.allocation) - 6) < 1e-9
    text = " | ".join(rep.reasons)
    assert "slot1 below lower bound 0.5" in text
    assert "negative spend in slot2" in text
    assert "slot3 above upper bound 1" in text
    assert "sum was 2.2" in text
    assert rep.max_abs_change > 0


def test_enforce_budget_unchanged_and_fallbacks():
    t = _task(labels=["tv", "radio", "web"])
    rep = enforce_budget([1.0, 2.0, 3.0], t, [2, 2, 2])
    assert not rep.changed and rep.reasons == [] and rep.allocation == [1.0, 2.0, 3.0]
    rep = enforce_budget(None, t, [2, 2, 2])
    assert rep.used_fallback and rep.allocation == [2.0, 2.0, 2.0] and "did not parse" in rep.reasons[0]
    rep = enforce_budget([1, 2], t, [3, 3, 3])
    assert rep.used_fallback and "expected periods=3" in rep.reasons[0]
    assert abs(sum(rep.allocation) - 6) < 1e-9
    rep = enforce_budget([1, float("nan"), 2], t, None)
    assert rep.used_fallback and "radio" in rep.reasons[0] and rep.allocation == [2.0, 2.0, 2.0]
    rep = enforce_budget([7.0, 0.0, 0.0], t, None)
    assert "sum was 7" in rep.reasons[-1]
    assert rep.model_dump()["allocation"] == rep.allocation  # JSON-able for graph state


def test_enforce_budget_names_exactly_the_slots_it_changed():
    # Regression: an edit clipped at one bound used to report "other slots adjusted" although
    # only one other slot moved; the report must name it, with old and new values.
    t = _task(labels=["tv", "search", "social"], lower=[0, 0, 1], upper=[3, 6, 1])
    rep = enforce_budget([4.0, 1.0, 1.0], t)
    assert rep.reasons == ["tv above upper bound 3 (was 4), lowered to 3", "search 1 -> 2 to keep the sum at budget 6"]
    assert [(a.label, a.proposed, a.applied, a.why) for a in rep.adjustments] == [
        ("tv", 4.0, 3.0, "upper bound"), ("search", 1.0, 2.0, "budget sum")]
    assert not any("other slots" in r or "social" in r for r in rep.reasons)


def test_enforce_budget_keeps_max_change_limits_relative_to_current_spend():
    hist = [{"allocation": [100.0, 100.0, 100.0], "mroi": [2.0, 1.0, 0.5]}]
    t = Task(budget=300.0, periods=3, history=hist, max_change=0.3, labels=["tv", "search", "social"])
    rep = enforce_budget([200.0, 100.0, 0.0], t)
    assert rep.allocation == [130.0, 100.0, 70.0]
    assert rep.reasons == ["tv above its change limit 130 (was 200), lowered to 130",
                           "social below its change limit 70 (was 0), raised to 70"]
    rep = enforce_budget([200.0, 80.0, 80.0], t)
    assert rep.allocation == [130.0, 85.0, 85.0]
    assert rep.reasons[-1] == "sum was 360, moved to budget 300 (nearest feasible allocation): search 80 -> 85, social 80 -> 85"
    assert [a.why for a in rep.adjustments] == ["change limit", "budget sum", "budget sum"]
    # Per-slot limits, and a current spend other than the last history row.
    t2 = t.model_copy(update={"max_change": [0.0, 1.0, 1.0]})
    assert enforce_budget([0.0, 150.0, 150.0], t2).allocation[0] == 100.0
    assert np.allclose(enforce_budget([300.0, 0.0, 0.0], t, current=[150.0, 75.0, 75.0]).allocation,
                       [195.0, 52.5, 52.5])
    with pytest.raises(ValueError, match="max_change: .* excludes budget 300"):
        enforce_budget([100.0, 100.0, 100.0], t, current=[10.0, 10.0, 10.0])


def test_reasons_use_plain_money_not_exponents():
    t = Task(budget=2.5e6, periods=2)
    rep = enforce_budget([2e6, 1e6], t)
    assert "sum was 3,000,000, moved to budget 2,500,000" in rep.reasons[0]
    assert "e+" not in " ".join(rep.reasons)
