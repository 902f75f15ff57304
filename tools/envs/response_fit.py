"""The joint additive Hill (+ optional adstock) response model fitted to a spend/return log.

Model (one joint fit, because revenue is one total over all channels)::

    revenue_p = base_g + sum_j gamma_j * control_pj
                + sum_c beta_gc * hill(adstock(spend_pc) / S_gc; K_c, s_c)

- ``hill(x; K, s) = x^s / (x^s + K^s)``, with ``s`` in ``[1, 2]`` and ``K`` between
  0.05x the mean spend and the channel's largest observed spend (Robyn's rule: the
  half-saturation point lies inside the observed range; beyond it the data only sees
  the linear part and the fit drifts to a corner). ``s >= 1`` keeps the marginal ROI
  finite at zero spend (logs have many zero weeks); for ``s > 1`` the environment serves
  the derivative of the concave envelope (``tools.envs.synthetic.hill_mroi``) so the
  oracle stays exact.
- ``S_gc`` is the mean spend of channel ``c`` (in geo ``g``): spend is fitted in units of
  its own typical level, so ``K`` is comparable across channels and geos.
- ``adstock`` (off by default) is normalised geometric carry-over
  ``a_p = theta a_{p-1} + (1 - theta) x_p``; a constant spend ``x`` has adstock ``x``,
  so the served per-period curve is the steady-state one whatever ``theta`` is.
- Geos: *shared shape, per-geo scale* — ``K_c, s_c, theta_c`` and the control effects
  are shared, ``base_g`` and ``beta_gc`` are per geo, spend is scaled per geo. Geos differ
  in size by orders of magnitude; the shape of saturation is what the data can pin down
  jointly, the level is what differs.

The fit is bounded nonlinear least squares (``scipy.optimize.least_squares``, trust-region
reflective) from a few starting shapes; its covariance ``s^2 (J^T J)^-1`` is kept so the
environment builder can draw every curve the data cannot rule out. Fits are cached per
(file, modification time, options) in-process, so building many batches is cheap.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

from tools.envs.spend_logs import SpendLog, read_log, resolve_csv

__all__ = ["K_BOUNDS", "S_BOUNDS", "THETA_BOUNDS", "ResponseFit", "fit_response", "hill", "geometric_adstock"]

K_BOUNDS = (0.05, 20.0)  # half-saturation, in units of the channel's mean spend
S_BOUNDS = (1.0, 2.0)  # > 2 makes the envelope's flat part swallow the budget range
THETA_BOUNDS = (0.0, 0.9)

#: Starting (K, s) shapes of the multi-start fit; ``starts`` takes the first few.
_STARTS = [(1.0, 1.2), (0.5, 1.0), (2.0, 2.0), (0.3, 1.5), (4.0, 1.1)]


@dataclass
class ResponseFit:
    """A fitted joint response model (see module docstring); arrays are per geo ``(G, C)``."""

    path: str
    channels: list[str]
    geos: list[str]
    spend: np.ndarray  # (G, P, C) observed spend per period
    beta: np.ndarray  # (G, C) revenue units
    K: np.ndarray  # (G, C) spend units
    s: np.ndarray  # (C,)
    theta: np.ndarray  # (C,)
    theta_hat: np.ndarray  # packed parameter vector
    cov: np.ndarray  # packed covariance
    lower: np.ndarray
    upper: np.ndarray
    r2: float
    rmse: float
    #: packed vector -> (beta, K, s, theta) in revenue and spend units
    unpack: object = field(repr=False, default=None)
    beta_slice: slice = field(default_factory=lambda: slice(0, 0))
    info: dict = field(default_factory=dict)


def hill(x, K, s):
    """``x^s / (x^s + K^s)``, written as ``1 / (1 + (K/x)^s)`` so ``x = 0`` gives 0."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        r = np.power(K / np.maximum(x, 1e-300), s)
    return 1.0 / (1.0 + r)


