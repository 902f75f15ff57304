"""Numeric baseline policies: the yardsticks DARA is measured against, and SFT teachers.

Every baseline is vectorised over a batch of environments: it reads the window of
records a role may see (`win_alloc`, `win_mroi`, shape ``(N, w, T)``, oldest first) and
returns a raw proposal ``(N, T)`` in task units. Proposals are not guaranteed feasible;
the budget tool (``tools.budget``) projects them, exactly as it does for LLM answers, so
all methods are compared under the same constraint handling.

- ``uniform``: B/T everywhere; ignores the history (what an advertiser does with no data).
- ``heuristic``: the reference implementation's prompt rule: start from the latest
  allocation and move a fraction ``f`` of the lowest-MROI slot's budget to the
  highest-MROI slot.
- ``gradient``: a projected step along the MROI gaps ``r_t - mean(r)``, normalised by the
  mean MROI so the step is scale-free (budgets of 6 and of 1e5 behave alike).
- ``hold``: keep the latest allocation (no refinement); the Optimizer slot of the
  ``reasoner-only`` ablation.
- ``local-model``: fit each slot's MROI slope from the window (least squares of MROI on
  spend per slot, made steeper by half its standard error so uncertain slopes take short
  steps: ``tools.local_response.planning_slopes``), then equalise MROI on that local
  linear model by water-filling, inside a trust region. It sees only what a prompt shows, never the oracle, which is
  why it is the SFT teacher.

No torch here: importing this module must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.base import Decision, DecisionRequest
from tools.local_response import planning_slopes, usable_slopes  # the one local response model, shared with the self-check

BASELINES = ("uniform", "heuristic", "gradient", "local-model", "hold")

_EPS = 1e-12
#: Standard errors by which ``local-model`` steepens its fitted slopes before planning.
#: Chosen on seed-123 environments, not the held-out seed 7 (docs/results.md,
#: "A shorter step where the slope is uncertain"; ``benchmarks/planning_slope.py``).
PLANNING_Z = 0.5


def _as_bounds(budget, lower, upper, n: int, T: int):
    budget = np.broadcast_to(np.asarray(budget, float), (n,)).astype(float)
    lower = np.zeros((n, T)) if lower is None else np.broadcast_to(np.asarray(lower, float), (n, T))
    upper = np.full((n, T), np.inf) if upper is None else np.broadcast_to(np.asarray(upper, float), (n, T))
    return budget, lower, upper


def uniform(win_alloc, win_mroi, budget, lower=None, upper=None) -> np.ndarray:
    """B/T in every slot."""
    n, _, T = np.shape(win_alloc)
    budget, _, _ = _as_bounds(budget, lower, upper, n, T)
    return np.repeat((budget / T)[:, None], T, axis=1)


def heuristic(win_alloc, win_mroi, budget, lower=None, upper=None, f: float = 0.2) -> np.ndarray:
    """Move a fraction ``f`` of the lowest-MROI slot's spend to the highest-MROI slot."""
    b = np.array(win_alloc[:, -1, :], dtype=float)
    r = np.asarray(win_mroi[:, -1, :], float)
    rows = np.arange(b.shape[0])
    hi, lo = np.argmax(r, axis=1), np.argmin(r, axis=1)
    moved = f * b[rows, lo]
    moved = np.where(hi == lo, 0.0, moved)
    b[rows, lo] -= moved
    b[rows, hi] += moved
    return b


def hold(win_alloc, win_mroi, budget, lower=None, upper=None) -> np.ndarray:
    """Keep the latest allocation unchanged."""
    return np.array(win_alloc[:, -1, :], dtype=float)


def gradient(win_alloc, win_mroi, budget, lower=None, upper=None, step: float = 0.6) -> np.ndarray:
    """One step along the normalised MROI gaps: ``b + step * (B/T) * (r - mean r) / mean r``."""
    n, _, T = np.shape(win_alloc)
    budget, _, _ = _as_bounds(budget, lower, upper, n, T)
    b = np.asarray(win_alloc[:, -1, :], float)
    r = np.asarray(win_mroi[:, -1, :], float)
    mean = r.mean(axis=1, keepdims=True)
    scale = np.maximum(np.abs(mean), np.abs(r).max(axis=1, keepdims=True) * 1e-3) + _EPS
    return b + step * (budget / T)[:, None] * (r - mean) / scale


