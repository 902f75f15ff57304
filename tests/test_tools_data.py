"""Data-driven environments fitted to the public logs shipped in tools/envs/datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tools.envs import env_from_spec, make_envs
from tools.envs.data import fit_response
from tools.oracle import oracle_allocation


@pytest.mark.parametrize(
    "family, channels, geos",
    [("robyn", 5, 1), ("meridian-national", 4, 1), ("meridian-geo", 4, 20)],
)
def test_presets_fit_and_serve(data_dir, family, channels, geos):
    e = make_envs(family, 2 * geos + 3, seed=0, noise=0.05)
    assert e.periods == channels and e.family == family
    assert len(e.labels) == channels and e.spec["periods"] == channels
    assert np.all(e.budget > 1e3)  # real currency units
    assert e.hist_alloc.shape == (e.n, 3, channels)
    r = e.mroi(e.hist_alloc[:, -1])
    assert np.all(np.isfinite(r)) and np.all(r >= 0) and r.max() > 0
    b = oracle_allocation(e)
    assert np.allclose(b.sum(1), e.budget, rtol=1e-9)
    uniform = np.repeat((e.budget / e.periods)[:, None], e.periods, 1)
    assert np.all(e.value(b) >= e.value(uniform) - 1e-6 * np.abs(e.value(b)))
    t = e.task(0)
    assert t.labels == e.labels and len(t.history) == 3
    # geo rows: the first `geos` rows are the point estimate of each geo
    assert len(set(e.params["geo"][:geos, 0].tolist())) == geos
    # env_from_spec through JSON gives identical numbers
    spec = json.loads(json.dumps(e.spec))
    one = env_from_spec(spec, e.n - 1)
    assert np.array_equal(one.hist_mroi[0], e.hist_mroi[-1])
    assert np.array_equal(one.params["beta"][0], e.params["beta"][-1])


def test_fit_quality_and_cache(data_dir):
    kw = dict(spend_columns=["tv_S", "ooh_S", "print_S", "facebook_S", "search_S"], revenue="revenue",
              controls=["competitor_sales_B"])
    f = fit_response(data_dir / "robyn_dt_simulated_weekly.csv", **kw)
    assert f.r2 > 0.5
    assert f is fit_response(data_dir / "robyn_dt_simulated_weekly.csv", **kw)  # cached
    assert np.all(f.s >= 1) and np.all(f.beta >= 0)


def test_generic_data_family_and_product_revenue(data_dir):
    e = make_envs(
        "data", 4, csv=str(data_dir / "meridian_national_media.csv"),
        spend_columns=["Channel0_spend", "Channel1_spend"], revenue=["conversions", "revenue_per_conversion"],
        total_budget=200000.0,
    )
    assert e.labels == ["Channel0_spend", "Channel1_spend"] and np.all(e.budget == 200000.0)


def test_adstock_option(data_dir):
    f = fit_response(data_dir / "meridian_national_media.csv", ["Channel0_spend", "Channel1_spend"],
                     ["conversions", "revenue_per_conversion"], adstock=True, starts=1)
    assert np.all((f.theta >= 0) & (f.theta <= 0.9))


def test_helpful_errors(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"missing column\(s\) \['tv_spend'\].*available columns.*tv_S"):
        make_envs("data", 2, csv=str(data_dir / "robyn_dt_simulated_weekly.csv"), spend_columns=["tv_spend"],
                  revenue="revenue")
    with pytest.raises(FileNotFoundError, match="not found"):
        make_envs("data", 2, csv="nope.csv", spend_columns=["a"], revenue="r")
    with pytest.raises(ValueError, match="needs spend_columns"):
        make_envs("data", 2, csv="x.csv", revenue="r")
    p = tmp_path / "flat.csv"
    rows = ["week,rev,a,b"] + [f"{i},{100 + i},{10 + i % 3},0" for i in range(20)]
    p.write_text("\n".join(rows))
    with pytest.raises(ValueError, match="degenerate fit: spend column 'b' is all zero"):
        make_envs("data", 1, csv=str(p), spend_columns=["a", "b"], revenue="rev")
    with pytest.raises(ValueError, match="not numeric"):
        fit_response(data_dir / "robyn_dt_simulated_weekly.csv", ["tv_S"], "DATE")


def test_fit_failure_carries_the_solver_error(tmp_path, monkeypatch):
    """When every start of the fit fails, the error names the solver's own failure."""
    import tools.envs.response_fit as response_fit

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge in the trust region")

    monkeypatch.setattr(response_fit, "least_squares", broken)
    p = tmp_path / "log.csv"
    p.write_text("\n".join(["rev,a,b"] + [f"{100 + i},{10 + i % 3},{5 + i % 4}" for i in range(20)]))
    with pytest.raises(ValueError, match="did not converge on log.csv.*LinAlgError: SVD did not converge") as info:
        fit_response(p, ["a", "b"], "rev", starts=2)
    assert isinstance(info.value.__cause__, np.linalg.LinAlgError)


def test_logs_ship_with_the_package_and_dara_data_dir_overrides(tmp_path, monkeypatch):
    from tools.envs.spend_logs import PACKAGED_DATA_DIR, PRESETS, data_dir, resolve_csv

    monkeypatch.delenv("DARA_DATA_DIR", raising=False)
    assert data_dir() == PACKAGED_DATA_DIR
    for preset in PRESETS.values():
        assert resolve_csv(preset["csv"]).parent == PACKAGED_DATA_DIR
    for name in ("LICENSE.robyn", "LICENSE.meridian", "README.md"):
        assert (PACKAGED_DATA_DIR / name).is_file()
    monkeypatch.setenv("DARA_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        resolve_csv("robyn_dt_simulated_weekly.csv")
    (tmp_path / "robyn_dt_simulated_weekly.csv").write_bytes(
        (PACKAGED_DATA_DIR / "robyn_dt_simulated_weekly.csv").read_bytes())
    assert resolve_csv("robyn_dt_simulated_weekly.csv") == tmp_path / "robyn_dt_simulated_weekly.csv"
