"""The oracle: the allocation that maximises the hidden value ``V`` under the constraints.

With non-increasing MROI the value is concave and the KKT conditions say: there is a
level ``lambda`` such that every slot strictly between its bounds has ``MROI = lambda``,
slots at their upper bound have ``MROI >= lambda`` and slots at their lower bound
``MROI <= lambda``. Equivalently ``sum_t clip(x_t(lambda), lo_t, hi_t) = B`` with
``x_t(lambda) = inf{x >= 0 : MROI_t(x) <= lambda}`` (water-filling). ``S(lambda)`` is
non-increasing, so one vectorised bisection on ``lambda`` solves every environment of a
batch at once.

Plateaus (flat MROI regions, e.g. the quadratic family is 0 beyond ``r``; the Hill
envelope is flat below its tangent point) make ``S`` jump. The bisection keeps a bracket
``S(lam_lo) >= B >= S(lam_hi)`` and the answer is the convex combination of the two
clipped inverses that sums to ``B``: any spend on a plateau of level ``lambda*`` earns
exactly ``lambda*`` per unit, so every such split is optimal. If even ``lambda = 0``
cannot absorb the budget (all slots saturated), the surplus has zero marginal value and
is spread by Euclidean projection (nearest to the saturation point).
"""

from __future__ import annotations

import numpy as np

from tools.budget import project
from tools.envs.base import EnvBatch

__all__ = ["oracle_allocation", "oracle_value"]


def oracle_allocation(env: EnvBatch, tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """Optimal allocation ``(N, T)`` for every environment of ``env``.

    ``tol`` is the relative precision of the budget split between the bracket ends (the
    per-slot error is bounded by ``tol * B``); iteration also stops once the bracket on
    ``lambda`` is below ``1e-14`` relative (plateaus keep the split gap open; the final
    interpolation is exact there). Converged rows drop out of the loop.
    """
    N, T = env.n, env.periods
    B = env.budget
    lo, hi = env.lower, env.upper

    def clipped(lam):
        x = env.inverse_mroi(lam)
        return np.clip(x, lo, hi)

    # Families with their own inverse only need the parameters of the rows still being
    # solved; the generic bisection inverse uses the whole batch (its cap is the budget).
    own_inverse = type(env)._inverse is not EnvBatch._inverse

    def clipped_rows(lam, rows):
        if not own_inverse or rows.size == N:
            return clipped(lam if rows.size == N else _scatter(lam, rows))[rows]
        p = {k: v[rows] for k, v in env.params.items()}
        lam2 = np.broadcast_to(lam[:, None], (rows.size, T)).copy()
        return np.clip(env._inverse(lam2, p), lo[rows], hi[rows])

    def _scatter(lam_rows, rows):
        full = np.zeros(N)
        full[rows] = lam_rows
        return full

    lam_hi = env.mroi_any(lo).max(1)  # at this level every slot sits at its lower bound
    lam_hi = np.maximum(lam_hi, 0.0) * (1 + 1e-12) + 1e-300
    lam_lo = np.zeros(N)
    x_hi, x_lo = clipped(lam_hi), clipped(lam_lo)
    s_hi, s_lo = x_hi.sum(1), x_lo.sum(1)
    # lambda* = 0: the budget exceeds what can be spent usefully (or every MROI is 0).
    saturated = (s_lo < B) | (env.mroi_any(lo).max(1) <= 0)
    scale = np.maximum(B, 1e-300)
    for _ in range(max_iter):
        done = ((s_lo - s_hi) <= tol * scale) | ((lam_hi - lam_lo) <= 1e-14 * lam_hi) | saturated
        rows = np.nonzero(~done)[0]
        if rows.size == 0:
            break
        mid = 0.5 * (lam_lo[rows] + lam_hi[rows])
        xm = clipped_rows(mid, rows)
        sm = xm.sum(1)
        ge = sm >= B[rows]
        g, l = rows[ge], rows[~ge]
        lam_lo[g], s_lo[g], x_lo[g] = mid[ge], sm[ge], xm[ge]
        lam_hi[l], s_hi[l], x_hi[l] = mid[~ge], sm[~ge], xm[~ge]
    # Interpolate between the bracket ends (exact on plateaus, error <= tol*B elsewhere).
    fin = np.isfinite(x_lo)
    x_lo_f = np.where(fin, x_lo, x_hi)
    gap = x_lo_f.sum(1) - s_hi
    theta = np.where(gap > 0, (B - s_hi) / np.where(gap > 0, gap, 1.0), 0.0)
    b = x_hi + np.clip(theta, 0.0, 1.0)[:, None] * (x_lo_f - x_hi)
    if saturated.any():
        idx = np.nonzero(saturated)[0]
        b[idx] = np.where(np.isfinite(x_lo[idx]), x_lo[idx], x_hi[idx])
    # Remove rounding residue so sum(b) == B to machine precision.
    return project(b, B, lo, hi)


def oracle_value(env: EnvBatch, b_star: np.ndarray | None = None) -> np.ndarray:
    """``V(b*)`` per environment."""
    if b_star is None:
        b_star = oracle_allocation(env)
    return env.value(b_star)