def local_model(
    win_alloc,
    win_mroi,
    budget,
    lower=None,
    upper=None,
    trust: float = 1.0,
    iters: int = 60,
    z: float = PLANNING_Z,
    grow: float = 2.0,
    grow_after: float = 0.9,
    no_slope_trust: float | None = None,
    unfunded_cap: bool = True,
) -> np.ndarray:
    """Equalise MROI on a per-slot linear model fitted to the window.

    Model: ``r_t(b) = r_t0 + s_t (b - b_t0)`` around the latest record, ``s_t < 0``.
    Water-filling on it: find ``lam`` with ``sum_t clip(b_t0 + (lam - r_t0)/s_t) = B``,
    each slot clipped to its bounds and to a trust region of ``trust * B/T`` around the
    current spend (a linear model is only trusted locally). The slopes are the fitted
    ones made ``z`` standard errors steeper (:func:`tools.local_response.planning_slopes`):
    noisy, closely spaced records give shallow slopes and overlong steps otherwise.

    Two trust-region options (docs/results.md §11 measures them):

    - ``grow`` (default 2; 1 = off): a slot whose last two moves in the window went the
      same way, the last at least ``grow_after * trust``, may move ``grow * trust``, as a
      trust-region method widens its radius after steps that kept going: a nearly linear
      channel (MROI flat in spend) far from its best spend otherwise crawls there one
      trust region a round.
    - ``no_slope_trust`` (off by default): the trust region (units of B/T) of a window in which no slot has
      a usable slope (:func:`tools.local_response.usable_slopes`). Its plan rests on the
      ``-mean(r)/(B/T)`` prior alone, which is nearly flat when the MROI level is near
      zero (at a converged optimum), so the full trust region can be a wild step.

    A few-shot history row may have spent far more than ``B`` (real logs: up to 2.4 times
    it), and then no trust region around the last row holds the budget (nor, with
    ``trust`` < 1 or upper bounds, around one that spent far less): the region widens to
    the plain bounds. ``unfunded_cap`` (default on; off = the behaviour before it) keeps
    one limit there: a slot no record in the window funded gets at most one trust region,
    raised only as far as the budget needs when the other slots' bounds cannot hold it.
    Its slope is borrowed, not fitted, so a high MROI at zero spend otherwise drew the
    whole budget onto it in one step (a Robyn environment: 84% regret at round 1).
    """
    if grow < 1.0 or grow_after <= 0.0 or (no_slope_trust is not None and no_slope_trust <= 0.0):
        raise ValueError(f"local-model: grow must be >= 1, grow_after and no_slope_trust > 0; got grow={grow}, "
                         f"grow_after={grow_after}, no_slope_trust={no_slope_trust}")
    win_alloc = np.asarray(win_alloc, float)
    win_mroi = np.asarray(win_mroi, float)
    n, _, T = win_alloc.shape
    budget, lower, upper = _as_bounds(budget, lower, upper, n, T)
    unit = budget / T
    b0 = win_alloc[:, -1, :]
    r0 = win_mroi[:, -1, :]
    s = planning_slopes(win_alloc, win_mroi, unit, z)
    radius = _trust_radius(win_alloc, win_mroi, unit, trust, grow, grow_after, no_slope_trust) * unit[:, None]
    # the trust region's ends, each clipped into the bounds: a slot whose last spend lies
    # more than a radius below its lower bound (or above its upper) gets that bound, not an
    # empty interval (below a floor np.clip returned its upper end, under the floor; above a
    # cap its lower end made the row look infeasible, widening every slot to its bounds)
    lo = np.clip(np.maximum(b0 - radius, 0.0), lower, upper)
    hi = np.clip(b0 + radius, lower, upper)
    # If the trust region cannot hold the budget, widen it to the plain bounds.
    infeasible = (lo.sum(axis=1) > budget) | (hi.sum(axis=1) < budget)
    lo = np.where(infeasible[:, None], lower, lo)
    hi = np.where(infeasible[:, None], np.minimum(upper, np.maximum(budget, 1.0)[:, None] * 1e6), hi)
    if unfunded_cap:
        hi = _cap_unfunded(win_alloc, lo, hi, radius, budget, iters)

    def alloc(lam):
        return np.clip(b0 + (lam[:, None] - r0) / s, lo, hi)

    # alloc is non-increasing in lam (s < 0); bracket lam by the MROI the model
    # predicts at the box corners.
    lam_lo = (r0 + s * (hi - b0)).min(axis=1) - 1.0
    lam_hi = (r0 + s * (lo - b0)).max(axis=1) + 1.0
    for _ in range(iters):
        mid = 0.5 * (lam_lo + lam_hi)
        too_much = alloc(mid).sum(axis=1) > budget
        lam_lo = np.where(too_much, mid, lam_lo)
        lam_hi = np.where(too_much, lam_hi, mid)
    return alloc(0.5 * (lam_lo + lam_hi))


