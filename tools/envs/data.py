"""Data-driven environments: response curves fitted to a user's spend/return logs.

Model (one joint additive fit, because revenue is one total over all channels)::

    revenue_p = base_g + sum_j gamma_j * control_pj
                + sum_c beta_gc * hill(adstock(spend_pc) / S_gc; K_c, s_c)

- ``hill(x; K, s) = x^s / (x^s + K^s)``, with ``s`` in ``[1, 2]`` and ``K`` between
  0.05x the mean spend and the channel's largest observed spend (Robyn's rule: the
  half-saturation point lies inside the observed range). ``s >= 1`` keeps the
  marginal ROI finite at zero spend (logs have many zero weeks); for ``s > 1`` the
  environment serves the derivative of the concave envelope (see
  ``tools.envs.synthetic.hill_mroi``) so the oracle stays exact.
- ``S_gc`` is the mean spend of channel ``c`` (in geo ``g``): spend is fitted in units of
  its own typical level, so ``K`` is comparable across channels and geos.
- ``adstock`` (off by default) is normalised geometric carry-over
  ``a_p = theta a_{p-1} + (1 - theta) x_p``; a constant spend ``x`` has adstock ``x``,
  so the served per-period curve is the steady-state one whatever ``theta`` is.
- Geos (a ``geo_column``): *shared shape, per-geo scale* — ``K_c, s_c, theta_c`` and the
  control effects are shared, ``base_g`` and ``beta_gc`` are per geo, spend is scaled per
  geo. Geos differ in size by orders of magnitude; the shape of saturation is what the
  data can pin down jointly, the level is what differs.
- Many environments: row ``i`` uses geo ``i % G`` and draw ``d = i // G``; draw 0 is the
  point estimate, draws ``d >= 1`` sample the parameters from the Gaussian approximation
  ``N(theta_hat, s^2 (J^T J)^-1)`` of the fit (clipped to the bounds; channel effects
  perturbed multiplicatively so they stay positive) — the fit's own
  uncertainty — so an agent is tested on every curve the data cannot rule out.
- Budget ``B`` and the few-shot history come from observed periods of that geo: draw 0
  takes the ``history`` most recent periods, later draws sample ``history`` periods
  from the last ``window`` (52) periods; ``B`` is the mean total spend of those periods
  (``total_budget=`` overrides). History MROI is the fitted derivative at the observed
  spend, times the feedback noise. MROI is revenue per unit of spend.

Fits are cached per (file, options) in-process so building many batches is cheap.
"""

from __future__ import annotations

import csv
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

from tools.envs.base import noise_factor
from tools.envs.synthetic import HillEnv

__all__ = ["data_dir", "PRESETS", "fit_response", "ResponseFit", "DataEnv", "BUILDERS"]

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

K_BOUNDS = (0.05, 20.0)  # half-saturation, in units of the channel's mean spend
S_BOUNDS = (1.0, 2.0)  # > 2 makes the envelope's flat part swallow the budget range
THETA_BOUNDS = (0.0, 0.9)


