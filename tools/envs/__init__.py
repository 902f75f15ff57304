"""Batched marginal-ROI environments: ``make_envs(family, n, ...) -> EnvBatch``.

Generation is deterministic and *blocked*: rows are produced in blocks of
``BLOCK`` environments, block ``j`` from ``SeedSequence(seed, spawn_key=(j,))``. Hence
row ``i`` is the same whatever ``n`` is (a batch of 10 is a prefix of a batch of 1000),
and ``env_from_spec(spec, i)`` rebuilds one row by regenerating one block only — cheap
even when the batch had 100k rows.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from tools.envs.base import BLOCK, EnvBatch
from tools.envs.media import BUILDERS as _MEDIA
from tools.envs.synthetic import BUILDERS as _SYN

_SYN = {**_SYN, **_MEDIA}  # every synthetic family (B and T from the caller)

__all__ = ["make_envs", "env_from_spec", "FAMILIES", "EnvBatch", "BLOCK"]

#: Synthetic families, then data-driven presets, then the generic CSV family.
FAMILIES: tuple[str, ...] = (
    "quadratic",
    "exponential",
    "hill",
    "media",
    "curves",
    "robyn",
    "meridian-national",
    "meridian-geo",
    "data",
)

_NOT_JSON = ("mroi_fns", "value_fns")


def _builder(family: str):
    if family in _SYN:
        return _SYN[family]
    if family in FAMILIES:
        from tools.envs import data

        return data.BUILDERS[family]
    raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


def _jsonable_kw(kw: dict) -> dict:
    out = {}
    for k, v in kw.items():
        if k in _NOT_JSON:
            continue
        if isinstance(v, np.ndarray):
            v = v.tolist()
        try:
            json.dumps(v)
        except TypeError:
            raise ValueError(f"option {k}={v!r} is not JSON-serialisable; env specs must be JSON") from None
        out[k] = v
    return out


def _generate(spec: dict, rows: np.ndarray, kw: dict) -> EnvBatch:
    build = _builder(spec["family"])
    blocks = rows // BLOCK
    uniq = np.unique(blocks)
    parts = []
    for j in uniq:
        rng = np.random.default_rng(np.random.SeedSequence(int(spec["seed"]), spawn_key=(int(j),)))
        parts.append(build(spec, np.arange(j * BLOCK, (j + 1) * BLOCK), rng, kw))
    full = type(parts[0]).concat(parts)
    pos = np.searchsorted(uniq, blocks) * BLOCK + rows % BLOCK
    full.spec = {}
    out = full.subset(pos)
    out.spec = dict(spec)
    if full.family != out.family:
        out.family = full.family
    return out


def make_envs(
    family: str,
    n: int,
    periods: int = 6,
    budget: float = 6.0,
    seed: int = 0,
    noise: float = 0.0,
    history: int = 3,
    **kw: Any,
) -> EnvBatch:
    """Generate ``n`` environments of ``family`` (see ``FAMILIES``).

    ``periods`` (T) and ``budget`` (B) apply to synthetic families; data-driven families
    take T from their spend columns and B from observed periods (``total_budget=`` to
    override). ``noise`` is the coefficient of variation of the mean-one multiplicative
    noise on observed MROI (history included). ``history`` is the number of few-shot
    records. Family options (``**kw``): ``lower``/``upper`` (scalar or per-slot bounds,
    synthetic families), ``history_sampler`` (``auto``/``reject``/``direct``, rows
    within 30% of uniform) or ``history_concentration`` (rows' spend shares drawn from a
    Dirichlet with this concentration: small = concentrated like a real spend log),
    ``mroi_fns``/``value_fns`` (``curves``), ``csv``/``spend_columns``/``revenue``/
    ``geo_column``/``adstock`` ... (data families, see ``tools.envs.data``).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(periods, (int, np.integer)) or periods < 1:
        raise ValueError(f"periods must be a positive integer, got {periods!r}")
    if not (isinstance(budget, (int, float, np.number)) and math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a finite positive number, got {budget!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if not isinstance(history, (int, np.integer)) or history < 0:
        raise ValueError(f"history must be an integer >= 0, got {history!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if family == "curves":
        fns = kw.get("mroi_fns")
        if not fns or not all(callable(f) for f in fns):
            raise ValueError("family 'curves' needs mroi_fns=[callable per slot]")
        if periods != len(fns):
            if periods != 6:
                raise ValueError(f"periods={periods} but {len(fns)} mroi_fns were given")
            periods = len(fns)
        vf = kw.get("value_fns")
        if vf is not None and len(vf) != len(fns):
            raise ValueError(f"value_fns has {len(vf)} entries, expected {len(fns)}")
    spec = {
        "family": family,
        "n": int(n),
        "periods": int(periods),
        "budget": float(budget),
        "seed": int(seed),
        "noise": float(noise),
        "history": int(history),
        "kw": _jsonable_kw(kw),
    }
    out = _generate(spec, np.arange(n), kw)
    if family not in _SYN:  # data families: T from the spend columns, B from the log
        out.spec["periods"] = out.periods
        out.spec["budget"] = None
    return out


def env_from_spec(spec: dict, index: int, **kw: Any) -> EnvBatch:
    """Rebuild row ``index`` of the batch described by ``spec`` (an ``EnvBatch.spec``,
    possibly after a JSON round trip) as a batch of one. Identical numbers to the
    original row. ``curves`` specs need their callables again via ``mroi_fns=``."""
    if not isinstance(spec, dict) or "family" not in spec:
        raise ValueError("spec must be an EnvBatch.spec dict (with 'family', 'n', 'seed', ...)")
    rows = spec.get("rows")
    n = len(rows) if rows is not None else int(spec["n"])
    if not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise IndexError(f"env index {index!r} out of range for a batch of {n}")
    row = int(rows[index]) if rows is not None else int(index)
    base = {k: v for k, v in spec.items() if k != "rows"}
    opts = {**base.get("kw", {}), **kw}
    if base["family"] == "curves" and "mroi_fns" not in opts:
        raise ValueError("a 'curves' spec cannot carry callables: pass mroi_fns= (and value_fns=) again")
    out = _generate(base, np.array([row]), opts)
    out.spec = {**base, "rows": [row]}
    return out
