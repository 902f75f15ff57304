"""The generalist training distribution: a fresh task recipe per prompt.

A fixed pool of T = 6, B = 6, noiseless environments teaches an adapter one box. Analysts
bring 3 channels or 24 hours, budgets of 1 or 10^6, per-channel limits and noisy
feedback, so the generalist recipe draws, per step and per prompt:

- per step: the slot count ``T ~ U{periods_range}`` and the number of history rows
  ``H ~ U{history_range}`` (one of each per step keeps a batch's arrays rectangular;
  across steps every combination is visited);
- per prompt: the family (evenly over ``families``), the budget ``B ~ logU(budget_range)``
  (prompts are scale-free, so this checks that nothing leaks scale), the observation
  noise ``cv ~ U(noise_range)`` (on history and feedback alike), in a share
  ``bounds_share`` of tasks, per-slot lower and upper limits, and, in a share
  ``history_scale_share`` of tasks, history rows whose totals are not B (each row times a
  factor ``~ logU(history_scale_range)``): past periods of a real spend log rarely spent
  exactly the budget being planned, and a planner trained only on rows summing to B
  misreads the scale of such a history; and, in a share ``history_concentration_share``,
  history rows whose spend shares are ``Dirichlet(a)`` with ``a ~ logU(history_concentration_range)``
  instead of within 30% of uniform: a real week often puts most of the budget in one or
  two channels, and the best first move from such a row is several units of B/T, a size
  the near-uniform rows never ask for.

Each prompt's environment is generated alone (``make_envs(n=1)``) from a seed derived from
``(seed, env_seed, step, prompt)``, so a batch is a pure function of ``(cfg, seed, step)`` exactly as
with the fixed pool, and ``--resume`` reproduces the next batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tools.envs import EnvBatch, make_envs


@dataclass(frozen=True)
class TaskRecipe:
    """What one training prompt's environment is made of."""

    family: str
    periods: int
    history: int
    budget: float
    noise: float
    seed: int
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    row_scales: tuple[float, ...] | None = None  # history row totals / B (None = all 1)
    history_concentration: float | None = None  # Dirichlet spend shares of history rows (None = near-uniform box)

    def build(self) -> EnvBatch:
        """The environment (a batch of one)."""
        kw = {}
        if self.lower is not None:
            kw["lower"] = list(self.lower)
        if self.upper is not None:
            kw["upper"] = list(self.upper)
        if self.history_concentration is not None:
            kw["history_concentration"] = self.history_concentration
        env = make_envs(self.family, 1, periods=self.periods, budget=self.budget, seed=self.seed,
                        noise=self.noise, history=self.history, **kw)
        if self.row_scales is not None:
            rescale_history(env, np.asarray(self.row_scales, float), self.seed)
        return env


def rescale_history(env: EnvBatch, scales: np.ndarray, seed: int) -> None:
    """Multiply history row ``h`` of ``env`` (a batch of one) by ``scales[h]`` and observe its
    MROI again at the new spend, with the environment's own noise (a fresh draw seeded from
    ``seed``, so the build stays a pure function of the recipe)."""
    from tools.envs.base import noise_factor

    alloc = env.hist_alloc * scales[None, :, None]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    env.hist_alloc = alloc
    env.hist_mroi = env.mroi_any(alloc) * noise_factor(rng, env.noise, alloc.shape)


def _int_range(name: str, r, default: int) -> tuple[int, int]:
    if not r:
        return default, default
    lo, hi = int(r[0]), int(r[-1])
    if lo > hi:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(r)!r}")
    return lo, hi


def _log_uniform(rng: np.random.Generator, r, size=None):
    """Log-uniform draw(s) from ``[r[0], r[-1]]`` (one ``rng.uniform`` call)."""
    u = rng.uniform(math.log(float(r[0])), math.log(float(r[-1])), size=size)
    return math.exp(u) if size is None else np.array([math.exp(x) for x in u])


def draw_bounds(rng: np.random.Generator, T: int, budget: float) -> tuple[tuple | None, tuple | None]:
    """Per-slot limits a planner meets: about 40% of slots get a floor of 10-60% of the
    uniform share, about 40% a cap of 1.2-2.5x it. Always feasible (floors sum below B,
    caps above it)."""
    u = budget / T
    lo = np.where(rng.uniform(size=T) < 0.4, rng.uniform(0.1, 0.6, size=T) * u, 0.0)
    hi = np.where(rng.uniform(size=T) < 0.4, rng.uniform(1.2, 2.5, size=T) * u, np.inf)
    lower = tuple(float(x) for x in lo) if (lo > 0).any() else None
    upper = tuple(float(x) for x in hi) if np.isfinite(hi).any() else None
    return lower, upper


