"""Numeric baselines: shapes, the reference heuristic's exact rule, and that they improve."""

import numpy as np
import pytest

from policies.base import DecisionRequest
from policies.baselines import BASELINES, make_baseline, propose_arrays
from tools.task import Record, Task


def _windows(n=5, w=3, T=4, seed=0):
    rng = np.random.default_rng(seed)
    wa = rng.uniform(0.5, 1.5, size=(n, w, T))
    wa *= (T / wa.sum(axis=2, keepdims=True))
    # linear decreasing MROI with slot-specific slopes: r = c - s * b
    c = rng.uniform(1.0, 2.0, size=(n, 1, T))
    s = rng.uniform(0.2, 0.8, size=(n, 1, T))
    return wa, c - s * wa, c[:, 0], s[:, 0]


def test_heuristic_moves_fraction_from_worst_to_best():
    wa = np.array([[[1.0, 2.0, 3.0]]])
    wr = np.array([[[0.5, 0.9, 0.1]]])
    out = propose_arrays("heuristic", wa, wr, budget=6.0)
    np.testing.assert_allclose(out, [[1.0, 2.6, 2.4]])  # 20% of slot3's 3.0 -> slot2


@pytest.mark.parametrize("name", BASELINES)
def test_shapes_and_budget(name):
    wa, wr, _, _ = _windows()
    out = propose_arrays(name, wa, wr, budget=np.full(5, 4.0))
    assert out.shape == (5, 4)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 4.0, rtol=1e-6)


def test_local_model_equalises_linear_mroi():
    """On exactly linear MROI inside the trust region, local-model hits the optimum."""
    wa, wr, c, s = _windows(n=20, T=4)
    out = propose_arrays("local-model", wa, wr, budget=np.full(20, 4.0), trust=10.0)
    r = c - s * out
    inside = np.all(out > 1e-6, axis=1)
    assert inside.sum() > 5
    assert np.allclose(r[inside].std(axis=1), 0, atol=1e-6)


def test_planning_slopes_are_the_fit_made_steeper_by_its_standard_error():
    """local-model plans on slope - z * se, se the slope's standard error of the one local
    response model the self-check uses (pooled residuals, sigma / sqrt(Sxx))."""
    from tools.local_response import fit_local_response, local_slopes, planning_slopes

    wa, wr, _, _ = _windows(n=30, w=4, T=5, seed=3)
    wr = wr * np.random.default_rng(4).lognormal(0.0, 0.1, wr.shape)  # noisy records
    unit = np.full(30, 1.0)
    np.testing.assert_array_equal(planning_slopes(wa, wr, unit, 0.0), local_slopes(wa, wr, unit))
    steeper = planning_slopes(wa, wr, unit, 0.5)
    for i in range(30):
        fit = fit_local_response(wa[i], wr[i], 1.0)
        se = np.where(fit.varied, fit.sigma / np.sqrt(fit.sxx), 0.0)
        np.testing.assert_allclose(steeper[i], fit.slope - 0.5 * se, rtol=1e-9)
    assert np.all(steeper <= local_slopes(wa, wr, unit)) and np.any(steeper < local_slopes(wa, wr, unit))


def test_an_uncertain_slope_takes_a_shorter_step():
    """Three noisy, closely spaced records of a 3-slot task (budget 6; the optimum is about
    [1.8, 1.4, 2.8]): the plain fit empties slot 1; the planning slope moves less."""
    wa = np.array([[[2.285, 1.982, 1.733], [2.364, 1.715, 1.921], [1.984, 1.795, 2.221]]])
    wr = np.array([[[0.2357, 0.2321, 0.4078], [0.2680, 0.3743, 0.4328], [0.262, 0.312, 0.408]]])
    plain = propose_arrays("local-model", wa, wr, budget=6.0, z=0.0)[0]
    planned = propose_arrays("local-model", wa, wr, budget=6.0)[0]
    assert plain[0] < 0.01
    assert np.abs(planned - wa[0, -1]).max() < np.abs(plain - wa[0, -1]).max() - 0.2
    np.testing.assert_allclose(planned.sum(), 6.0, rtol=1e-6)


