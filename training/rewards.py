"""The composite GRPO reward (the reference implementation's terms) as pure, batched numpy functions.

Every term maps arrays over a batch of ``N`` completions to an ``(N,)`` array; nothing
here touches a model or an environment. Allocation-space amounts are in **units of
B/T** (prompt units), so the reference coefficients, tuned at B = T = 6 (unit 1), apply
unchanged to any budget and any number of slots, and MROI is normalised by the largest
MROI shown in the prompt (as the prompt does), so data-driven tasks with MROI of 1e-5
score like synthetic ones.

Terms (:func:`composite` returns the total and each of them):

- ``env``: ``-alpha * sum_t |r_t - mean r|`` where ``r`` is the (normalised) MROI the
  environment returns for the allocation the budget tool would apply (the projection of
  the parsed answer). 0 when the answer does not parse.
- ``constraint``: wrong number of values (``-1.5`` too many; ``-3`` for one too few, one
  more per further missing value, at most ``-5``, also when nothing parses), budget
  (``-2 |sum b - B|`` Reasoner, ``-|sum b - B|`` Optimizer, in B/T units; also charged on
  a signed answer rejected as ``not_a_change``, for the plan it describes: an allocation
  written as a change gets no env, bonus or regret term but pays for its budget gap,
  at least half a budget), ``-1`` for an all-equal allocation.
- ``slip`` (only with ``slip_penalty > 0`` and a hint prompt, ``delta-hint`` or
  ``delta-hint-last``): an answer that copies the hint one slot out of step
  (``policies.observations.misaligned_copy``) is scored as holding the current plan (its
  env is the current plan's, no bonus, no regret gain; the budget penalty of the plan it
  describes still applies, about 0 since a slip's changes sum to 0) and pays
  ``-slip_penalty``. Without it a slip earns whatever its plan's MROI dispersion is, and
  at T >= 10 that is often close to the copy's.
- ``bonus``: the reference code's shaping. Rank slots by mean historical MROI; for each
  of the top 2, if the new allocation exceeds the slot's mean historical allocation by
  more than 0.1, add ``1 + |change|`` when the change is at most 0.3, else 0.5; the
  mirror image for the bottom 2 (decreases, new allocation not 0).
- ``format``: graded partial credit in [0, 1]: ``<answer>`` 0.25, ``</answer>`` 0.25,
  a bracketed list 0.25, the number count ``0.25 * max(0, 1 - |n - T| / T)``.

:func:`parse_completions` turns model texts into the arrays these functions take: it
reads text only through ``policies.prompts`` (``decode``, the decoder inference uses, and
``answer_shape`` for the format flags and number count), so there is one answer parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from training.config import RewardConfig

TERMS = ("env", "constraint", "bonus", "format")


# ---------------------------------------------------------------------------------------
# the terms
# ---------------------------------------------------------------------------------------
def env_term(r: np.ndarray, ok: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``-alpha * sum_t |r_t - mean r|`` per row; 0 where ``ok`` is False.

    >>> env_term(np.array([[1.0, 0.5, 0.0], [0.5, 0.5, 0.5]]), np.array([True, True]))
    array([-1.,  0.])
    >>> env_term(np.array([[1.0, 0.0]]), np.array([False]), alpha=2.0)
    array([0.])
    """
    r = np.asarray(r, float)
    disp = np.abs(r - r.mean(axis=-1, keepdims=True)).sum(axis=-1)
    return np.where(ok, -alpha * np.nan_to_num(disp), 0.0) + 0.0  # + 0.0: no -0.0


def hold_env_term(requests: Sequence, alpha: float = 1.0) -> np.ndarray:
    """``env_term`` of keeping the current plan (the window's latest record), per request.

    The reward's level depends on how far each prompt's environment is from balance, so
    with a few prompts per step it is noisy; ``env`` minus this (``train/env_gain`` in the
    GRPO log) is what the answer itself gained over holding, and is comparable across steps.

    >>> from tools.task import Record, Task
    >>> from policies.base import DecisionRequest
    >>> t = Task(budget=2, periods=2, history=[Record(allocation=[1, 1], mroi=[1.0, 0.5])])
    >>> hold_env_term([DecisionRequest(role="optimizer", task=t, window=t.history)])
    array([-0.5])
    """
    from policies.observations import mroi_scale

    out = np.zeros(len(requests))
    for i, q in enumerate(requests):
        if q.window:
            r = np.asarray(q.window[-1].mroi, float) / mroi_scale(q.window)
            out[i] = env_term(r[None], np.array([True]), alpha)[0]
    return out


