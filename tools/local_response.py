"""The per-slot local response model: a straight line of MROI against spend, per slot.

One model serves three readers, so they agree with each other: the ``local-model``
baseline (``policies.baselines``) plans with its slopes (made steeper by their standard
error, :func:`planning_slopes`, so an uncertain slope takes a shorter step), the self-check
(``tools.self_check``) judges a plan's moves against it, and the plan report
(``tools.plan_report``) predicts each slot's MROI and the change in return from it.

Model, per slot ``t``, fitted by least squares over the records (spend ``x_k``, MROI
``r_k``): ``r_t(b) = level_t + slope_t * (b - center_t)``, ``center_t`` the mean spend and
``level_t`` the mean MROI. Integrating it gives the slot's response curve, so the change
in return from moving spend ``c -> b`` is ``integral_c^b r_t``, a quadratic in ``b``.

Uncertainty: the residuals of every slot around its own least-squares line pool into one
variance ``sigma^2`` (slots share the measurement process, and three records per slot
cannot estimate a variance each; a slot whose own slope is unusable for planning still
measures noise with it, so a borrowed slope's misfit is not mistaken for noise);
a slot with ``n`` records contributes ``n - 2`` degrees of freedom (``n - 1`` when its
spend never varied and only its level is fitted). Standard least-squares algebra then
gives ``var(level) = sigma^2 / n`` and ``var(slope) = sigma^2 / Sxx`` (independent, the
line being centred), hence standard errors for predicted MROI and for the change in
return. A slot whose spend never varied has no slope estimate: it borrows one for
planning (see :func:`local_slopes`) but carries no interval away from its current spend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["local_slopes", "planning_slopes", "usable_slopes", "LocalResponse", "fit_local_response"]

_EPS = 1e-12
#: A slot's spend "varied" when its standard deviation across records exceeds this share of B/T.
SPREAD = 0.02


def _fit_lines(win_alloc: np.ndarray, win_mroi: np.ndarray, unit: np.ndarray):
    """Per-slot least-squares lines over ``(N, w, T)`` windows and their pooled noise, in
    one pass: ``(sxx, varied, own slope, sigma^2, dof)``. ``own`` is 0 where the spend
    never varied; ``sigma^2`` is 0 where no degrees of freedom are left. Noise is judged by
    each slot's own line (even a slope unusable for planning), so a borrowed slope's
    misfit is not counted as noise."""
    w = win_alloc.shape[1]
    x = win_alloc - win_alloc.mean(axis=1, keepdims=True)
    y = win_mroi - win_mroi.mean(axis=1, keepdims=True)
    sxx = (x * x).sum(axis=1)
    varied = sxx > (SPREAD * unit[:, None]) ** 2
    own = np.where(varied, (x * y).sum(axis=1) / np.maximum(sxx, _EPS), 0.0)
    resid = y - own[:, None, :] * x
    dof = np.where(varied, w - 2, w - 1).clip(min=0).sum(axis=1)
    sigma2 = np.where(dof > 0, (resid**2).sum(axis=(1, 2)) / np.maximum(dof, 1), 0.0)
    return sxx, varied, own, sigma2, dof


def _usable(varied: np.ndarray, own: np.ndarray) -> np.ndarray:
    """A slot's own slope is used when its spend varied and the fitted slope is negative."""
    return varied & (own < 0)