def test_grow_widens_the_trust_region_of_a_slot_that_keeps_moving_one_way():
    """A nearly linear channel (flat MROI) with far better MROI than the rest: with grow=1
    it gains one trust region a round; with grow=2 (the default) a slot whose last two
    moves went its way, the last a full trust region, may take two. Others keep the plain
    trust region."""
    T, B = 4, 4.0
    wa = np.array([[[0.2, 1.3, 1.3, 1.2], [1.2, 1.0, 0.9, 0.9], [2.2, 0.6, 0.6, 0.6]]])  # slot 1: +1, +1
    wr = np.array([[[3.0, 0.9, 0.8, 0.85], [3.0, 1.0, 1.0, 1.0], [3.0, 1.2, 1.15, 1.1]]])
    plain = propose_arrays("local-model", wa, wr, budget=B, grow=1.0)[0]
    grown = propose_arrays("local-model", wa, wr, budget=B, grow=2.0)[0]
    np.testing.assert_array_equal(propose_arrays("local-model", wa, wr, budget=B)[0], grown)
    assert plain[0] - wa[0, -1, 0] == pytest.approx(1.0)  # the trust region: one B/T
    assert 1.0 + 1e-6 < grown[0] - wa[0, -1, 0] <= 2.0 + 1e-9
    assert np.abs(grown[1:] - wa[0, -1, 1:]).max() <= 1.0 + 1e-9
    # a slot whose moves reversed keeps the plain trust region
    back = wa.copy()
    back[0, 1, 0] = 2.4
    assert propose_arrays("local-model", back, wr, budget=B, grow=2.0)[0][0] - back[0, -1, 0] <= 1.0 + 1e-9


def test_no_slope_trust_limits_a_window_without_usable_slopes():
    """Converged spends (no slot varied) and MROI levels near zero: the prior slope is
    nearly flat, so the plain plan jumps a whole trust region; no_slope_trust caps it."""
    from tools.local_response import usable_slopes

    wa = np.repeat(np.array([[[1.5, 1.0, 0.5]]]), 3, axis=1)
    wr = np.repeat(np.array([[[0.004, -0.002, 0.001]]]), 3, axis=1)
    assert not usable_slopes(wa, wr, np.array([1.0])).any()
    plain = propose_arrays("local-model", wa, wr, budget=3.0)[0]
    calm = propose_arrays("local-model", wa, wr, budget=3.0, no_slope_trust=0.1)[0]
    assert np.abs(plain - wa[0, -1]).max() > 0.5
    assert np.abs(calm - wa[0, -1]).max() <= 0.1 + 1e-9
    np.testing.assert_allclose(calm.sum(), 3.0, rtol=1e-6)
    # a window with a usable slope is not affected
    wa2, wr2, _, _ = _windows(n=3)
    np.testing.assert_array_equal(propose_arrays("local-model", wa2, wr2, budget=4.0, no_slope_trust=0.1),
                                  propose_arrays("local-model", wa2, wr2, budget=4.0))


def test_a_slot_no_record_funded_gets_one_trust_region_when_the_history_spent_off_budget():
    """The Robyn history shape: rows spending 0.2-1.7 times B, one channel never funded
    with a far higher MROI at zero spend. No trust region around the last row holds B, so
    the region widens; the unfunded slot (borrowed slope) still gets at most one B/T."""
    wa = np.array([[[0.0, 0.0, 0.0, 0.0, 0.83], [3.6, 0.0, 0.0, 0.0, 2.0], [0.0, 4.1, 2.5, 0.0, 1.9]]])
    wr = np.array([[[12.7, 4.8, 18.8, 85.7, 0.12], [10.5, 3.6, 22.7, 77.5, 0.01], [12.8, 0.01, 5.5, 90.2, 0.01]]])
    before = propose_arrays("local-model", wa, wr, budget=5.0, unfunded_cap=False)[0]
    capped = propose_arrays("local-model", wa, wr, budget=5.0)[0]
    assert before[3] > 4.9  # the whole budget on the never-funded slot
    assert capped[3] <= 1.0 + 1e-9 and capped[3] > 0.5  # it still moves toward the high MROI
    np.testing.assert_allclose(capped.sum(), 5.0, rtol=1e-6)
    # a widened region whose slots were all funded somewhere in the window is not affected
    funded = wa.copy()
    funded[0, 0, 3] = 0.5
    np.testing.assert_array_equal(propose_arrays("local-model", funded, wr, budget=5.0),
                                  propose_arrays("local-model", funded, wr, budget=5.0, unfunded_cap=False))