def _cap_unfunded(win_alloc, lo, hi, radius, budget, iters: int) -> np.ndarray:
    """``hi`` with each slot no record in the window funded capped at its trust region,
    or at the lowest common level above it at which the slots' bounds still hold the
    budget (bisection); a row that cannot hold it even uncapped keeps ``hi``."""
    never = (win_alloc <= 0).all(axis=1)

    def capped(level):
        return np.where(never, np.minimum(hi, np.maximum(lo, np.maximum(radius, level[:, None]))), hi)

    plain = capped(np.zeros(len(budget)))
    short = plain.sum(axis=1) < budget
    if short.any():
        level_lo, level_hi = np.zeros(len(budget)), np.where(short, np.maximum(budget, 1.0) * 1e6, 0.0)
        for _ in range(iters):
            mid = 0.5 * (level_lo + level_hi)
            enough = capped(mid).sum(axis=1) >= budget
            level_lo = np.where(enough, level_lo, mid)
            level_hi = np.where(enough, mid, level_hi)
        out = capped(level_hi)
        return np.where((out.sum(axis=1) >= budget * (1 - 1e-12))[:, None], out, hi)
    return plain


def _trust_radius(win_alloc, win_mroi, unit, trust, grow, grow_after, no_slope_trust) -> np.ndarray:
    """Per-slot trust region of :func:`local_model` in units of B/T, ``(N, T)``."""
    n, w, T = win_alloc.shape
    radius = np.full((n, T), float(trust))
    if grow != 1.0 and w >= 3:
        last = (win_alloc[:, -1] - win_alloc[:, -2]) / unit[:, None]
        before = (win_alloc[:, -2] - win_alloc[:, -3]) / unit[:, None]
        radius = np.where((last * before > 0) & (np.abs(last) >= grow_after * trust), grow * trust, radius)
    if no_slope_trust is not None:
        none = ~usable_slopes(win_alloc, win_mroi, unit).any(axis=1)
        radius[none] = no_slope_trust
    return radius


_FUNCS = {"uniform": uniform, "heuristic": heuristic, "gradient": gradient, "local-model": local_model,
          "hold": hold}


def propose_arrays(name: str, win_alloc, win_mroi, budget, lower=None, upper=None, **kw) -> np.ndarray:
    """Run baseline ``name`` on a batch of windows; returns raw proposals ``(N, T)``."""
    if name not in _FUNCS:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    win_alloc = np.asarray(win_alloc, float)
    win_mroi = np.asarray(win_mroi, float)
    if win_alloc.ndim != 3 or win_alloc.shape != win_mroi.shape or win_alloc.shape[1] < 1:
        raise ValueError(
            f"windows must both have shape (N, w>=1, T); got allocations {win_alloc.shape} "
            f"and mroi {win_mroi.shape}"
        )
    return _FUNCS[name](win_alloc, win_mroi, budget, lower, upper, **kw)


@dataclass
class BaselinePolicy:
    """A numeric baseline behind the :class:`policies.base.Policy` interface.

    Requests are grouped by window length and solved as arrays, so a batch of episodes
    costs one vectorised call. The ``text`` of a decision says which rule produced it,
    so an analyst reading an episode sees where a plan came from.
    """

    name: str
    params: dict | None = None

    def __post_init__(self):
        if self.name not in _FUNCS:
            raise ValueError(f"unknown baseline {self.name!r}; choose one of {', '.join(BASELINES)}")

    def propose(self, requests: list[DecisionRequest]) -> list[Decision]:
        out: list[Decision | None] = [None] * len(requests)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, req in enumerate(requests):
            if not req.window:
                raise ValueError(f"request {i}: baseline {self.name!r} needs at least one record in the window")
            groups.setdefault((len(req.window), req.task.periods), []).append(i)
        for idx in groups.values():
            reqs = [requests[i] for i in idx]
            wa = np.array([[r.allocation for r in q.window] for q in reqs], float)
            wm = np.array([[r.mroi for r in q.window] for q in reqs], float)
            budget = np.array([q.task.budget for q in reqs])
            lower = np.stack([q.task.lower_array for q in reqs])
            upper = np.stack([q.task.upper_array for q in reqs])
            props = propose_arrays(self.name, wa, wm, budget, lower, upper, **(self.params or {}))
            for i, p in zip(idx, props):
                out[i] = Decision(allocation=[float(v) for v in p], text=f"[{self.name} baseline]", error=None)
        return out  # type: ignore[return-value]


def make_baseline(name: str, **params) -> BaselinePolicy:
    """Build a named baseline policy (``uniform``, ``heuristic``, ``gradient``, ``local-model``, ``hold``)."""
    return BaselinePolicy(name=name, params=params or None)
