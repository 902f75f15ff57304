"""Spend/return logs: where they live, the shipped presets, and reading one into arrays.

The public logs behind the ``robyn``, ``meridian-national`` and ``meridian-geo``
families ship with the package (``tools/envs/datasets/``, provenance and licences in its
README); ``$DARA_DATA_DIR`` replaces that directory, and ``csv=`` with a path reads any
other log. Reading checks only what a log must satisfy to be a log (columns present,
numbers, non-negative spend, equal-length geos); whether it can be *fitted* is the
response fit's business (``tools.envs.response_fit``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["PRESETS", "PACKAGED_DATA_DIR", "data_dir", "resolve_csv", "SpendLog", "read_log"]

#: Column roles of the shipped logs, one entry per data-driven preset family.
PRESETS: dict[str, dict] = {
    "robyn": {
        "csv": "robyn_dt_simulated_weekly.csv",
        "revenue": "revenue",
        "spend_columns": ["tv_S", "ooh_S", "print_S", "facebook_S", "search_S"],
        "controls": ["competitor_sales_B"],
    },
    "meridian-national": {
        "csv": "meridian_national_media.csv",
        "revenue": ["conversions", "revenue_per_conversion"],
        "spend_columns": ["Channel0_spend", "Channel1_spend", "Channel2_spend", "Channel3_spend"],
        "controls": ["competitor_activity_score_control", "sentiment_score_control"],
    },
    "meridian-geo": {
        "csv": "meridian_geo_media.csv",
        "revenue": ["conversions", "revenue_per_conversion"],
        "spend_columns": ["Channel0_spend", "Channel1_spend", "Channel2_spend", "Channel3_spend"],
        "controls": ["competitor_activity_score_control", "sentiment_score_control"],
        "geo_column": "geo",
    },
}

#: The copies of the public logs shipped inside the package.
PACKAGED_DATA_DIR = Path(__file__).resolve().with_name("datasets")

_MISSING = ("", "NA", "na", "NaN")


def data_dir() -> Path:
    """Where relative ``csv=`` names are looked up: ``$DARA_DATA_DIR`` if set, else the
    logs shipped with the package."""
    env = os.environ.get("DARA_DATA_DIR")
    return Path(env) if env else PACKAGED_DATA_DIR


def resolve_csv(csv_path: str | Path) -> Path:
    """An existing path as given, else the name inside :func:`data_dir`."""
    p = Path(csv_path)
    if not p.is_absolute() and not p.exists():
        p = data_dir() / p
    if not p.is_file():
        raise FileNotFoundError(
            f"spend/return log not found: {p} (set DARA_DATA_DIR or pass csv= with a full path)"
        )
    return p


@dataclass(frozen=True)
class SpendLog:
    """A log as arrays, split by geo (one geo, ``"national"``, without a geo column)."""

    path: Path
    channels: list[str]
    geos: list[str]
    spend: np.ndarray  # (G, P, C) spend per geo, period and channel
    revenue: np.ndarray  # (G, P) revenue (product of the revenue columns)
    controls: np.ndarray  # (G, P, J) control variables


def read_log(
    path: Path,
    spend_columns: Sequence[str],
    revenue: Sequence[str],
    controls: Sequence[str] = (),
    geo_column: str | None = None,
) -> SpendLog:
    """Read the named columns of a CSV log; errors name the file and the column."""
    cols = _read_columns(path)
    wanted = list(spend_columns) + list(revenue) + list(controls) + ([geo_column] if geo_column else [])
    missing = [c for c in wanted if c not in cols]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; available columns: {list(cols)}")
    n_rows = len(cols[spend_columns[0]])
    X = np.stack([_numeric(cols, c, path) for c in spend_columns], axis=1)  # (rows, C)
    y = np.ones(n_rows)
    for c in revenue:
        y = y * _numeric(cols, c, path)
    Z = np.stack([_numeric(cols, c, path) for c in controls], axis=1) if controls else np.zeros((n_rows, 0))
    if (X < 0).any():
        c = spend_columns[int(np.argwhere(X < 0)[0][1])]
        raise ValueError(f"{path.name}: spend column {c!r} has negative values")
    if geo_column:
        keys = cols[geo_column]
        geos = list(dict.fromkeys(keys))
        idx = [np.array([i for i, k in enumerate(keys) if k == g]) for g in geos]
        lens = {len(i) for i in idx}
        if len(lens) != 1:
            raise ValueError(f"{path.name}: geos have different numbers of periods {sorted(lens)}")
        X3 = np.stack([X[i] for i in idx])
        y2 = np.stack([y[i] for i in idx])
        Z3 = np.stack([Z[i] for i in idx])
    else:
        geos = ["national"]
        X3, y2, Z3 = X[None], y[None], Z[None]
    return SpendLog(path=path, channels=list(spend_columns), geos=geos, spend=X3, revenue=y2, controls=Z3)


def _read_columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty file")
        cols: dict[str, list[str]] = {c: [] for c in reader.fieldnames}
        for row in reader:
            for c in reader.fieldnames:
                cols[c].append(row[c])
    return cols


def _numeric(cols: dict[str, list[str]], name: str, path: Path) -> np.ndarray:
    try:
        x = np.array([float(v) if v not in _MISSING else np.nan for v in cols[name]])
    except ValueError:
        bad = next(v for v in cols[name] if not _isfloat(v))
        raise ValueError(f"{path.name}: column {name!r} is not numeric (e.g. {bad!r})") from None
    if np.isnan(x).any():
        raise ValueError(f"{path.name}: column {name!r} has {int(np.isnan(x).sum())} missing values")
    return x


def _isfloat(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