def test_the_unfunded_cap_rises_only_as_far_as_the_budget_needs():
    """With an upper bound on the funded slot, one trust region per unfunded slot cannot
    hold B: the cap rises to the lowest common level that can, not off altogether."""
    wa, wr = np.array([[[6.0, 0.0, 0.0]]]), np.array([[[1.0, 5.0, 4.0]]])
    upper = np.array([0.5, np.inf, np.inf])
    plan = propose_arrays("local-model", wa, wr, budget=3.0, upper=upper)[0]
    np.testing.assert_allclose(plan, [0.5, 1.25, 1.25], atol=1e-6)
    assert propose_arrays("local-model", wa, wr, budget=3.0, upper=upper, unfunded_cap=False)[0][1] > 1.3
    # a lower bound above the trust region wins over the cap
    low = propose_arrays("local-model", wa, wr, budget=3.0, lower=np.array([0.0, 1.5, 0.0]))[0]
    assert low[1] >= 1.5 - 1e-9 and low[2] <= 1.0 + 1e-9
    np.testing.assert_allclose(low.sum(), 3.0, rtol=1e-6)


@pytest.mark.parametrize("bad", [{"grow": 0.5}, {"grow_after": 0.0}, {"no_slope_trust": -1.0}])
def test_trust_region_options_reject_bad_values(bad):
    wa, wr, _, _ = _windows()
    with pytest.raises(ValueError, match="local-model: grow must be >= 1"):
        propose_arrays("local-model", wa, wr, budget=4.0, **bad)


def test_unknown_baseline_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        propose_arrays("nope", np.ones((1, 1, 2)), np.ones((1, 1, 2)), 2.0)
    with pytest.raises(ValueError, match="shape"):
        propose_arrays("uniform", np.ones((1, 2)), np.ones((1, 2)), 2.0)


def test_policy_wrapper_groups_requests():
    task = Task(budget=6, periods=3, history=[Record(allocation=[2, 2, 2], mroi=[0.9, 0.5, 0.1])])
    task2 = Task(budget=4, periods=2, history=[Record(allocation=[2, 2], mroi=[0.1, 0.9])])
    pol = make_baseline("heuristic")
    d1, d2 = pol.propose(
        [DecisionRequest("reasoner", task, task.history), DecisionRequest("reasoner", task2, task2.history)]
    )
    np.testing.assert_allclose(d1.allocation, [2.4, 2.0, 1.6])
    np.testing.assert_allclose(d2.allocation, [1.6, 2.4])
    assert d1.error is None and "heuristic" in d1.text


def test_a_slot_far_outside_its_bounds_is_planned_at_the_bound():
    """A history row may lie outside the task's bounds (real logs, scaled histories).

    Below a floor: the last record spent 0.2 on slot 0, whose lower bound is 3, more than
    the radius away, so its trust region [3, 2.2] was empty and np.clip planned 2.2, below
    the floor. Above a cap: the last record spent 9 on slot 0, capped at 2.4; the region's
    lower end (7) made the whole row look infeasible and widened every slot to its plain
    bounds. Now each end is clipped into the bounds: the slot sits at its bound and the
    others keep their trust region."""
    wa = np.array([[[1.0, 2.0, 3.0], [0.5, 1.5, 4.0], [0.2, 1.8, 4.0]]])
    wr = np.array([[[0.9, 0.5, 0.2], [1.0, 0.6, 0.15], [1.1, 0.55, 0.15]]])
    plan = propose_arrays("local-model", wa, wr, budget=6.0, lower=[3.0, 0.0, 0.0], upper=[6.0, 6.0, 1.2])[0]
    assert plan[0] >= 3.0 - 1e-9 and plan[2] <= 1.2 + 1e-9  # before: slot 0 at 2.2
    np.testing.assert_allclose(plan.sum(), 6.0, rtol=1e-6)

    wa = np.array([[[3.0, 2.0, 1.0], [9.0, 2.0, 1.0]]])
    wr = np.array([[[0.5, 1.0, 1.2], [0.2, 1.0, 1.3]]])
    plan = propose_arrays("local-model", wa, wr, budget=6.0, upper=[2.4, 6.0, 6.0])[0]
    np.testing.assert_allclose(plan[0], 2.4)  # at its cap
    # the others moved at most one trust region (B/T = 2) from the last record; before,
    # widened to the plain bounds, slot 2 got 5.5 of the 6
    assert np.all(np.abs(plan[1:] - wa[0, -1, 1:]) <= 2.0 + 1e-9)
    np.testing.assert_allclose(plan.sum(), 6.0, rtol=1e-6)
