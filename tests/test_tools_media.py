"""The `media` family: MMM-like channels (levels far apart, nearly linear, corners)."""

import numpy as np
import pytest

from tools.budget import project
from tools.envs import FAMILIES, env_from_spec, make_envs
from tools.oracle import oracle_allocation


def test_media_is_registered_and_reproducible():
    assert "media" in FAMILIES
    a = make_envs("media", 8, periods=5, budget=1e5, seed=11)
    b = make_envs("media", 300, periods=5, budget=1e5, seed=11)
    x = np.full((8, 5), 2e4)
    np.testing.assert_array_equal(a.mroi(x), b.subset(np.arange(8)).mroi(x))
    one = env_from_spec(a.spec, 3)
    np.testing.assert_array_equal(one.mroi(x[:1]), a.mroi(x)[3:4])


@pytest.mark.parametrize("T", [3, 10])
def test_media_has_what_real_channels_have(T):
    e = make_envs("media", 400, periods=T, budget=1e5, seed=5)
    best = oracle_allocation(e)
    np.testing.assert_allclose(best.sum(1), 1e5, rtol=1e-9)
    corners = (best < 1e-6).mean()
    assert 0.05 < corners < 0.6  # some channels deserve nothing, not most
    peak = e.mroi(np.zeros((e.n, T)))
    assert np.median(peak.max(1) / peak.min(1)) > 1.5 and (peak.max(1) / peak.min(1)).max() > 30
    u = 1e5 / T  # nearly linear: MROI at 2u still >= 80% of the peak for some slots
    assert (e.mroi(np.full((e.n, T), 2 * u)) / peak > 0.8).mean() > 0.05


def test_media_oracle_beats_random_feasible_plans():
    e = make_envs("media", 50, periods=6, budget=600.0, seed=2)
    best = e.value(oracle_allocation(e))
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = project(rng.uniform(0, 200, size=(e.n, 6)), e.budget, e.lower, e.upper)
        assert (e.value(x) <= best + 1e-9 * np.abs(best)).all()
