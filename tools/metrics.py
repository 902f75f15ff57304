"""Per-round metrics, all vectorised over a batch, all ``(N,)`` arrays.

- ``mroi_var``: population variance of the observed MROI across slots — the paper's
  metric; it is 0 exactly when marginal returns are equalised.
- ``dispersion``: ``sum_t |r_t - mean r|`` — what the reference code optimises.
- ``regret``: ``(V(b*) - V(b)) / V(b*)``, the fraction of attainable value lost — what
  an advertiser actually cares about. The first two can be fooled (e.g. by slots sitting
  on a zero-MROI plateau); regret cannot.
"""

from __future__ import annotations

import numpy as np

from tools.envs.base import EnvBatch
from tools.oracle import oracle_allocation

__all__ = ["mroi_var", "dispersion", "regret", "round_metrics"]


def mroi_var(r) -> np.ndarray:
    """Population variance across slots (last axis)."""
    r = np.asarray(r, dtype=float)
    return r.var(axis=-1)


def dispersion(r) -> np.ndarray:
    """``sum_t |r_t - mean(r)|`` across slots (last axis)."""
    r = np.asarray(r, dtype=float)
    return np.abs(r - r.mean(axis=-1, keepdims=True)).sum(axis=-1)


def regret(env: EnvBatch, b, b_star=None) -> np.ndarray:
    """Fraction of the optimal value lost by ``b``; 0 where the optimum is worth 0."""
    if b_star is None:
        b_star = oracle_allocation(env)
    v_star = env.value(b_star)
    v = env.value(b)
    safe = np.where(v_star > 0, v_star, 1.0)
    return np.where(v_star > 0, (v_star - v) / safe, 0.0)


def round_metrics(env: EnvBatch, b, b_star=None, r=None) -> dict[str, np.ndarray]:
    """``{"regret", "mroi_var", "dispersion"}`` for allocations ``b`` (N,T).

    Variance and dispersion use the noiseless MROI unless the observed ``r`` is given
    (pass it to score what the agent actually saw).
    """
    b = env.check_action(b)
    if r is None:
        r = env.mroi(b)
    return {"regret": regret(env, b, b_star), "mroi_var": mroi_var(r), "dispersion": dispersion(r)}