def _with_borrowed(varied: np.ndarray, own: np.ndarray, win_mroi: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Own slopes where usable (spend varied, slope negative); elsewhere the median usable
    slope of the environment, or ``-mean(r) / (B/T)`` when it has none."""
    usable = _usable(varied, own)
    slope = np.where(usable, own, np.nan)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(slope, axis=1)
    prior = -np.maximum(np.abs(win_mroi[:, -1, :]).mean(axis=1), _EPS) / unit
    med = np.where(np.isfinite(med), med, prior)
    return np.where(usable, slope, med[:, None])


def usable_slopes(win_alloc: np.ndarray, win_mroi: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """``(N, T)`` mask of the slots whose own slope :func:`local_slopes` uses (spend varied,
    fitted slope negative); the others borrow one. A row with none at all plans on the
    ``-mean(r) / (B/T)`` prior alone."""
    _, varied, own, _, _ = _fit_lines(win_alloc, win_mroi, unit)
    return _usable(varied, own)


def local_slopes(win_alloc: np.ndarray, win_mroi: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Per-slot least-squares slope dMROI/dspend over the window, negative where usable.

    Batched: ``win_alloc``/``win_mroi`` are ``(N, w, T)``, ``unit`` is ``(N,)`` (B/T).
    Slots whose spend barely varies in the window (or whose fitted slope is not
    negative) borrow the median usable slope of their own environment; environments
    with none at all use ``-mean(r) / (B/T)`` (MROI halves over one uniform share).
    """
    _, varied, own, _, _ = _fit_lines(win_alloc, win_mroi, unit)
    return _with_borrowed(varied, own, win_mroi, unit)


def planning_slopes(win_alloc: np.ndarray, win_mroi: np.ndarray, unit: np.ndarray, z: float) -> np.ndarray:
    """:func:`local_slopes` made ``z`` standard errors steeper: the slopes a plan should use.

    A plan divides the MROI gap it closes by the slope, so a slope estimated too shallow
    from noisy, closely spaced records sends the plan far past the optimum (one such step
    cost 17% of the optimal value in a 3-slot task). Planning on ``slope - z * se`` keeps
    the step short exactly where the records leave the slope uncertain and leaves it
    alone where they lie on a line (``se`` = 0). ``se = sigma / sqrt(Sxx)`` is the slope's
    standard error of :class:`LocalResponse`, batched; a slot whose spend never varied,
    and a window with no residual degrees of freedom, is not shifted. Batched like
    :func:`local_slopes`; ``z`` = 0 returns it unchanged.
    """
    sxx, varied, own, sigma2, _ = _fit_lines(win_alloc, win_mroi, unit)
    slope = _with_borrowed(varied, own, win_mroi, unit)
    se = np.where(varied, np.sqrt(sigma2[:, None] / np.maximum(sxx, _EPS)), 0.0)
    return slope - max(z, 0.0) * se


@dataclass(frozen=True)
class LocalResponse:
    """A fitted per-slot linear MROI model for one task (arrays are ``(T,)``).

    ``varied[t]`` is False when slot t's spend never varied across the records: its
    ``slope`` is then borrowed and nothing about it away from ``center`` is known.
    ``sigma`` is the pooled residual standard deviation (None when no degrees of freedom
    are left), ``dof`` its degrees of freedom.
    """

    center: np.ndarray
    level: np.ndarray
    slope: np.ndarray
    n: np.ndarray
    sxx: np.ndarray
    varied: np.ndarray
    sigma: float | None
    dof: int

    def mroi(self, b) -> np.ndarray:
        """Predicted MROI at spend ``b``."""
        return self.level + self.slope * (np.asarray(b, float) - self.center)

    def mroi_se(self, b) -> np.ndarray:
        """Standard error of the predicted MROI; ``nan`` where unknown (no sigma, or a slot
        whose spend never varied, away from its one spend)."""
        b = np.asarray(b, float)
        if self.sigma is None:
            return np.full(b.shape, np.nan)
        d = b - self.center
        slope_part = np.where(self.varied, d * d / np.maximum(self.sxx, _EPS), np.where(d == 0, 0.0, np.nan))
        return self.sigma * np.sqrt(1.0 / self.n + slope_part)

    def gain(self, b, current) -> np.ndarray:
        """Per-slot change in return from moving spend ``current -> b`` (integral of MROI)."""
        b, c = np.asarray(b, float), np.asarray(current, float)
        return self.level * (b - c) + 0.5 * self.slope * ((b - self.center) ** 2 - (c - self.center) ** 2)

    def gain_se(self, b, current) -> np.ndarray:
        """Standard error of :meth:`gain` per slot; ``nan`` where unknown."""
        b, c = np.asarray(b, float), np.asarray(current, float)
        if self.sigma is None:
            return np.full(b.shape, np.nan)
        delta = b - c
        quad = 0.5 * ((b - self.center) ** 2 - (c - self.center) ** 2)
        slope_part = np.where(self.varied, quad * quad / np.maximum(self.sxx, _EPS),
                              np.where(delta == 0, 0.0, np.nan))
        return self.sigma * np.sqrt(delta * delta / self.n + slope_part)


def fit_local_response(alloc, mroi, unit: float) -> LocalResponse:
    """Fit :class:`LocalResponse` to records ``alloc``, ``mroi`` of shape ``(H, T)``, H >= 1.

    Slopes are exactly those of :func:`local_slopes` over the same records: the best
    estimate, which predictions and the self-check use. The ``local-model`` plan steps on
    :func:`planning_slopes`, the same slopes made steeper by their uncertainty.
    """
    alloc = np.atleast_2d(np.asarray(alloc, float))
    mroi = np.atleast_2d(np.asarray(mroi, float))
    if alloc.shape != mroi.shape or alloc.shape[0] < 1:
        raise ValueError(f"records must both have shape (H>=1, T); got {alloc.shape} and {mroi.shape}")
    H, T = alloc.shape
    center, level = alloc.mean(0), mroi.mean(0)
    units = np.array([float(unit)])
    sxx, varied, own, sigma2, dof = _fit_lines(alloc[None], mroi[None], units)
    slope = _with_borrowed(varied, own, mroi[None], units)[0]
    sxx, varied, sigma2, dof = sxx[0], varied[0], float(sigma2[0]), int(dof[0])
    sigma = float(np.sqrt(sigma2)) if dof > 0 else None
    return LocalResponse(center=center, level=level, slope=slope, n=np.full(T, float(H)), sxx=sxx,
                         varied=varied, sigma=sigma, dof=dof)
