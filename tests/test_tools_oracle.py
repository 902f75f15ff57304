"""Oracle optimality (vs SLSQP, KKT) and metrics."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import minimize

from tools.budget import project
from tools.envs import make_envs
from tools.metrics import dispersion, mroi_var, regret, round_metrics
from tools.oracle import oracle_allocation


def _random_bounds(e, rng):
    N, T = e.n, e.periods
    B = e.budget[:, None]
    lo = np.where(rng.random((N, T)) < 0.5, rng.uniform(0, 0.6, (N, T)) * B / T, 0.0)
    hi = np.where(rng.random((N, T)) < 0.5, lo + rng.uniform(0.3, 2.0, (N, T)) * B / T, np.inf)
    # make sure the bounds admit the budget
    short = hi.sum(1) < e.budget
    hi[short, 0] = np.inf
    e.lower, e.upper = lo, hi
    return e


def _slsqp(e, i):
    T = e.periods
    lo, hi, B = e.lower[i], e.upper[i], e.budget[i]
    sub = e.subset([i])
    f = lambda x: -sub.value(np.maximum(x, 0)[None])[0]
    g = lambda x: -sub.mroi(np.maximum(x, 0)[None])[0]
    best = None
    rng = np.random.default_rng(i)
    for x0 in [project(np.full(T, B / T), B, lo, hi), project(rng.uniform(0, 2 * B / T, T), B, lo, hi)]:
        res = minimize(f, x0, jac=g, method="SLSQP",
                       bounds=[(l, h if np.isfinite(h) else None) for l, h in zip(lo, hi)],
                       constraints=[{"type": "eq", "fun": lambda x: x.sum() - B, "jac": lambda x: np.ones(T)}],
                       options={"ftol": 1e-13, "maxiter": 500})
        x = project(np.maximum(res.x, 0), B, lo, hi)
        v = sub.value(x[None])[0]
        best = v if best is None else max(best, v)
    return best


@pytest.mark.parametrize("family", ["quadratic", "exponential", "hill"])
def test_oracle_beats_slsqp_and_satisfies_kkt(family):
    rng = np.random.default_rng(0)
    e = _random_bounds(make_envs(family, 40, seed=11), rng)
    b = oracle_allocation(e)
    assert np.allclose(b.sum(1), e.budget, atol=1e-9)
    assert np.all(b >= e.lower - 1e-12) and np.all(b <= e.upper + 1e-12)
    v = e.value(b)
    for i in range(e.n):
        vs = _slsqp(e, i)
        assert v[i] >= vs - 1e-6 * abs(vs), (i, v[i], vs)
    # KKT: equal MROI on interior slots; >= lambda at upper, <= lambda at lower.
    r = e.mroi(b)
    tol_b = 1e-7
    interior = (b > e.lower + tol_b) & (b < e.upper - tol_b)
    for i in range(e.n):
        if not interior[i].any():
            continue
        lam = r[i, interior[i]].mean()
        assert np.allclose(r[i, interior[i]], lam, atol=1e-6)
        at_hi = b[i] >= e.upper[i] - tol_b
        at_lo = b[i] <= e.lower[i] + tol_b
        assert np.all(r[i, at_hi] >= lam - 1e-6)
        assert np.all(r[i, at_lo] <= lam + 1e-6)


def test_oracle_plateaus_and_saturation():
    # Budget far beyond the zero-MROI points: every unit past r earns 0; V is maxed.
    fns = [lambda x: np.clip(1 - x, 0, 1)] * 3
    e = make_envs("curves", 2, budget=10.0, mroi_fns=fns)
    b = oracle_allocation(e)
    assert np.allclose(b.sum(1), 10) and np.allclose(e.value(b), 1.5)
    # Flat MROI: any split of a plateau is optimal; oracle must still sum to B.
    fns = [lambda x: np.full_like(x, 0.5), lambda x: np.full_like(x, 0.5), lambda x: np.exp(-x)]
    e = make_envs("curves", 1, budget=3.0, mroi_fns=fns)
    b = oracle_allocation(e)
    assert np.isclose(b.sum(), 3) and np.isclose(b[0, 2], np.log(2), atol=1e-6)


def test_oracle_throughput_smoke():
    e = make_envs("quadratic", 20000, seed=0)
    t0 = time.perf_counter()
    b = oracle_allocation(e)
    assert time.perf_counter() - t0 < 5.0
    assert np.allclose(b.sum(1), 6.0)


def test_metrics():
    r = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    assert np.allclose(mroi_var(r), [2 / 3, 0])
    assert np.allclose(dispersion(r), [2.0, 0])
    e = make_envs("quadratic", 100, seed=1)
    b_star = oracle_allocation(e)
    uni = np.full((100, 6), 1.0)
    reg = regret(e, uni, b_star)
    assert np.all(reg >= -1e-12) and reg.mean() > 0.05
    assert np.allclose(regret(e, b_star), 0, atol=1e-9)
    m = round_metrics(e, uni, b_star)
    assert set(m) == {"regret", "mroi_var", "dispersion"} and all(v.shape == (100,) for v in m.values())
    assert np.allclose(m["mroi_var"], e.mroi(uni).var(1))
    obs = e.mroi(uni) * 2
    assert np.allclose(round_metrics(e, uni, b_star, r=obs)["dispersion"], dispersion(obs))
