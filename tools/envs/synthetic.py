"""Synthetic environment families: `quadratic` (the reference), `exponential`, `hill`,
and `curves` (an analyst's own vectorised response curves).

All synthetic families are parameterised in units of the uniform share ``u = B/T`` so
that one shape of problem serves any budget and number of slots; at the reference size
(T=6, B=6, u=1) the quadratic family is the reference implementation's, number for
number in distribution.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tools.envs.base import EnvBatch, noise_factor, sample_history_box, sample_history_shares

__all__ = ["QuadraticEnv", "ExponentialEnv", "HillEnv", "CurvesEnv", "BUILDERS"]


# ----------------------------------------------------------------------------------------------
class QuadraticEnv(EnvBatch):
    """``MROI(x) = clip(-a (x - z)^2 + v, 0, 1)`` with ``a = v / (r - z)^2``.

    ``z < 0`` is the vertex (so MROI falls for all ``x >= 0``), ``r > 0`` the spend at
    which MROI reaches 0 (it stays 0 beyond: a plateau), ``v <= 1`` the vertex height (so
    the clip at 1 never binds for ``x >= 0``). Parameters are stored in spend units.
    """

    family = "quadratic"

    def _mroi(self, b, p):
        return np.clip(-p["a"] * (b - p["z"]) ** 2 + p["v"], 0.0, 1.0)

    def _value(self, b, p):
        # MROI equals the raw quadratic q on [2z - r, r] (where 0 <= q <= v <= 1) and 0
        # outside; 0 lies inside that interval, so V(b) = F(clip(b)) - F(0).
        a, z, v, r = p["a"], p["z"], p["v"], p["r"]
        m = np.clip(b, 2 * z - r, r)

        def F(x):
            return v * x - a / 3.0 * (x - z) ** 3

        return F(m) - F(np.zeros_like(m))

    def _inverse(self, lam, p):
        a, z, v, r = p["a"], p["z"], p["v"], p["r"]
        m0 = np.clip(v - a * z**2, 0.0, 1.0)  # MROI at zero spend
        inside = (lam > 0) & (lam < m0)
        x = z + np.sqrt(np.maximum(v - np.where(inside, lam, 0.0), 0.0) / a)
        x = np.where(inside, x, 0.0)
        x = np.where(lam == 0, r, x)  # start of the zero plateau
        x = np.where(lam < 0, np.inf, x)
        return np.where(lam >= m0, 0.0, x)


def _draw_quadratic(rng, m, T, u, kw):
    z = rng.uniform(-2.0, -0.1, size=(m, T))
    r = rng.uniform(0.3, 4.0, size=(m, T))
    v = rng.uniform(0.5, 1.0, size=(m, T))
    z, r = z * u, r * u
    a = v / (r - z) ** 2
    return {"a": a, "z": z, "v": v, "r": r}


# ----------------------------------------------------------------------------------------------
class ExponentialEnv(EnvBatch):
    """``MROI(x) = m exp(-k x)``: steady exponential decay of returns (``m`` = first-euro
    ROI, ``1/k`` = the spend over which it falls by ``e``)."""

    family = "exponential"

    def _mroi(self, b, p):
        return p["m"] * np.exp(-p["k"] * b)

    def _value(self, b, p):
        return p["m"] / p["k"] * -np.expm1(-p["k"] * b)

    def _inverse(self, lam, p):
        m, k = p["m"], p["k"]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log(m / np.where(lam > 0, lam, 1.0)) / k
        x = np.where(lam <= 0, np.inf, x)
        return np.where(lam >= m, 0.0, x)


def _draw_exponential(rng, m, T, u, kw):
    mm = rng.uniform(0.5, 1.0, size=(m, T))
    k = rng.uniform(0.3, 1.5, size=(m, T)) / u
    return {"m": mm, "k": k}


# ----------------------------------------------------------------------------------------------
def hill_tangent(K, s):
    """Tangent point ``x_t = K (s-1)^(1/s)`` of the line from the origin to the Hill
    curve, and the envelope's plateau slope per unit beta ``(s-1)^(1-1/s) / (s K)``
    (both continuous at ``s = 1``, where ``x_t = 0`` and the slope is ``1/K``)."""
    sm1 = np.maximum(s - 1.0, 0.0)
    xt = K * np.power(sm1, 1.0 / s)
    slope = np.power(sm1, 1.0 - 1.0 / s) / (s * K)
    return xt, slope


def hill_mroi(b, beta, K, s):
    """Derivative of the *concave envelope* of ``beta x^s / (x^s + K^s)``.

    For ``s <= 1`` that is the Hill derivative itself. For ``s > 1`` the curve is
    S-shaped and maximising a sum of them is non-convex (no exact water-filling oracle,
    regret could go negative), so below the tangent point the environment serves the
    envelope: a constant MROI equal to the average return at the tangent point (what an
    advertiser gets by pulsing spend). Above it, the ordinary Hill derivative.
    """
    xt, slope = hill_tangent(K, s)
    bs = np.maximum(b, 1e-300)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ratio = np.power(K / bs, s)  # (K/x)^s ; derivative = beta s/x * w (1-w), w = 1/(1+ratio)
        w = 1.0 / (1.0 + ratio)
        d = beta * s / bs * w * (1.0 - w)
    d = np.where(b <= xt, beta * slope, d)
    return np.where(np.isfinite(d), d, beta * slope)


def hill_value(b, beta, K, s):
    xt, slope = hill_tangent(K, s)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ratio = np.power(K / np.maximum(b, 1e-300), s)
        v = beta / (1.0 + ratio)
    return np.where(b <= xt, beta * slope * b, v)


def hill_inverse(lam, beta, K, s):
    """Solve ``hill_mroi(x) = lam`` on the decreasing branch (``x >= x_t``).

    Substituting ``w = x^s/(x^s+K^s) = 1 - e^{-v}`` turns the equation into
    ``phi(v) = (1-1/s) log(1-e^{-v}) - (1+1/s) v = log(lam K / (beta s))`` with ``phi``
    concave and its slope confined to ``[-(1+1/s), -1]`` on the branch ``v >= log s``: a
    well-conditioned root that Newton reaches in a handful of steps from the asymptote
    (exact in one step when ``s = 1``). Then ``x = K expm1(v)^(1/s)``.
    """
    xt, slope = hill_tangent(K, s)
    c = beta * slope
    inside = (lam > 0) & (lam < c)
    ok = beta > 0
    a1 = 1.0 - 1.0 / s
    a2 = 1.0 + 1.0 / s
    with np.errstate(divide="ignore", invalid="ignore"):
        logq = np.log(np.where(inside, lam, 1.0)) + np.log(K) - np.log(np.where(ok, beta, 1.0) * s)
    vt = np.log(s)
    v = np.maximum(-logq / a2, vt)
    for _ in range(50):
        em = np.expm1(v)
        pos = (a1 > 0) & (em > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(pos, a1 * np.log(-np.expm1(-v)), 0.0) - a2 * v  # a1 log(1-e^-v) - a2 v
            dphi = np.where(pos, a1 / em, 0.0) - a2
        step = np.where(inside, (phi - logq) / dphi, 0.0)
        v = np.maximum(v - step, vt)
        if np.all(np.abs(step) <= 1e-14 * np.maximum(1.0, np.abs(v))):
            break
    with np.errstate(over="ignore"):
        x = K * np.power(np.expm1(v), 1.0 / s)
    x = np.where(inside, np.maximum(x, xt), 0.0)
    return np.where(lam <= 0, np.inf, x)


class HillEnv(EnvBatch):
    """MROI = derivative of (the concave envelope of) ``beta x^s / (x^s + K^s)``:
    the saturation curve of Robyn / Meridian / PyMC-Marketing."""

    family = "hill"

    def _mroi(self, b, p):
        return hill_mroi(b, p["beta"], p["K"], p["s"])

    def _value(self, b, p):
        return hill_value(b, p["beta"], p["K"], p["s"])

    def _inverse(self, lam, p):
        return hill_inverse(lam, p["beta"], p["K"], p["s"])


def _draw_hill(rng, m, T, u, kw):
    K = rng.uniform(0.2, 1.0, size=(m, T))
    s = rng.uniform(1.0, 2.0, size=(m, T))
    m0 = rng.uniform(0.5, 1.0, size=(m, T))  # peak MROI (plateau level)
    _, slope = hill_tangent(K, s)
    beta = m0 / slope  # in units where u = 1
    # Rescale to spend units: K scales with u; value beta scales with u so MROI is unchanged.
    return {"beta": beta * u, "K": K * u, "s": s}


# ----------------------------------------------------------------------------------------------
class CurvesEnv(EnvBatch):
    """User-supplied response curves: ``mroi_fns[t](x) -> MROI`` for an array ``x`` of
    spends (vectorised), optionally ``value_fns[t](x) -> integral_0^x MROI``. Curves must be
    non-increasing for the oracle to be the true optimum. All rows share the curves; rows
    differ in their sampled history and noise."""

    family = "curves"

    def _fns(self):
        return self.extra["mroi_fns"], self.extra.get("value_fns")

    def _mroi(self, b, p):
        fns, _ = self._fns()
        out = np.empty_like(b)
        for t, f in enumerate(fns):
            out[..., t] = np.asarray(f(b[..., t]), dtype=float)
        return out

    def _value(self, b, p):
        _, vfns = self._fns()
        if vfns is None:
            return super()._value(b, p)
        out = np.empty_like(b)
        for t, f in enumerate(vfns):
            out[..., t] = np.asarray(f(b[..., t]), dtype=float)
        return out


# ----------------------------------------------------------------------------------------------
def _bounds(kw, m, T, u, B):
    def one(name, default):
        x = kw.get(name)
        if x is None:
            return np.full((m, T), default)
        a = np.asarray(x, dtype=float)
        if a.ndim == 1 and a.size != T:
            raise ValueError(f"{name} has {a.size} entries, expected periods={T}")
        if np.isnan(a).any():
            raise ValueError(f"{name} contains NaN: {x!r}")
        return np.array(np.broadcast_to(a, (m, T)), dtype=float)

    lo, hi = one("lower", 0.0), one("upper", np.inf)
    if (lo < 0).any():
        raise ValueError(f"lower must be non-negative, got {kw.get('lower')!r}")
    if (lo > hi).any():
        raise ValueError(f"lower {kw.get('lower')!r} exceeds upper {kw.get('upper')!r}")
    if lo[0].sum() > B or hi[0].sum() < B:
        raise ValueError(
            f"bounds cannot sum to budget {B}: sum(lower) = {lo[0].sum():.6g}, sum(upper) = {hi[0].sum():.6g}"
        )
    return lo, hi


def _synthetic_builder(cls, draw):
    def build(spec, rows, rng, kw):
        m = len(rows)
        T, B, H = int(spec["periods"]), float(spec["budget"]), int(spec["history"])
        u = B / T
        params = {} if draw is None else draw(rng, m, T, u, kw)
        lo, hi = _bounds(kw, m, T, u, B)
        if kw.get("history_concentration") is None:
            hist = sample_history_box(rng, m * H, T, kw.get("history_sampler", "auto")).reshape(m, H, T) * u
        else:
            hist = sample_history_shares(rng, m * H, T, float(kw["history_concentration"])).reshape(m, H, T) * u
        if H and (kw.get("lower") is not None or kw.get("upper") is not None):
            from tools.budget import project

            hist = project(hist.reshape(m * H, T), B, np.repeat(lo, H, 0), np.repeat(hi, H, 0)).reshape(m, H, T)
        extra = {}
        if cls is CurvesEnv:
            extra = {"mroi_fns": kw["mroi_fns"], "value_fns": kw.get("value_fns"), "periods": T}
        env = cls(
            params=params,
            budget=np.full(m, B),
            lower=lo,
            upper=hi,
            hist_alloc=hist,
            hist_mroi=np.zeros_like(hist),
            noise=float(spec["noise"]),
            extra=extra,
        )
        env.hist_mroi = env.mroi_any(hist) * noise_factor(rng, env.noise, hist.shape)
        return env

    return build


BUILDERS: dict[str, Callable] = {
    "quadratic": _synthetic_builder(QuadraticEnv, _draw_quadratic),
    "exponential": _synthetic_builder(ExponentialEnv, _draw_exponential),
    "hill": _synthetic_builder(HillEnv, _draw_hill),
    "curves": _synthetic_builder(CurvesEnv, None),
}
