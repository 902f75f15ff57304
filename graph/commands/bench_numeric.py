"""The numeric rows of ``dara bench``: baselines as arrays over every environment at once.

2000 environments x 10 rounds take seconds because a round is one array operation per
method. The loop is the graph's, vectorised: round 1 sees the whole few-shot history (the
Reasoner), rounds 2..K the last ``window`` records of history followed by applied rounds
(the Optimizer); every proposal goes through the budget projection.

Observation noise is *paired* with the graph's LLM rows: environment ``i`` at round ``k``
observes noise drawn from ``default_rng([seed, i, k])``, exactly as ``graph.feedback``'s
simulator does for episode ``i`` (:func:`observe_paired`), so at ``noise > 0`` every
method, numeric or LLM, sees the same noise for the same environment and round.
"""

from __future__ import annotations

import numpy as np

from graph.commands.summaries import METRICS
from policies.baselines import propose_arrays


def round_rng(seed: int, index: int, round_: int) -> np.random.Generator:
    """The generator of environment ``index``'s feedback noise at round ``round_`` (1-based)."""
    return np.random.default_rng([int(seed), int(index), int(round_)])


def observe_paired(env, b: np.ndarray, seed: int, round_: int) -> np.ndarray:
    """Observed MROI ``(N, T)`` for allocations ``b``: environment ``i``'s noise from
    :func:`round_rng` ``(seed, i, round_)``, as ``graph.feedback.simulate`` draws it."""
    from tools.envs.base import noise_factor

    r = env.mroi(b)
    if env.noise > 0:
        r = r * np.concatenate([noise_factor(round_rng(seed, i, round_), env.noise, (1, env.periods))
                                for i in range(env.n)])
    return r


def run_numeric(name: str, env, rounds: int, window: int, seed: int,
                first_round: dict | None = None, **params) -> dict[str, np.ndarray]:
    """Run baseline ``name`` (or ``oracle``) on every environment for ``rounds`` rounds;
    ``params`` go to the baseline (e.g. ``z`` for ``local-model``), ``first_round``
    overrides some of them for round 1 (the Reasoner's step, from the whole history)."""
    from tools.budget import project
    from tools.metrics import round_metrics
    from tools.oracle import oracle_allocation

    b_star = oracle_allocation(env)
    pool_a = [env.hist_alloc[:, h, :] for h in range(env.hist_alloc.shape[1])]
    pool_r = [env.hist_mroi[:, h, :] for h in range(env.hist_mroi.shape[1])]
    out = {m: np.zeros((rounds, env.n)) for m in METRICS}
    for k in range(rounds):
        if name == "oracle":
            b = b_star
        else:
            w = len(pool_a) if k == 0 else window  # the Reasoner sees the whole history
            wa = np.stack(pool_a[-w:], axis=1)
            wr = np.stack(pool_r[-w:], axis=1)
            kw = {**params, **(first_round or {})} if k == 0 else params
            raw = propose_arrays(name, wa, wr, env.budget, env.lower, env.upper, **kw)
            b = project(raw, env.budget, env.lower, env.upper)
        met = round_metrics(env, b, b_star)
        for m in METRICS:
            out[m][k] = met[m]
        pool_a.append(b)
        pool_r.append(observe_paired(env, b, seed, k + 1))
    return out