def geometric_adstock(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Normalised geometric adstock along the period axis of ``x (G, P, C)``, started at
    steady state (the first period's spend has always been running)."""
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        th = float(theta[c])
        if th <= 0:
            out[:, :, c] = x[:, :, c]
            continue
        zi = th * x[:, :1, c]
        out[:, :, c] = lfilter([1 - th], [1, -th], x[:, :, c], axis=1, zi=zi)[0]
    return out


def fit_response(
    csv: str | Path,
    spend_columns: Sequence[str],
    revenue: str | Sequence[str],
    controls: Sequence[str] = (),
    geo_column: str | None = None,
    adstock: bool = False,
    starts: int = 3,
) -> ResponseFit:
    """Fit (or fetch from the in-process cache) the joint response model of a CSV log."""
    p = resolve_csv(csv)
    rev = (revenue,) if isinstance(revenue, str) else tuple(revenue)
    if not spend_columns:
        raise ValueError("spend_columns is empty: name at least one spend column")
    return _fit_cached(str(p.resolve()), p.stat().st_mtime, tuple(spend_columns), rev, tuple(controls or ()),
                       geo_column, bool(adstock), int(starts))


@functools.lru_cache(maxsize=32)
def _fit_cached(path: str, mtime: float, spend: tuple, revenue: tuple, controls: tuple, geo: str | None,
                with_adstock: bool, starts: int) -> ResponseFit:
    log = read_log(Path(path), spend, revenue, controls, geo)
    _check_fittable(log, revenue)
    problem = _JointProblem(log, with_adstock)
    best, lb, ub = _solve(problem, starts)
    return _result(problem, best, lb, ub)


def _check_fittable(log: SpendLog, revenue: Sequence[str]) -> None:
    """Refuse logs whose curves the data cannot identify, naming the column."""
    name = log.path.name
    G, P, C = log.spend.shape
    if P < 8:
        raise ValueError(f"{name}: only {P} periods; need at least 8 to fit response curves")
    for c in range(C):
        col = log.spend[:, :, c]
        if np.all(col == 0):
            raise ValueError(f"degenerate fit: spend column {log.channels[c]!r} is all zero in {name}")
        if np.all(col == col.flat[0]) or np.any(np.ptp(col, axis=1) == 0):
            raise ValueError(f"degenerate fit: spend column {log.channels[c]!r} is constant (in some geo) in {name}")
    if np.ptp(log.revenue) == 0:
        raise ValueError(f"degenerate fit: revenue {list(revenue)} is constant in {name}")


class _Layout:
    """Positions in the packed parameter vector:
    ``base (G) | beta (G*C) | gamma (J) | log K (C) | s (C) | [theta (C)]``."""

    def __init__(self, G: int, C: int, J: int, with_adstock: bool) -> None:
        self.G, self.C, self.J, self.adstock = G, C, J, with_adstock
        self.base = slice(0, G)
        self.beta = slice(G, G + G * C)
        self.gamma = slice(G + G * C, G + G * C + J)
        o = G + G * C + J
        self.logK = slice(o, o + C)
        self.s = slice(o + C, o + 2 * C)
        self.theta = slice(o + 2 * C, o + 3 * C) if with_adstock else None
        self.size = o + (3 if with_adstock else 2) * C

    def unpack(self, th: np.ndarray):
        """``(base, beta (G, C), gamma, K, s, theta)`` in the scaled units of the fit."""
        theta = th[self.theta] if self.adstock else np.zeros(self.C)
        return th[self.base], th[self.beta].reshape(self.G, self.C), th[self.gamma], np.exp(th[self.logK]), \
            th[self.s], theta


class _JointProblem:
    """One log's least-squares problem in scaled units: spend over its per-geo mean,
    revenue over its per-geo mean magnitude, controls standardised."""

    def __init__(self, log: SpendLog, with_adstock: bool) -> None:
        self.log = log
        X3, y2, Z3 = log.spend, log.revenue, log.controls
        G, P, C = X3.shape
        self.layout = _Layout(G, C, Z3.shape[2], with_adstock)
        S = X3.mean(axis=1)  # (G, C) per geo spend scale
        self.S = np.where(S > 0, S, 1.0)
        ys = np.abs(y2).mean(axis=1, keepdims=True)  # (G, 1)
        self.ys = np.where(ys > 0, ys, 1.0)
        self.Y = y2 / self.ys
        Zm, Zsd = Z3.mean(axis=(0, 1)), Z3.std(axis=(0, 1))
        Zsd = np.where(Zsd > 0, Zsd, 1.0)
        self.Zn = (Z3 - Zm) / Zsd
        self.Xs = X3 / self.S[:, None, :]
        self.rows_geo = np.repeat(np.arange(G), P)

    def predict(self, th: np.ndarray) -> np.ndarray:
        base, beta, gam, K, s, tht = self.layout.unpack(th)
        A = geometric_adstock(self.Xs, tht) if self.layout.adstock else self.Xs
        h = hill(A, K[None, None, :], s[None, None, :])
        return base[:, None] + (h * beta[:, None, :]).sum(-1) + self.Zn @ gam

    def residuals(self, th: np.ndarray) -> np.ndarray:
        return (self.predict(th) - self.Y).ravel()

    def jacobian(self, th: np.ndarray) -> np.ndarray:
        """Analytic Jacobian without adstock: ~50x faster than finite differences on geo fits."""
        lay = self.layout
        G, C, J = lay.G, lay.C, lay.J
        P = self.Xs.shape[1]
        _, beta, _, K, s, _ = lay.unpack(th)
        w = hill(self.Xs, K[None, None, :], s[None, None, :])  # (G, P, C)
        ww = w * (1.0 - w)
        with np.errstate(divide="ignore", invalid="ignore"):
            Xs = self.Xs
            lx = np.where(Xs > 0, np.log(np.where(Xs > 0, Xs, 1.0)) - np.log(K)[None, None, :], 0.0)
        Jm = np.zeros((G * P, lay.size))
        Jm[np.arange(G * P), self.rows_geo] = 1.0
        hb = w.reshape(G * P, C)
        for g in range(G):
            Jm[g * P:(g + 1) * P, G + g * C: G + (g + 1) * C] = hb[g * P:(g + 1) * P]
        Jm[:, lay.gamma] = self.Zn.reshape(G * P, J)
        bw = beta[:, None, :] * ww
        Jm[:, lay.logK] = (-s[None, None, :] * bw).reshape(G * P, C)
        Jm[:, lay.s] = (bw * lx).reshape(G * P, C)
        return Jm

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lay = self.layout
        lb = np.full(lay.size, -np.inf)
        ub = np.full(lay.size, np.inf)
        lb[lay.beta] = 0.0
        kmax = np.clip((self.log.spend.max(axis=1) / self.S).min(axis=0), K_BOUNDS[0] * 2, K_BOUNDS[1])
        lb[lay.logK], ub[lay.logK] = math.log(K_BOUNDS[0]), np.log(kmax)
        lb[lay.s], ub[lay.s] = S_BOUNDS
        if lay.adstock:
            lb[lay.theta], ub[lay.theta] = THETA_BOUNDS
        return lb, ub

    def start(self, K0: float, s0: float, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
        lay = self.layout
        th0 = np.zeros(lay.size)
        th0[lay.base] = 0.5
        th0[lay.beta] = 0.5 / lay.C
        th0[lay.logK] = np.clip(math.log(K0), lb[lay.logK] + 1e-6, ub[lay.logK] - 1e-6)
        th0[lay.s] = s0
        if lay.adstock:
            th0[lay.theta] = 0.3
        return th0

    def to_env_params(self, th: np.ndarray):
        """Packed vector -> ``(beta (G, C), K (G, C), s, theta)`` in revenue and spend units."""
        _, beta, _, K, s, theta = self.layout.unpack(th)
        return beta * self.ys, K[None, :] * self.S, s, theta


def _solve(problem: _JointProblem, starts: int):
    """``(best result, lower, upper)`` of the multi-start bounded least-squares fits; if no
    start succeeds the error carries each start's failure (and chains the last exception)."""
    lb, ub = problem.bounds()
    lay = problem.layout
    # Dense SVD of a (G*P) x params Jacobian dominates geo fits; LSMR is much cheaper there.
    tr_solver = "lsmr" if lay.size > 40 else "exact"
    jac = "2-point" if lay.adstock else problem.jacobian
    best, failures, last_error = None, [], None
    for K0, s0 in _STARTS[: max(1, starts)]:
        try:
            res = least_squares(problem.residuals, problem.start(K0, s0, lb, ub), jac=jac, bounds=(lb, ub),
                                method="trf", x_scale="jac", max_nfev=2000, tr_solver=tr_solver)
        except Exception as e:  # noqa: BLE001 - any solver failure of one start; reported below
            failures.append(f"start K={K0}, s={s0}: {type(e).__name__}: {e}")
            last_error = e
            continue
        if not np.all(np.isfinite(res.x)):
            failures.append(f"start K={K0}, s={s0}: non-finite parameters")
        elif best is None or res.cost < best.cost:
            best = res
    if best is None:
        raise ValueError(
            f"degenerate fit: the response model did not converge on {problem.log.path.name} "
            f"({'; '.join(failures)})"
        ) from last_error
    return best, lb, ub


def _result(problem: _JointProblem, best, lb: np.ndarray, ub: np.ndarray) -> ResponseFit:
    log, lay = problem.log, problem.layout
    th = best.x
    r = best.fun
    dof = max(r.size - lay.size, 1)
    s2 = float(r @ r) / dof
    Jm = best.jac
    cov = s2 * np.linalg.pinv(Jm.T @ Jm)
    cov = 0.5 * (cov + cov.T)
    _, beta, _, _, _, _ = lay.unpack(th)
    if not np.any(beta > 1e-9):
        raise ValueError(f"degenerate fit: no spend column has a positive effect on revenue in {log.path.name}")
    Y = problem.Y
    ss_tot = float(((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum())
    r2 = 1.0 - float(r @ r) / ss_tot if ss_tot > 0 else 0.0
    b_abs, K_abs, s_, th_ = problem.to_env_params(th)
    return ResponseFit(
        path=str(log.path), channels=list(log.channels), geos=log.geos, spend=log.spend,
        beta=b_abs, K=K_abs, s=s_, theta=th_, theta_hat=th, cov=cov, lower=lb, upper=ub,
        r2=r2, rmse=float(np.sqrt(s2)), unpack=problem.to_env_params, beta_slice=lay.beta,
        info={"cost": float(best.cost), "nfev": int(best.nfev), "status": int(best.status), "params": lay.size},
    )