def length_penalty(n_numbers: np.ndarray, T: int, cfg: RewardConfig = RewardConfig()) -> np.ndarray:
    """Penalty (<= 0) for answering with the wrong number of values.

    >>> length_penalty(np.array([6, 7, 5, 4, 0, 2]), 6)
    array([ 0. , -1.5, -3. , -4. , -5. , -5. ])
    """
    n = np.asarray(n_numbers, float)
    missing = T - n
    few = -np.minimum(cfg.too_few_max, cfg.too_few_penalty + cfg.too_few_step * (missing - 1))
    few = np.where(n <= 0, -cfg.too_few_max, few)
    return np.where(n > T, -cfg.too_many_penalty, np.where(n < T, few, 0.0)) + 0.0


def budget_penalty(alloc_units: np.ndarray, ok: np.ndarray, role: str,
                   cfg: RewardConfig = RewardConfig()) -> np.ndarray:
    """``-coef * |sum b - T|`` (allocations in B/T units sum to T when feasible), coef 2
    for the Reasoner and 1 for the Optimizer; 0 where the answer describes no plan (NaN
    row: it did not parse). A ``not_a_change`` answer's row is the plan it describes.

    >>> budget_penalty(np.array([[1.5, 1.0, 1.0], [1.0, 1.0, 1.0]]), np.array([True, True]), "reasoner")
    array([-1.,  0.])
    >>> budget_penalty(np.array([[1.5, 1.0, 1.0]]), np.array([True]), "optimizer")
    array([-0.5])
    """
    a = np.asarray(alloc_units, float)
    T = a.shape[-1]
    coef = cfg.budget_coef_reasoner if role == "reasoner" else cfg.budget_coef_optimizer
    described = np.asarray(ok, bool) | np.isfinite(a).all(axis=-1)
    gap = np.abs(np.nan_to_num(a).sum(axis=-1) - T)
    return np.where(described, -coef * gap, 0.0) + 0.0


def equal_penalty(alloc_units: np.ndarray, ok: np.ndarray, cfg: RewardConfig = RewardConfig(),
                  tol: float = 1e-6) -> np.ndarray:
    """``-1`` for an all-equal allocation (the do-nothing uniform answer).

    >>> equal_penalty(np.array([[1.0, 1.0, 1.0], [1.2, 0.8, 1.0]]), np.array([True, True]))
    array([-1.,  0.])
    """
    a = np.nan_to_num(np.asarray(alloc_units, float))
    same = (a.max(axis=-1) - a.min(axis=-1)) <= tol
    return np.where(ok & same, -cfg.equal_penalty, 0.0)


def constraint_term(n_numbers, alloc_units, ok, role: str, cfg: RewardConfig = RewardConfig()) -> np.ndarray:
    """Length + budget + all-equal penalties (all <= 0).

    >>> constraint_term(np.array([3, 2]), np.array([[2.0, 1.0, 1.0], [np.nan] * 3]),
    ...                 np.array([True, False]), "reasoner")
    array([-2., -3.])
    """
    a = np.asarray(alloc_units, float)
    T = a.shape[-1]
    return (length_penalty(n_numbers, T, cfg) + budget_penalty(a, ok, role, cfg)
            + equal_penalty(a, ok, cfg))


