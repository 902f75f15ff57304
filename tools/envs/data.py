"""Data-driven environment families: many environments from one fitted spend/return log.

``robyn``, ``meridian-national`` and ``meridian-geo`` are presets (``PRESETS``) over the
logs shipped with the package; ``data`` fits any CSV (``csv=``, ``spend_columns=``,
``revenue=``, optional ``controls=``, ``geo_column=``, ``adstock=``). The response model
and its fit live in ``tools.envs.response_fit``, reading logs in ``tools.envs.spend_logs``.

- Row ``i`` uses geo ``i % G`` and draw ``d = i // G``; draw 0 is the point estimate,
  draws ``d >= 1`` sample the parameters from the Gaussian approximation
  ``N(theta_hat, s^2 (J^T J)^-1)`` of the fit (clipped to the bounds; channel effects
  perturbed multiplicatively so they stay positive) — the fit's own uncertainty — so an
  agent is tested on every curve the data cannot rule out (``resample=False``: point
  estimates only).
- Budget ``B`` and the few-shot history come from observed periods of that geo: draw 0
  takes the ``history`` most recent periods, later draws sample ``history`` periods from
  the last ``window`` (52) periods; ``B`` is the mean total spend of those periods
  (``total_budget=`` overrides). History MROI is the fitted derivative at the observed
  spend, times the feedback noise. MROI is revenue per unit of spend.
"""

from __future__ import annotations

import numpy as np

from tools.envs.base import noise_factor
from tools.envs.response_fit import ResponseFit, fit_response
from tools.envs.spend_logs import PRESETS, data_dir
from tools.envs.synthetic import HillEnv

__all__ = ["data_dir", "PRESETS", "fit_response", "ResponseFit", "DataEnv", "BUILDERS"]

_FIT_OPTIONS = ("csv", "spend_columns", "revenue", "controls", "geo_column", "adstock", "starts")


class DataEnv(HillEnv):
    """Hill-envelope environment whose parameters came from a fitted log."""

    family = "data"


def _options(family: str, kw: dict) -> dict:
    """The preset's column roles, overridden by the caller's fit options."""
    opts = dict(PRESETS.get(family, {}))
    for k in _FIT_OPTIONS:
        if k in kw and kw[k] is not None:
            opts[k] = kw[k]
    if family == "data":
        for k in ("csv", "spend_columns", "revenue"):
            if k not in opts:
                raise ValueError(f"family 'data' needs {k}= (e.g. csv='logs.csv', spend_columns=['tv', 'search'], revenue='revenue')")
    return opts


def _draw_parameters(fit: ResponseFit, g: np.ndarray, d: np.ndarray, rng, resample: bool):
    """Per-row ``beta, K, s (m, C)``: the point estimate for draw 0 (or when not
    resampling), a draw from the fit's Gaussian approximation otherwise. The normal
    variates are drawn for every row so the random stream does not depend on ``d``."""
    m, C = len(g), fit.spend.shape[2]
    try:
        L = np.linalg.cholesky(fit.cov + 1e-12 * np.eye(len(fit.cov)) * max(1.0, np.abs(np.diag(fit.cov)).max()))
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(fit.cov)
        L = V * np.sqrt(np.maximum(w, 0))
    z = rng.standard_normal((m, len(fit.theta_hat)))
    beta, K, s = np.empty((m, C)), np.empty((m, C)), np.empty((m, C))
    for i in range(m):
        if d[i] == 0 or not resample:
            bb, KK, ss = fit.beta, fit.K, fit.s
        else:
            delta = L @ z[i]
            th = np.clip(fit.theta_hat + delta, fit.lower, fit.upper)
            # Effects are positive: perturb them multiplicatively (same first-order
            # spread) so a draw never switches a channel off by clipping at zero.
            bh = fit.theta_hat[fit.beta_slice]
            rel = np.clip(delta[fit.beta_slice] / np.where(bh > 0, bh, 1.0), -2.0, 2.0)
            th[fit.beta_slice] = bh * np.exp(rel)
            bb, KK, ss, _ = fit.unpack(th)
        beta[i], K[i], s[i] = bb[g[i]], KK[g[i]], ss
    return beta, K, s


def _history(fit: ResponseFit, g: np.ndarray, d: np.ndarray, H: int, window: int, rng) -> np.ndarray:
    """Observed spend of ``H`` periods per row ``(m, H, C)``: the latest for draw 0, a
    sorted sample of the last ``window`` periods otherwise."""
    _, P, C = fit.spend.shape
    hist = np.empty((len(g), H, C))
    for i in range(len(g)):
        if d[i] == 0:
            ps = np.arange(P - H, P)
        else:
            lo_p = max(0, P - max(window, H))
            ps = np.sort(rng.choice(np.arange(lo_p, P), size=H, replace=False))
        hist[i] = fit.spend[g[i], ps]
    return hist


def _build(family: str):
    def build(spec, rows, rng, kw):
        opts = _options(family, kw)
        fit = fit_response(
            opts["csv"], opts["spend_columns"], opts["revenue"], opts.get("controls", ()),
            opts.get("geo_column"), opts.get("adstock", False), opts.get("starts", 3),
        )
        G, P, C = fit.spend.shape
        g, d = rows % G, rows // G
        beta, K, s = _draw_parameters(fit, g, d, rng, kw.get("resample", True))
        H = min(int(spec["history"]), P)
        hist = _history(fit, g, d, H, int(kw.get("window", 52)), rng)
        if kw.get("total_budget") is not None:
            B = np.full(len(rows), float(kw["total_budget"]))
        else:
            B = hist.sum(-1).mean(-1) if H else fit.spend[g, -1].sum(-1)
        env = DataEnv(
            # "geo" (index into fit.geos) rides along as a parameter so it survives subset/concat
            params={"beta": beta, "K": K, "s": s, "geo": np.repeat(g[:, None].astype(float), C, 1)},
            budget=B,
            hist_alloc=hist,
            hist_mroi=np.zeros_like(hist),
            labels=list(fit.channels),
            noise=float(spec["noise"]),
            family=family,
        )
        env.hist_mroi = env.mroi_any(hist) * noise_factor(rng, env.noise, hist.shape)
        return env

    return build


BUILDERS = {name: _build(name) for name in ("robyn", "meridian-national", "meridian-geo", "data")}
