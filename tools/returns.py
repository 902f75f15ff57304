"""Marginal ROI from what analysts observe: spend and return per slot.

Analysts rarely measure marginal ROI; they see spend and the return it brought, per
channel and period. DARA's planners reason in MROI, so a task whose records carry
``return`` is turned into an MROI task here, once, and the plan says it was estimated.

Method, per slot, across the history records (spend ``x_k``, return ``R_k``):

1. *Local quadratic* when the slot has at least three distinct spends: least squares of
   ``R`` on ``1, x, x^2``; MROI at a record is the derivative ``c1 + 2 c2 x_k``. Used only
   when the fit is concave (``c2 <= 0``) and its MROI is non-negative at every record,
   i.e. when it describes diminishing returns. Locally any smooth response is close to
   quadratic, which is why this is accurate where the records are.
2. Otherwise a *power curve through the origin*, ``R(x) = a * x**e``, the constant-
   elasticity model of media response: ``e = d log R / d log x`` by least squares of
   ``log R`` on ``log x`` (``scipy.stats.linregress``), kept in ``[0.05, 1]``; MROI of a
   record is ``e * R_k / x_k``, the elasticity times the *observed* average ROI. It needs
   only two distinct spends.

Uncertainty: the quadratic's standard error of the derivative (from the least-squares
covariance; unknown with exactly three records, where the quadratic interpolates), or
``se(e) * R_k / x_k`` for the power curve (unknown with two records). Returns measured
with noise make marginal ROI much less certain than the returns themselves: a derivative
of noisy levels; the self-check and the report's interval carry that on. A slot whose
spend never varied cannot identify its response: it borrows the median elasticity of the
identified slots, or ``0.5`` (a square-root response) when none is identified, and the
note says so. A record with zero spend has no observed ROI; it gets the power curve's
MROI at 5 % of B/T. A record with positive spend and zero return gets MROI 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from tools.local_response import SPREAD
from tools.task import Record, Task

__all__ = ["MroiEstimate", "estimate_mroi", "mroi_task", "DEFAULT_ELASTICITY"]

#: Elasticity used when no slot's spend varied: a square-root response.
DEFAULT_ELASTICITY = 0.5
ELASTICITY_RANGE = (0.05, 1.0)


@dataclass(frozen=True)
class MroiEstimate:
    """Estimated MROI per record and slot ``(H, T)`` with how each slot was fitted.

    ``mroi_se (H, T)`` is ``nan`` where the fit leaves no residual to judge it by;
    ``method[t]`` is ``"quadratic"``, ``"power"`` or ``"borrowed"`` (fewer than two distinct
    positive spends with a positive return: a zero spend has no elasticity);
    ``elasticity (T,)`` the power curve's (also computed for quadratic slots, used for
    zero-spend records); ``note`` one line saying MROI was estimated, how, and caveats.
    """

    mroi: np.ndarray
    mroi_se: np.ndarray
    method: list[str]
    elasticity: np.ndarray
    note: str


def _distinct(x: np.ndarray, unit: float) -> int:
    return len(np.unique(np.round(x / (SPREAD * unit))))


def _power_fit(x: np.ndarray, r: np.ndarray, unit: float) -> tuple[float, float] | None:
    """(elasticity, its se) from one slot's records, or None when not identified."""
    ok = (x > 0) & (r > 0)
    if ok.sum() < 2 or ((x[ok] - x[ok].mean()) ** 2).sum() <= (SPREAD * unit) ** 2:
        return None
    fit = stats.linregress(np.log(x[ok]), np.log(r[ok]))
    se = float(fit.stderr) if ok.sum() >= 3 and np.isfinite(fit.stderr) else float("nan")
    return float(np.clip(fit.slope, *ELASTICITY_RANGE)), se