def data_dir() -> Path:
    """``$DARA_DATA_DIR``, else ``<repo>/../shared/data`` (repo = parent of ``tools/``)."""
    env = os.environ.get("DARA_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _resolve_csv(csv_path: str) -> Path:
    p = Path(csv_path)
    if not p.is_absolute() and not p.exists():
        p = data_dir() / p
    if not p.is_file():
        raise FileNotFoundError(
            f"spend/return log not found: {p} (set DARA_DATA_DIR or pass csv= with a full path)"
        )
    return p


def _read_csv(path: Path) -> dict[str, list[str]]:
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
        x = np.array([float(v) if v not in ("", "NA", "na", "NaN") else np.nan for v in cols[name]])
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
    unpack: object = field(repr=False, default=None)
    beta_slice: slice = field(default_factory=lambda: slice(0, 0))
    info: dict = field(default_factory=dict)


def _hill(x, K, s):
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        r = np.power(K / np.maximum(x, 1e-300), s)
    return 1.0 / (1.0 + r)


def _adstock(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Normalised geometric adstock along the period axis; x (G, P, C)."""
    out = np.empty_like(x)
    for c in range(x.shape[2]):
        th = float(theta[c])
        if th <= 0:
            out[:, :, c] = x[:, :, c]
            continue
        zi = (th * x[:, :1, c])  # start at steady state
        out[:, :, c] = lfilter([1 - th], [1, -th], x[:, :, c], axis=1, zi=zi)[0]
    return out


@functools.lru_cache(maxsize=32)
def _fit_cached(path: str, mtime: float, spend: tuple, revenue: tuple, controls: tuple, geo: str | None,
                adstock: bool, starts: int) -> ResponseFit:
    return _fit(Path(path), list(spend), list(revenue), list(controls), geo, adstock, starts)


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
    p = _resolve_csv(str(csv))
    rev = (revenue,) if isinstance(revenue, str) else tuple(revenue)
    if not spend_columns:
        raise ValueError("spend_columns is empty: name at least one spend column")
    return _fit_cached(str(p.resolve()), p.stat().st_mtime, tuple(spend_columns), rev, tuple(controls or ()),
                       geo_column, bool(adstock), int(starts))


def _fit(path: Path, spend_cols, revenue, controls, geo_col, adstock, starts) -> ResponseFit:
    cols = _read_csv(path)
    wanted = list(spend_cols) + list(revenue) + list(controls) + ([geo_col] if geo_col else [])
    missing = [c for c in wanted if c not in cols]
    if missing:
        raise ValueError(
            f"{path.name}: missing column(s) {missing}; available columns: {list(cols)}"
        )
    P_all = len(cols[spend_cols[0]])
    X = np.stack([_numeric(cols, c, path) for c in spend_cols], axis=1)  # (P_all, C)
    y = np.ones(P_all)
    for c in revenue:
        y = y * _numeric(cols, c, path)
    Z = np.stack([_numeric(cols, c, path) for c in controls], axis=1) if controls else np.zeros((P_all, 0))
    if (X < 0).any():
        c = spend_cols[int(np.argwhere(X < 0)[0][1])]
        raise ValueError(f"{path.name}: spend column {c!r} has negative values")
    if geo_col:
        keys = cols[geo_col]
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
    G, P, C = X3.shape
    J_ = Z3.shape[2]
    if P < 8:
        raise ValueError(f"{path.name}: only {P} periods; need at least 8 to fit response curves")
    for c in range(C):
        col = X3[:, :, c]
        if np.all(col == 0):
            raise ValueError(f"degenerate fit: spend column {spend_cols[c]!r} is all zero in {path.name}")
        if np.all(col == col.flat[0]) or np.any(np.ptp(col, axis=1) == 0):
            raise ValueError(f"degenerate fit: spend column {spend_cols[c]!r} is constant (in some geo) in {path.name}")
    if np.ptp(y2) == 0:
        raise ValueError(f"degenerate fit: revenue {revenue} is constant in {path.name}")
    S = X3.mean(axis=1)  # (G, C) per geo spend scale
    S = np.where(S > 0, S, 1.0)
    ys = np.abs(y2).mean(axis=1, keepdims=True)  # (G,1)
    ys = np.where(ys > 0, ys, 1.0)
    Y = y2 / ys
    Zm, Zsd = Z3.mean(axis=(0, 1)), Z3.std(axis=(0, 1))
    Zsd = np.where(Zsd > 0, Zsd, 1.0)
    Zn = (Z3 - Zm) / Zsd
    Xs = X3 / S[:, None, :]

    # packed: base (G), beta (G*C), gamma (J), logK (C), s (C), [theta (C)]
    nb, nB = G, G * C
    sl_base = slice(0, nb)
    sl_beta = slice(nb, nb + nB)
    sl_gam = slice(nb + nB, nb + nB + J_)
    o = nb + nB + J_
    sl_K = slice(o, o + C)
    sl_s = slice(o + C, o + 2 * C)
    sl_th = slice(o + 2 * C, o + 3 * C) if adstock else None
    npar = o + (3 if adstock else 2) * C

    def unpack(th):
        base = th[sl_base]
        beta = th[sl_beta].reshape(G, C)
        gam = th[sl_gam]
        K = np.exp(th[sl_K])
        s = th[sl_s]
        tht = th[sl_th] if adstock else np.zeros(C)
        return base, beta, gam, K, s, tht

    def predict(th):
        base, beta, gam, K, s, tht = unpack(th)
        A = _adstock(Xs, tht) if adstock else Xs
        h = _hill(A, K[None, None, :], s[None, None, :])
        return base[:, None] + (h * beta[:, None, :]).sum(-1) + Zn @ gam

    def resid(th):
        return (predict(th) - Y).ravel()

    rows_geo = np.repeat(np.arange(G), P)

    def jac(th):
        # Analytic Jacobian (adstock off): ~50x faster than finite differences for geo fits.
        base, beta, gam, K, s, _ = unpack(th)
        w = _hill(Xs, K[None, None, :], s[None, None, :])  # (G,P,C)
        ww = w * (1.0 - w)
        with np.errstate(divide="ignore", invalid="ignore"):
            lx = np.where(Xs > 0, np.log(np.where(Xs > 0, Xs, 1.0)) - np.log(K)[None, None, :], 0.0)
        Jm = np.zeros((G * P, npar))
        Jm[np.arange(G * P), rows_geo] = 1.0
        hb = w.reshape(G * P, C)
        for g in range(G):
            Jm[g * P:(g + 1) * P, nb + g * C: nb + (g + 1) * C] = hb[g * P:(g + 1) * P]
        Jm[:, sl_gam] = Zn.reshape(G * P, J_)
        bw = beta[:, None, :] * ww
        Jm[:, sl_K] = (-s[None, None, :] * bw).reshape(G * P, C)
        Jm[:, sl_s] = (bw * lx).reshape(G * P, C)
        return Jm

    lb = np.full(npar, -np.inf)
    ub = np.full(npar, np.inf)
    lb[sl_beta] = 0.0
    # Half-saturation inside the observed spend range (as Robyn's gamma hyperparameter):
    # beyond it the data only sees the linear part and the fit drifts to a corner.
    kmax = np.clip((X3.max(axis=1) / S).min(axis=0), K_BOUNDS[0] * 2, K_BOUNDS[1])
    lb[sl_K], ub[sl_K] = math.log(K_BOUNDS[0]), np.log(kmax)
    lb[sl_s], ub[sl_s] = S_BOUNDS
    if adstock:
        lb[sl_th], ub[sl_th] = THETA_BOUNDS

    # Dense SVD of a (G*P) x params Jacobian dominates geo fits; LSMR is much cheaper there.
    tr_solver = "lsmr" if npar > 40 else "exact"
    best = None
    inits = [(1.0, 1.2), (0.5, 1.0), (2.0, 2.0), (0.3, 1.5), (4.0, 1.1)][: max(1, starts)]
    for K0, s0 in inits:
        th0 = np.zeros(npar)
        th0[sl_base] = 0.5
        th0[sl_beta] = 0.5 / C
        th0[sl_K] = np.clip(math.log(K0), lb[sl_K] + 1e-6, ub[sl_K] - 1e-6)
        th0[sl_s] = s0
        if adstock:
            th0[sl_th] = 0.3
        try:
            res = least_squares(resid, th0, jac="2-point" if adstock else jac, bounds=(lb, ub), method="trf",
                                x_scale="jac", max_nfev=2000, tr_solver=tr_solver)
        except Exception as e:  # pragma: no cover - scipy internal failures
            last_err = e
            continue
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        raise ValueError(f"degenerate fit: the response model did not converge on {path.name}")
    th = best.x
    r = best.fun
    dof = max(r.size - npar, 1)
    s2 = float(r @ r) / dof
    Jm = best.jac
    cov = s2 * np.linalg.pinv(Jm.T @ Jm)
    cov = 0.5 * (cov + cov.T)
    base, beta, gam, K, s, tht = unpack(th)
    if not np.any(beta > 1e-9):
        raise ValueError(
            f"degenerate fit: no spend column has a positive effect on revenue in {path.name}"
        )
    ss_tot = float(((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum())
    r2 = 1.0 - float(r @ r) / ss_tot if ss_tot > 0 else 0.0

    def to_env_params(thx):
        _, beta_, _, K_, s_, th_ = unpack(thx)
        return beta_ * ys, K_[None, :] * S, s_, th_

    b_abs, K_abs, s_, th_ = to_env_params(th)
    return ResponseFit(
        path=str(path), channels=list(spend_cols), geos=geos, spend=X3,
        beta=b_abs, K=K_abs, s=s_, theta=th_, theta_hat=th, cov=cov, lower=lb, upper=ub,
        r2=r2, rmse=float(np.sqrt(s2)), unpack=to_env_params, beta_slice=sl_beta,
        info={"cost": float(best.cost), "nfev": int(best.nfev), "status": int(best.status), "params": npar},
    )


class DataEnv(HillEnv):
    """Hill-envelope environment whose parameters came from a fitted log."""

    family = "data"


def _options(family: str, kw: dict) -> dict:
    opts = dict(PRESETS.get(family, {}))
    for k in ("csv", "spend_columns", "revenue", "controls", "geo_column", "adstock", "starts"):
        if k in kw and kw[k] is not None:
            opts[k] = kw[k]
    if family == "data":
        for k in ("csv", "spend_columns", "revenue"):
            if k not in opts:
                raise ValueError(f"family 'data' needs {k}= (e.g. csv='logs.csv', spend_columns=['tv', 'search'], revenue='revenue')")
    return opts


def _build(family: str):
    def build(spec, rows, rng, kw):
        opts = _options(family, kw)
        fit = fit_response(
            opts["csv"], opts["spend_columns"], opts["revenue"], opts.get("controls", ()),
            opts.get("geo_column"), opts.get("adstock", False), opts.get("starts", 3),
        )
        m = len(rows)
        G, P, C = fit.spend.shape
        H = int(spec["history"])
        window = int(kw.get("window", 52))
        resample = kw.get("resample", True)
        g = rows % G
        d = rows // G
        # parameter draws (always drawn, so the random stream does not depend on d)
        try:
            L = np.linalg.cholesky(fit.cov + 1e-12 * np.eye(len(fit.cov)) * max(1.0, np.abs(np.diag(fit.cov)).max()))
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(fit.cov)
            L = V * np.sqrt(np.maximum(w, 0))
        z = rng.standard_normal((m, len(fit.theta_hat)))
        beta = np.empty((m, C))
        K = np.empty((m, C))
        s = np.empty((m, C))
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
        # history periods
        Hh = min(H, P)
        hist = np.empty((m, Hh, C))
        for i in range(m):
            if d[i] == 0:
                ps = np.arange(P - Hh, P)
            else:
                lo_p = max(0, P - max(window, Hh))
                ps = np.sort(rng.choice(np.arange(lo_p, P), size=Hh, replace=False))
            hist[i] = fit.spend[g[i], ps]
        if kw.get("total_budget") is not None:
            B = np.full(m, float(kw["total_budget"]))
        else:
            B = hist.sum(-1).mean(-1) if Hh else fit.spend[g, -1].sum(-1)
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