def bonus_term(alloc_units: np.ndarray, hist_alloc_units: np.ndarray, hist_mroi: np.ndarray,
               ok: np.ndarray, cfg: RewardConfig = RewardConfig()) -> np.ndarray:
    """The reference code's shaping towards the historically best slots.

    ``hist_alloc_units``/``hist_mroi`` are ``(N, H, T)`` (the records the prompt shows).
    Slots are ranked by mean historical MROI; ``change = b_t - mean_h(b_ht)``. Each of the
    top ``k`` slots with ``change > 0.1`` earns ``1 + |change|`` (``|change| <= 0.3``) or
    0.5; each of the bottom ``k`` with ``change < -0.1`` and ``b_t != 0`` likewise.

    >>> ha = np.ones((1, 2, 4)); hm = np.array([[[0.9, 0.1, 0.5, 0.3]] * 2])
    >>> bonus_term(np.array([[1.2, 0.8, 1.0, 1.0]]), ha, hm, np.array([True]))
    array([2.4])
    >>> bonus_term(np.array([[1.5, 0.5, 1.0, 1.0]]), ha, hm, np.array([True]))
    array([1.])
    >>> bonus_term(np.array([[1.05, 0.95, 1.0, 1.0]]), ha, hm, np.array([True]))
    array([0.])
    """
    a = np.nan_to_num(np.asarray(alloc_units, float))
    ha = np.asarray(hist_alloc_units, float)
    hm = np.asarray(hist_mroi, float)
    N, T = a.shape
    k = min(cfg.bonus_top_k, T // 2)
    if k == 0 or ha.shape[1] == 0:
        return np.zeros(N)
    order = np.argsort(-hm.mean(axis=1), axis=-1, kind="stable")  # best first
    change = a - ha.mean(axis=1)
    rows = np.arange(N)[:, None]
    top, bot = order[:, :k], order[:, -k:]
    ch_top, ch_bot = change[rows, top], change[rows, bot]

    def amount(ch):
        return np.where(np.abs(ch) <= cfg.bonus_small_change, 1.0 + np.abs(ch), cfg.bonus_large)

    up = np.where(ch_top > cfg.bonus_min_change, amount(ch_top), 0.0).sum(axis=-1)
    down_ok = (ch_bot < -cfg.bonus_min_change) & (a[rows, bot] != 0)
    down = np.where(down_ok, amount(ch_bot), 0.0).sum(axis=-1)
    return np.where(ok, cfg.bonus_weight * (up + down), 0.0)


def regret_term(v_new: np.ndarray, v_cur: np.ndarray, v_star: np.ndarray, ok: np.ndarray,
                weight: float = 1.0, eps: float = 0.01) -> np.ndarray:
    """``weight * clip((V(b) - V(b_cur)) / max(V* - V(b_cur), eps V*), -1, 1)``; 0 where
    the answer did not parse (the plan is then held, a gain of 0).

    The dispersion term scores how level the MROI is, which a plan can improve without
    earning more; this one scores what an advertiser gains, relative to what was left to
    gain, so it means the same on easy and hard tasks.

    >>> regret_term(np.array([9.0, 8.0, 10.0]), np.array([8.0] * 3), np.array([10.0] * 3),
    ...             np.array([True, True, False]))
    array([0.5, 0. , 0. ])
    >>> regret_term(np.array([5.0]), np.array([8.0]), np.array([10.0]), np.array([True]))
    array([-1.])
    """
    v_new, v_cur, v_star = (np.asarray(x, float) for x in (v_new, v_cur, v_star))
    gap = np.maximum(v_star - v_cur, eps * np.abs(v_star))
    gap = np.where(gap > 0, gap, 1.0)
    gain = np.clip((v_new - v_cur) / gap, -1.0, 1.0)
    return np.where(ok, weight * np.nan_to_num(gain), 0.0) + 0.0


def format_term(has_open, has_close, has_brackets, n_numbers, T: int,
                cfg: RewardConfig = RewardConfig()) -> np.ndarray:
    """Graded format credit in ``[0, format_weight]``.

    >>> format_term(np.array([1, 1, 0]), np.array([1, 0, 0]), np.array([1, 1, 0]),
    ...             np.array([6, 3, 0]), 6)
    array([1.   , 0.625, 0.   ])
    """
    count = np.maximum(0.0, 1.0 - np.abs(np.asarray(n_numbers, float) - T) / T)
    s = 0.25 * (np.asarray(has_open, float) + np.asarray(has_close, float)
                + np.asarray(has_brackets, float) + count)
    return cfg.format_weight * s


def composite(*, alloc_units, ok, n_numbers, has_open, has_close, has_brackets, r,
              hist_alloc_units, hist_mroi, role: str, cfg: RewardConfig = RewardConfig()
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Total reward ``(N,)`` and the per-term arrays ``{"env", "constraint", "bonus", "format"}``.

    >>> ha = np.ones((2, 1, 3)); hm = np.array([[[0.9, 0.5, 0.1]]] * 2)
    >>> total, terms = composite(
    ...     alloc_units=np.array([[1.2, 1.0, 0.8], [np.nan] * 3]), ok=np.array([True, False]),
    ...     n_numbers=np.array([3, 0]), has_open=np.array([1, 0]), has_close=np.array([1, 0]),
    ...     has_brackets=np.array([1, 0]), r=np.array([[0.5, 0.5, 0.5], [0.0] * 3]),
    ...     hist_alloc_units=ha, hist_mroi=hm, role="reasoner")
    >>> total.round(3).tolist(), terms["bonus"].round(3).tolist()
    ([3.4, -5.0], [2.4, 0.0])
    """
    terms = {
        "env": env_term(r, ok, cfg.env_alpha),
        "constraint": constraint_term(n_numbers, alloc_units, ok, role, cfg),
        "bonus": bonus_term(alloc_units, hist_alloc_units, hist_mroi, ok, cfg),
        "format": format_term(has_open, has_close, has_brackets, n_numbers, T=np.shape(alloc_units)[-1], cfg=cfg),
    }
    total = sum(terms.values())
    return total, terms


# ---------------------------------------------------------------------------------------
# from text to arrays
# ---------------------------------------------------------------------------------------
@dataclass
class Parsed:
    """Completions as arrays: ``alloc_units (N,T)`` (NaN rows where ``ok`` is False, except a
    ``not_a_change`` answer: the plan it describes),
    ``ok``, ``n_numbers``, ``has_open``, ``has_close``, ``has_brackets``, ``errors``
    (error code or None per row), ``alloc`` (task units) and ``answer_units`` (the answer
    as written, prompt units, None where it did not parse)."""

    alloc_units: np.ndarray
    alloc: np.ndarray
    ok: np.ndarray
    n_numbers: np.ndarray
    has_open: np.ndarray
    has_close: np.ndarray
    has_brackets: np.ndarray
    errors: list
    answer_units: list  # the parsed answer in prompt units per row (None where it did not parse)

    @property
    def parse_error_rate(self) -> float:
        return parse_error_rate(self.ok)


def parse_error_rate(ok: np.ndarray) -> float:
    """Share of completions that did not parse (``ok`` False), 0 for no completions."""
    return float(1.0 - ok.mean()) if ok.size else 0.0


def parse_completions(texts: Sequence[str], requests: Sequence, encoding: str | None = None) -> Parsed:
    """Decode each text with ``policies.prompts.decode`` and measure its format.

    All requests must have the same number of slots T. The format flags and the number
    count are ``policies.prompts.answer_shape`` (a parsed answer counts as T numbers).
    """
    from policies.prompts import answer_shape, decode, error_code

    N = len(texts)
    T = requests[0].task.periods if N else 0
    units = np.full((N, T), np.nan)
    alloc = np.full((N, T), np.nan)
    ok = np.zeros(N, bool)
    n_num = np.zeros(N, int)
    h_open, h_close, h_br = np.zeros(N, bool), np.zeros(N, bool), np.zeros(N, bool)
    errors: list = [None] * N
    answers: list = [None] * N
    for i, (text, req) in enumerate(zip(texts, requests)):
        if req.task.periods != T:
            raise ValueError(f"parse_completions: request {i} has T={req.task.periods}, expected {T}")
        shape = answer_shape(text)
        h_open[i], h_close[i], h_br[i], n_num[i] = (shape.has_open, shape.has_close,
                                                    shape.has_brackets, shape.n_numbers)
        d = decode(text, req, encoding)
        if d.allocation is not None:
            ok[i] = True
            alloc[i] = d.allocation
            units[i] = np.asarray(d.allocation) / req.task.unit
            n_num[i] = T
            answers[i] = (d.meta or {}).get("answer_units")
        else:
            errors[i] = error_code(d.error)
            if "plan_units" in d.meta:  # not_a_change: charged for the plan it describes
                units[i] = d.meta["plan_units"]
    return Parsed(units, alloc, ok, n_num, h_open, h_close, h_br, errors, answers)


def slip_rows(parsed: Parsed, requests: Sequence, encoding: str | None) -> np.ndarray:
    """``(N,)`` bool: parsed hint-prompt answers that copy the prompt's hint out of step."""
    from policies.observations import misaligned_copy, shown_hint
    from policies.prompts import HINT_ENCODINGS, resolve_encoding

    out = np.zeros(len(requests), bool)
    hints: dict[int, list[float]] = {}  # a GRPO group repeats its prompt G times: fit its hint once
    for i, (ans, req) in enumerate(zip(parsed.answer_units, requests)):
        if ans is not None and parsed.ok[i] and resolve_encoding(req.role, encoding) in HINT_ENCODINGS:
            if id(req) not in hints:
                hints[id(req)] = shown_hint(req)
            out[i] = misaligned_copy(list(ans), hints[id(req)])
    return out


def score(texts: Sequence[str], requests: Sequence, mroi_fn, encoding: str | None = None,
          cfg: RewardConfig = RewardConfig(), value_fn=None, best_value=None
          ) -> tuple[np.ndarray, dict[str, np.ndarray], Parsed]:
    """Reward a batch of completions: parse, project onto the budget set, query MROI.

    ``mroi_fn(alloc (N,T) task units, rows (N,) bool) -> (N,T)`` returns the environment's
    MROI for the parsed rows (it is called with feasible allocations; other rows are
    ignored). With ``value_fn(alloc (N,T)) -> (N,)`` (the hidden value V) and
    ``best_value`` (N,) (V at the optimum), ``terms`` also holds ``regret``
    (:func:`regret_term`, weight ``cfg.regret_weight``, added to the total) and
    ``value_gain`` / ``answer_regret`` (unweighted diagnostics, not added): the current
    plan is each window's latest record. ``terms["slip"]`` is the copy-slip penalty per
    row (all 0 unless ``cfg.slip_penalty`` is on). Returns ``(total, terms, parsed)``.
    """
    from policies.observations import mroi_scale
    from tools.budget import project

    role = requests[0].role
    p = parse_completions(texts, requests, encoding)
    N, T = p.alloc.shape
    budget = np.array([q.task.budget for q in requests])
    lower = np.stack([q.task.lower_array for q in requests]) if N else np.zeros((0, T))
    upper = np.stack([q.task.upper_array for q in requests]) if N else np.zeros((0, T))
    safe = np.where(p.ok[:, None], np.nan_to_num(p.alloc), (budget / T)[:, None])
    feasible = project(safe, budget, lower, upper) if N else safe
    r = np.zeros((N, T))
    if p.ok.any():
        r = np.asarray(mroi_fn(feasible, p.ok), float)
    scale = np.array([mroi_scale(q.window) for q in requests])[:, None]
    r = np.where(p.ok[:, None], r / scale, 0.0)
    ha = np.array([[rec.allocation for rec in q.window] for q in requests], float) / (budget / T)[:, None, None]
    hm = np.array([[rec.mroi for rec in q.window] for q in requests], float)
    slip = slip_rows(p, requests, encoding) if cfg.slip_penalty > 0 else np.zeros(N, bool)
    credited = p.ok & ~slip  # a slip earns what holding the current plan earns, minus the penalty
    total, terms = composite(alloc_units=p.alloc_units, ok=credited, n_numbers=p.n_numbers,
                             has_open=p.has_open, has_close=p.has_close, has_brackets=p.has_brackets,
                             r=r, hist_alloc_units=ha, hist_mroi=hm, role=role, cfg=cfg)
    terms["slip"] = np.where(slip, -cfg.slip_penalty, 0.0) + 0.0
    if slip.any():
        held = np.where(slip, hold_env_term(requests, cfg.env_alpha), 0.0)
        terms["env"] = terms["env"] + held
        total = total + held + terms["slip"]
    if value_fn is not None and best_value is not None and N:
        current = np.array([q.current for q in requests], float)
        v_cur = np.asarray(value_fn(current), float)
        v_new = np.where(p.ok, np.asarray(value_fn(np.where(p.ok[:, None], feasible, current)), float), v_cur)
        v_star = np.asarray(best_value, float)
        # diagnostics of the plan inference would apply (a slip's too); the reward credits no slip
        terms["value_gain"] = regret_term(v_new, v_cur, v_star, p.ok, 1.0, cfg.regret_eps)
        terms["regret"] = cfg.regret_weight * regret_term(v_new, v_cur, v_star, credited, 1.0, cfg.regret_eps)
        total = total + terms["regret"]
        terms["answer_regret"] = (v_star - v_new) / np.where(np.abs(v_star) > 0, np.abs(v_star), 1.0)
    return total, terms, p