def _quadratic_fit(x: np.ndarray, r: np.ndarray, unit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(MROI, se) at the records from a concave local quadratic, or None when unusable."""
    H = x.size
    if H < 3 or _distinct(x, unit) < 3:
        return None
    X = np.column_stack([np.ones(H), x, x * x])
    coef, *_ = np.linalg.lstsq(X, r, rcond=None)
    d = coef[1] + 2 * coef[2] * x
    if coef[2] > 0 or (d < 0).any():
        return None
    se = np.full(H, np.nan)
    if H > 3:
        s2 = float(((r - X @ coef) ** 2).sum() / (H - 3))
        cov = s2 * np.linalg.pinv(X.T @ X)
        J = np.column_stack([np.zeros(H), np.ones(H), 2 * x])
        se = np.sqrt(np.maximum(np.einsum("hi,ij,hj->h", J, cov, J), 0.0))
    return d, se


def estimate_mroi(alloc, returns, unit: float, labels: list[str] | None = None) -> MroiEstimate:
    """Estimate MROI ``(H, T)`` from spend and return records ``(H, T)``; see the module doc."""
    x = np.atleast_2d(np.asarray(alloc, float))
    r = np.atleast_2d(np.asarray(returns, float))
    if x.shape != r.shape:
        raise ValueError(f"allocation and return records differ in shape: {x.shape} vs {r.shape}")
    H, T = x.shape
    labels = labels or [f"slot{t + 1}" for t in range(T)]
    power = [_power_fit(x[:, t], r[:, t], unit) for t in range(T)]
    known = [p[0] for p in power if p is not None]
    borrowed = float(np.median(known)) if known else DEFAULT_ELASTICITY
    e = np.array([p[0] if p is not None else borrowed for p in power])
    e_se = np.array([p[1] if p is not None else np.nan for p in power])
    pos = x > 0
    roi = np.where(pos, r / np.where(pos, x, 1.0), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        both = pos & (r > 0)
        log_a = np.array([np.mean(np.log(r[both[:, t], t]) - e[t] * np.log(x[both[:, t], t]))
                          if both[:, t].any() else np.nan for t in range(T)])
    at_zero = e * np.exp(log_a) * (0.05 * unit) ** (e - 1)
    mroi = np.where(pos, e * roi, np.where(np.isfinite(at_zero), at_zero, 0.0))
    mroi_se = np.where(pos, e_se * roi, np.nan)
    method = ["power" if p is not None else "borrowed" for p in power]
    for t in range(T):
        quad = _quadratic_fit(x[:, t], r[:, t], unit)
        if quad is not None:
            mroi[:, t], mroi_se[:, t] = quad
            method[t] = "quadratic"
    note = (f"MROI estimated from returns ({H} record{'s' if H != 1 else ''} per slot): "
            + ", ".join(f"{labels[t]} {method[t]}" for t in range(T))
            + " (quadratic = local least-squares curve, power = constant elasticity R = a*x^e)")
    if "borrowed" in method:
        who = ", ".join(labels[t] for t in range(T) if method[t] == "borrowed")
        src = "the median of the other slots" if known else "a square-root response"
        note += (f"; {who}: fewer than two distinct positive spends with a positive return, elasticity "
                 f"{borrowed:.2f} assumed ({src})")
    return MroiEstimate(mroi=mroi, mroi_se=mroi_se, method=method, elasticity=e, note=note)


def mroi_task(task: Task) -> tuple[Task, str | None]:
    """The task with MROI records: unchanged (note None) when it already has them, else
    estimated from its return records with a note saying so."""
    if task.observes != "return":
        return task, None
    alloc = np.array([rec.allocation for rec in task.history], float)
    rets = np.array([rec.return_ for rec in task.history], float)
    est = estimate_mroi(alloc, rets, task.unit, task.slot_labels)
    history = [Record(allocation=list(rec.allocation), mroi=[float(v) for v in m])
               for rec, m in zip(task.history, est.mroi)]
    return task.model_copy(update={"history": history}), est.note