def draw_recipes(cfg, n: int, rng: np.random.Generator) -> list[TaskRecipe]:
    """``n`` recipes for one step (``cfg`` is a ``training.config.RolloutConfig``)."""
    t_lo, t_hi = _int_range("periods_range", cfg.periods_range, cfg.periods)
    h_lo, h_hi = _int_range("history_range", cfg.history_range, cfg.history)
    T = int(rng.integers(t_lo, t_hi + 1))
    H = int(rng.integers(h_lo, h_hi + 1))
    out = []
    for _ in range(n):
        family = cfg.families[int(rng.integers(0, len(cfg.families)))]
        if cfg.budget_range:
            budget = float(_log_uniform(rng, cfg.budget_range))
        else:
            budget = float(cfg.budget)
        noise = float(rng.uniform(cfg.noise_range[0], cfg.noise_range[-1])) if cfg.noise_range else float(cfg.noise)
        lower = upper = None
        if cfg.bounds_share > 0 and rng.uniform() < cfg.bounds_share:
            lower, upper = draw_bounds(rng, T, budget)
        seed = int(rng.integers(0, 2**31 - 1))
        scales = None
        if cfg.history_scale_range and rng.uniform() < cfg.history_scale_share:
            scales = tuple(float(x) for x in _log_uniform(rng, cfg.history_scale_range, size=H))
        conc = None  # drawn only when configured, so older configs keep their random stream
        if cfg.history_concentration_range and rng.uniform() < cfg.history_concentration_share:
            conc = float(_log_uniform(rng, cfg.history_concentration_range))
        out.append(TaskRecipe(family, T, H, budget, noise, seed, lower, upper, scales, conc))
    return out


def validate_ranges(cfg) -> None:
    """Checks of the generalist fields of a ``RolloutConfig`` (called by its ``validate``)."""
    for name, lo_min in (("periods_range", 1), ("history_range", 0)):
        r = getattr(cfg, name)
        if r:
            if len(r) != 2:
                raise ValueError(f"{name} must be [low, high], got {list(r)!r}")
            lo, hi = _int_range(name, r, 0)
            if lo < lo_min:
                raise ValueError(f"{name} must start at >= {lo_min}, got {list(r)!r}")
    if cfg.history_range and cfg.history_range[0] < cfg.window - 1:
        raise ValueError(f"history_range {list(cfg.history_range)!r}: windows of {cfg.window} records "
                         f"need at least {cfg.window - 1} history rows")
    _check_float_range("budget_range", cfg.budget_range, positive=True)
    _check_float_range("noise_range", cfg.noise_range, positive=False)
    if not 0 <= cfg.bounds_share <= 1:
        raise ValueError(f"bounds_share must be in [0, 1], got {cfg.bounds_share!r}")
    _check_float_range("history_scale_range", cfg.history_scale_range, positive=True)
    if not 0 <= cfg.history_scale_share <= 1:
        raise ValueError(f"history_scale_share must be in [0, 1], got {cfg.history_scale_share!r}")
    _check_float_range("history_concentration_range", cfg.history_concentration_range, positive=True)
    if not 0 <= cfg.history_concentration_share <= 1:
        raise ValueError(f"history_concentration_share must be in [0, 1], got {cfg.history_concentration_share!r}")


def _check_float_range(name: str, r, positive: bool) -> None:
    """An optional ``[low, high]`` of finite numbers with low <= high (low > 0 if ``positive``)."""
    if not r:
        return
    lo_ok = (0 < r[0]) if positive else (0 <= r[0])
    if len(r) != 2 or not (lo_ok and r[0] <= r[1]) or not all(math.isfinite(x) for x in r):
        low = "0 < low" if positive else "0 <= low"
        raise ValueError(f"{name} must be [low, high] with {low} <= high, got {list(r)!r}")


def is_generalist(cfg) -> bool:
    """True when any per-prompt range is set (otherwise the fixed pool is used)."""
    return bool(cfg.periods_range or cfg.history_range or cfg.budget_range or cfg.noise_range
                or cfg.bounds_share > 0)


def generalist_batch(source, n: int, step: int):
    """``n`` prompts for ``step`` from fresh recipes (``source`` is a
    ``training.rollouts.PromptSource``; returns its ``Prompts``)."""
    from policies.base import DecisionRequest
    from training.rollouts import Prompts, _records, chain_pool

    cfg, role = source.cfg, source.role
    rng = np.random.default_rng(np.random.SeedSequence([source.seed, cfg.env_seed], spawn_key=(int(step),)))
    recipes = draw_recipes(cfg, n, rng)
    envs = [r.build() for r in recipes]
    tasks = [e.task(0) for e in envs]
    T, H = recipes[0].periods, recipes[0].history
    w = H if role == "reasoner" else cfg.window
    WA, WM = np.zeros((n, w, T)), np.zeros((n, w, T))
    rnd = np.ones(n, int)
    for i, env in enumerate(envs):
        if role == "reasoner":
            WA[i], WM[i] = env.hist_alloc[0], env.hist_mroi[0]
            continue
        first = None
        if source.reasoner is not None:
            d = source.reasoner.propose([DecisionRequest("reasoner", tasks[i], tasks[i].history)])[0]
            if d.allocation is not None:
                first = np.asarray(d.allocation, float)[None]
        A, M = chain_pool(env, cfg.max_rounds - 1, source.chain, cfg.window, cfg.teacher_noise, rng, first=first)
        k = int(rng.integers(2, cfg.max_rounds + 1))  # decision round
        end = H + k - 1  # records available before deciding round k
        WA[i], WM[i], rnd[i] = A[0, end - w:end], M[0, end - w:end], k
    reqs = [DecisionRequest(role, tasks[i], _records(WA[i], WM[i]))  # type: ignore[arg-type]
            for i in range(n)]
    return Prompts(role, reqs, envs, np.arange(n), np.zeros(n, int), WA, WM,
                   np.array([e.budget[0] for e in envs]), np.stack([e.lower[0] for e in envs]),
                   np.stack([e.upper[0] for e in envs]), rnd, [r.family for r in recipes])
